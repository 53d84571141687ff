"""Jobs: what a user (or the manifest sensor) launches for a crawl batch and for the catalog."""

import dagster as dg

# Everything per batch: crawl, metadata ETL, tokens, shards (blocking checks gate each next step).
ingest_batch_job = dg.define_asset_job(
    "ingest_batch",
    selection=dg.AssetSelection.groups("crawl", "etl", "tokens", "shards") - dg.AssetSelection.assets("metadata_catalog"),
    description="Crawl one batch, build its metadata, tokenize every modality and write its Megatron shard.",
)

catalog_job = dg.define_asset_job(
    "refresh_catalog",
    selection=dg.AssetSelection.assets("metadata_catalog"),
    description="Rebuild the DuckDB catalog over every batch's metadata.",
)

# One experiment: blend -> Megatron launch (local or Slurm, through Pipes) -> checkpoint -> JSONL log.
train_experiment_job = dg.define_asset_job(
    "train_experiment",
    selection=dg.AssetSelection.groups("train"),
    description="Resolve the blend, run the rendered Megatron launch, convert its log (one experiment partition).",
)

records_job = dg.define_asset_job(
    "refresh_records",
    selection=dg.AssetSelection.assets("experiment_records", "metadata_catalog"),
    description="Rebuild the experiment table and the catalog that queries it.",
)

# Eval sets and their canaries: before training an experiment whose blend injects a canary_set.
prepare_eval_job = dg.define_asset_job(
    "prepare_eval",
    selection=dg.AssetSelection.assets("eval_sets", "canary_set"),
    description="Render every configured eval task into prompt ids and draw each set's canary samples.",
)

# One experiment's evaluation: the evaluator through the compute backend, then the decontamination report.
evaluate_experiment_job = dg.define_asset_job(
    "evaluate_experiment",
    selection=dg.AssetSelection.assets("eval_report", "decontamination_report"),
    description="Evaluate the experiment's checkpoint (standard and canary splits; leakage check blocks) and "
                "report eval samples that overlap its training text (one experiment partition).",
)

# One release version: the bundle and its checklist (blocking checks).
release_job = dg.define_asset_job(
    "build_release",
    selection=dg.AssetSelection.groups("release"),
    description="Build one release bundle (configs/releases/<version>.yaml) and check it against the release checklist.",
)
