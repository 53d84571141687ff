"""Every Dagster definition loads: the graph builds, jobs resolve, resources come from the config."""

import dagster as dg

from mm_assets.definitions import build_definitions, defs


def test_shipped_definitions_validate():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_media", "media_metadata", "metadata_catalog"} <= keys
    checks = {c.name for c in graph.asset_check_keys}
    assert "every_item_accounted_for" in checks and "catalog_row_count" in checks
    assert any("schema" in c for c in checks)
    for job in ("ingest_batch", "refresh_catalog"):
        defs.resolve_job_def(job)
    assert defs.resolve_sensor_def("batch_manifest_sensor") and defs.resolve_sensor_def("alert_sensor")
    assert {"grad_norm_bounded", "loss_not_stagnant", "few_skipped_iterations", "throughput_above_floor"} <= checks


def test_lineage_runs_crawl_to_records():
    graph = defs.resolve_asset_graph()
    parents = lambda name: {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}  # noqa: E731
    assert parents("media_metadata") == {"raw_media"}
    assert parents("metadata_catalog") == {"media_metadata", "experiment_records"}
    assert parents("training_blend") == {"token_shards", "canary_set"}
    # the blend reads the batches its experiment names, not every batch (mm_assets/train/lineage.py)
    mapping = graph.get(dg.AssetKey("training_blend")).partition_mappings[dg.AssetKey("token_shards")]
    assert isinstance(mapping, dg.SpecificPartitionsPartitionMapping) and list(mapping.partition_keys) == []
    assert parents("checkpoint") == {"training_blend"} and parents("training_log") == {"checkpoint"}
    assert parents("experiment_records") == {"checkpoint", "training_log", "eval_report"}


def test_lineage_runs_eval_set_to_eval_report():
    """Reference §B.6's canary: eval set -> canary set -> blend -> checkpoint -> eval report."""
    graph = defs.resolve_asset_graph()
    parents = lambda name: {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}  # noqa: E731
    assert parents("canary_set") == {"eval_sets"} and "canary_set" in parents("training_blend")
    # eval sets use the tokenizers, not every batch's tokens: an edge that claims no partition
    mapping = graph.get(dg.AssetKey("eval_sets")).partition_mappings[dg.AssetKey("text_tokens")]
    assert isinstance(mapping, dg.SpecificPartitionsPartitionMapping) and list(mapping.partition_keys) == []
    assert parents("eval_report") == {"checkpoint", "eval_sets", "canary_set"}
    assert parents("decontamination_report") == {"training_blend", "eval_sets"}
    checks = {c.name: c for c in graph.asset_check_keys}
    assert {"check_leakage", "eval_sets_decontaminated"} <= set(checks)
    for job in ("prepare_eval", "evaluate_experiment"):
        defs.resolve_job_def(job)


def test_resources_follow_the_config_file(tmp_path):
    (tmp_path / "configs").mkdir()
    cfg = tmp_path / "configs" / "pipeline.yaml"
    cfg.write_text("storage: {root: elsewhere}\ncrawl: {workers: 3}\ncompute: {backend: slurm, poll_interval_s: 2}\n")
    resources = build_definitions(cfg).resources
    assert resources["storage"].root == str(tmp_path / "elsewhere")
    assert resources["storage"].store.url("shards/b1") == str(tmp_path / "elsewhere" / "shards" / "b1")
    assert resources["crawler"].workers == 3
    assert (resources["compute"].backend, resources["compute"].poll_interval_s) == ("slurm", 2)
