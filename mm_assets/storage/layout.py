"""Where every artifact lives: the one table of file and folder names (DESIGN.md §7).

Methods return keys: POSIX paths relative to the storage root, built from sanitised parts, so a key never
leaves the root whatever an id, title or batch name holds. The store (store.py) turns a key into bytes, a
local path or a URL; nothing else in the project spells a file or folder name.

    batches/<batch>/manifest.txt, batch.json       the registered crawl batch (an immutable snapshot; batch.json last)
    raw/<source>/<item id>/<id>.<ext>, item.json     a crawled item, published whole (item.json inside)
    crawl/<batch>/items.parquet                      the crawl ledger: one record per manifest line
    metadata/<batch>/media_metadata.parquet          unified metadata, published with quarantine.parquet (rows that
                    duplicates.parquet, hashes.parquet   cannot be used), duplicates and every content hash seen
    catalog/metadata.duckdb                          DuckDB views over all of the above and the records
    tokens/<batch>/<modality>.parquet                codes per item (text, audio, image, video)
    cache/tokens/<modality>/<k[:2]>/<k>.codes        per-item token cache (safe to delete: a rerun recomputes)
    shards/<batch>/tokens.bin, tokens.idx            the Megatron indexed dataset (prefix shards/<batch>/tokens),
                   vocab.json, documents.parquet     its vocabulary layout and document -> unique_id,
                   manifest.json                     sha256 + size of every file (written last: the commit)
    runs/<experiment>/blend.json                     the verified blend (--data-path, shard digests, vocabulary)
                      launch/<experiment>.args.txt, .sbatch   the rendered Megatron arguments and script
                      logs/                          job logs (<experiment>-local-<time>.log, slurm-<job>.out/.err)
                      checkpoints/iter_NNNNNNN/, latest_checkpointed_iteration.txt, rejected/   Megatron's --save
                      checkpoint_hashes.json         sha256 of every checkpoint file, recorded after each job
                      attempts.json                  every job the checkpoint asset started: its log, how it ended
                      run.json, training_log.jsonl   what the checkpoint asset ran; the log as JSON Lines
                      training_curves.png            loss and grad norm over the run (training_log)
                      pipes/, data-cache/, tensorboard/   Dagster Pipes files, Megatron's index cache, TensorBoard
                      object-storage-cache/          Megatron's --object-storage-cache-path (.idx of s3:// shards)
    records/experiment_records.parquet, .md          the experiment table
    monitoring/targets/<experiment>.json             Prometheus file_sd targets of a running job ([] once it ended)
    eval_datasets/<path>                             eval datasets kept in storage (`mm demo` writes demo/*.jsonl)
    eval_sets/<task>/samples.parquet, set.json       an eval task rendered to prompt ids (set.json last)
    canary/<task>/tokens.bin, tokens.idx, vocab.json the set's canary samples as a Megatron shard (prefix
                  canary.json, manifest.json         canary/<task>/tokens), their ids, seed and marker; manifest last
    eval/<experiment>/metrics.parquet                eval_report, published whole: task x split x metric (the
                      predictions.parquet            catalog's eval_reports), per-sample predictions, and the
                      report.json                    whole report (rows, sacrebleu signatures, checkpoint; last)
    decontamination/<experiment>.parquet             eval samples sharing an n-gram with the training text
    runs/<experiment>/eval/plan.json, logs/, pipes/  the evaluator job: its plan, log and Dagster Pipes files
    releases/<version>/                              a release bundle (release_bundle), published whole:
                       checkpoint/iter_NNNNNNN/, latest_checkpointed_iteration.txt   the released checkpoint
                       launch/, configs/         the rendered launch; the pipeline, experiment and release configs
                       vocab.json, tokenizers/   the vocabulary layout; each tokenizer's identity (and weights)
                       eval/                     the experiment's eval report
                       model_card.md, data_card.md, LICENSE, inference.py
                       manifest.json             sha256 + size of every file and the lineage (written last)
    demo_site/                                       `mm demo`'s synthetic site

Names inside folders that are not keys (a shard folder beside any Megatron prefix, a Megatron checkpoint
folder, an item folder) are the class attributes below. The scratch folder (storage.scratch; by default
<root>/.staging) holds what is being written: `<scratch>/<key>` while the store publishes `key`, and the
crawl's resumable downloads under `crawl/items/<item>/` with their locks under `crawl/locks/`. On object
storage (s3://) it also holds `s3-staging/<key>` (what is being uploaded), `s3-cache/<key>` (verified downloads,
each with its record in `s3-cache-records/`) and `work/<prefix>` (working folders a job updates in place, such
as a run's checkpoints, records in `work-records/`; pipes/, data-cache/ and object-storage-cache/ stay local).
"""

from __future__ import annotations

import posixpath
import re

from mm_assets.storage.paths import UnsafePathError, sanitize_component


class _Every(str):
    """A wildcard part: `layout.hashes_file(EVERY)` is the glob of that file in every batch."""


EVERY = _Every("*")


def _part(value: str) -> str:
    return "*" if value is EVERY else sanitize_component(value)


def _key(*parts: str) -> str:
    return "/".join(_part(p) for p in parts)


class ArtifactLayout:
    """The artifact layout under a storage root; see the module docstring for the table."""

    # -- names inside folders ---------------------------------------------------------------------------------
    ITEM_RECORD = "item.json"  # in every published item folder, written before the folder is published
    CRAWL_DOWNLOAD_STEM = "item"  # yt-dlp's output name in an item's staging folder (renamed to <id>.<ext>)
    SHARD_PREFIX = "tokens"  # <shard folder>/tokens.bin + tokens.idx
    SHARD_VOCAB = "vocab.json"  # beside every shard prefix, also one made elsewhere
    SHARD_DOCUMENTS = "documents.parquet"
    SHARD_MANIFEST = "manifest.json"
    # Megatron-LM's --save folder (checkpointing.py), which the CPU trainer writes the same way.
    CHECKPOINT_TRACKER = "latest_checkpointed_iteration.txt"
    CHECKPOINT_MODEL = "mp_rank_00/model_optim_rng.pt"  # legacy "torch" format, TP = PP = 1
    CHECKPOINT_ITERATION = re.compile(r"^iter_(\d{7})$")
    CHECKPOINT_REJECTED = "rejected"  # iterations a check refused, kept for a post-mortem
    CHECKPOINT_STAGING_SUFFIX = ".staging"  # the CPU trainer's .iter_NNNNNNN.staging while it saves
    CHECKPOINT_WRITER_LOCK = ".trainer.lock"  # held by the one trainer writing a --save folder
    RUN_DATA_CACHE = "data-cache"  # Megatron's dataset index cache inside a run (or --save) folder
    RUN_PIPES = "pipes"
    RUN_OBJECT_STORAGE_CACHE = "object-storage-cache"  # Megatron's --object-storage-cache-path in a run folder
    # A working folder's local-only parts (never synced to object storage) and the files that commit it (synced
    # last: a reader sees the tracker and the hashes only once the checkpoints they name are in place).
    WORKING_LOCAL_ONLY = (RUN_PIPES, RUN_DATA_CACHE, RUN_OBJECT_STORAGE_CACHE)
    CHECKPOINT_HASHES = "checkpoint_hashes.json"  # in the run folder: sha256s recorded after each job
    WORKING_COMMIT = (CHECKPOINT_HASHES, CHECKPOINT_TRACKER)
    # The crawl's own staging in the scratch folder (storage.scratch, not the root): <scratch>/crawl/
    SCRATCH_CRAWL = "crawl"
    CRAWL_STAGED_ITEMS = "items"  # one folder per item being downloaded, kept for a resume
    CRAWL_ITEM_LOCKS = "locks"  # lock stripes: one worker per item at a time
    # Object storage's local folders in the scratch folder (mm_assets/storage/s3.py)
    SCRATCH_S3_STAGING = "s3-staging"
    SCRATCH_S3_CACHE = "s3-cache"
    SCRATCH_S3_CACHE_RECORDS = "s3-cache-records"
    SCRATCH_WORK = "work"
    SCRATCH_WORK_RECORDS = "work-records"

    @staticmethod
    def checkpoint_iteration(iteration: int) -> str:
        """`iter_0000100`: one saved iteration in a --save folder."""
        return f"iter_{iteration:07d}"

    @staticmethod
    def inside(folder: str, name: str) -> str:
        """`folder/name` for a plain file name read from an untrusted record (item.json): no `/`, no `..`."""
        if not isinstance(name, str) or not name or "/" in name or "\0" in name or name in (".", ".."):
            raise UnsafePathError(f"{name!r} is not a file name inside {folder}")
        return f"{folder}/{name}"

    # -- crawl batches and items ------------------------------------------------------------------------------
    def batch_manifest(self, batch: str) -> str:
        return _key("batches", batch, "manifest.txt")

    def batch_info(self, batch: str) -> str:
        return _key("batches", batch, "batch.json")

    def raw_dir(self, source: str) -> str:
        """Every published item of a source."""
        return _key("raw", source)

    def item_dir(self, source: str, item_id: str) -> str:
        return _key("raw", source, item_id)

    def item_record(self, item_dir: str) -> str:
        return self.inside(item_dir, self.ITEM_RECORD)

    def crawl_ledger(self, batch: str) -> str:
        return _key("crawl", batch, "items.parquet")

    # -- metadata and catalog ---------------------------------------------------------------------------------
    # A batch's metadata folder, published whole; media_metadata.parquet is written last.
    METADATA_FILES = {"quarantine": "quarantine.parquet", "duplicates": "duplicates.parquet",
                      "hashes": "hashes.parquet", "metadata": "media_metadata.parquet"}

    def metadata_dir(self, batch: str) -> str:
        return _key("metadata", batch)

    def metadata_files(self, batch: str) -> dict[str, str]:
        """kind (metadata, quarantine, duplicates, hashes) -> key."""
        return {kind: f"{self.metadata_dir(batch)}/{name}" for kind, name in self.METADATA_FILES.items()}

    def metadata_file(self, batch: str) -> str:
        return self.metadata_files(batch)["metadata"]

    def quarantine_file(self, batch: str) -> str:
        return self.metadata_files(batch)["quarantine"]

    def duplicates_file(self, batch: str) -> str:
        return self.metadata_files(batch)["duplicates"]

    def hashes_file(self, batch: str) -> str:
        return self.metadata_files(batch)["hashes"]

    def catalog(self) -> str:
        return "catalog/metadata.duckdb"

    @staticmethod
    def batch_of(key: str) -> str:
        """The batch a per-batch key belongs to (its folder): metadata/<batch>/x.parquet -> <batch>."""
        return posixpath.basename(posixpath.dirname(key))

    # -- tokens -----------------------------------------------------------------------------------------------
    def token_file(self, batch: str, modality: str) -> str:
        return _key("tokens", batch, f"{modality}.parquet")

    def token_cache(self, modality: str) -> str:
        return _key("cache", "tokens", modality)

    def token_cache_entry(self, modality: str, key: str) -> str:
        return _key("cache", "tokens", modality, key[:2], f"{key}.codes")

    # -- shards -----------------------------------------------------------------------------------------------
    def shard_dir(self, batch: str) -> str:
        return _key("shards", batch)

    def shard_prefix(self, batch: str) -> str:
        """The Megatron prefix: <prefix>.bin and <prefix>.idx."""
        return f"{self.shard_dir(batch)}/{self.SHARD_PREFIX}"

    def shard_bin(self, batch: str) -> str:
        return f"{self.shard_prefix(batch)}.bin"

    def shard_idx(self, batch: str) -> str:
        return f"{self.shard_prefix(batch)}.idx"

    def shard_vocab(self, batch: str) -> str:
        return f"{self.shard_dir(batch)}/{self.SHARD_VOCAB}"

    def shard_documents(self, batch: str) -> str:
        return f"{self.shard_dir(batch)}/{self.SHARD_DOCUMENTS}"

    def shard_manifest(self, batch: str) -> str:
        return f"{self.shard_dir(batch)}/{self.SHARD_MANIFEST}"

    # -- experiment runs --------------------------------------------------------------------------------------
    def run_dir(self, experiment: str) -> str:
        return _key("runs", experiment)

    def run_blend(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/blend.json"

    def run_launch(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/launch"

    @staticmethod
    def launch_files(experiment: str) -> dict[str, str]:
        """The rendered launch's file names by kind (args, sbatch): in a run's launch folder, or in
        `mm train render --out DIR`."""
        return {"args": f"{_part(experiment)}.args.txt", "sbatch": f"{_part(experiment)}.sbatch"}

    def launch_file(self, experiment: str, kind: str) -> str:
        return f"{self.run_launch(experiment)}/{self.launch_files(experiment)[kind]}"

    def run_logs(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/logs"

    def local_job_log(self, experiment: str, started_at: str) -> str:
        """The local backend's log of one job, named by its start (an ISO time; colons dropped)."""
        stamp = started_at.replace(":", "")  # our own UTC time, e.g. 2026-11-29T040000+0000
        if "/" in stamp:
            raise UnsafePathError(f"{started_at!r} is not a start time")
        return f"{self.run_logs(experiment)}/{_part(experiment)}-local-{stamp}.log"

    def slurm_output(self, experiment: str, stream: str) -> str:
        """`--output` / `--error` of the job (stream out / err); Slurm fills in %j, the job id."""
        return f"{self.run_logs(experiment)}/slurm-%j.{_part(stream)}"

    def run_checkpoints(self, experiment: str) -> str:
        """Megatron's --save and --load both: a resubmitted job resumes from the latest checkpoint."""
        return f"{self.run_dir(experiment)}/checkpoints"

    def checkpoint_dir(self, experiment: str, iteration: int) -> str:
        return f"{self.run_checkpoints(experiment)}/{self.checkpoint_iteration(iteration)}"

    def checkpoint_hashes(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/{self.CHECKPOINT_HASHES}"

    def run_attempts(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/attempts.json"

    def run_record(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/run.json"

    def training_log(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/training_log.jsonl"

    def training_curves(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/training_curves.png"

    def run_pipes(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/{self.RUN_PIPES}"

    def run_object_storage_cache(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/{self.RUN_OBJECT_STORAGE_CACHE}"

    def run_data_cache(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/{self.RUN_DATA_CACHE}"

    def run_tensorboard(self, experiment: str) -> str:
        return f"{self.run_dir(experiment)}/tensorboard"

    # -- records ----------------------------------------------------------------------------------------------
    def records_table(self) -> str:
        return "records/experiment_records.parquet"

    def records_markdown(self) -> str:
        return "records/experiment_records.md"

    # -- monitoring -------------------------------------------------------------------------------------------
    def monitoring_targets(self) -> str:
        """The folder Prometheus's file_sd_configs reads (`<folder>/*.json`)."""
        return "monitoring/targets"

    def monitoring_target(self, experiment: str) -> str:
        return f"{self.monitoring_targets()}/{_part(experiment)}.json"

    # -- evaluation -------------------------------------------------------------------------------------------
    # Names inside the eval folders, which the evaluator job writes and reads as local files.
    EVAL_SET_SAMPLES = "samples.parquet"
    EVAL_SET_RECORD = "set.json"  # written last: a set.json always describes a complete samples file
    CANARY_RECORD = "canary.json"
    EVAL_METRICS = "metrics.parquet"
    EVAL_PREDICTIONS = "predictions.parquet"
    EVAL_REPORT_RECORD = "report.json"  # written last into a report folder: it commits the report

    def eval_dataset(self, *parts: str) -> str:
        """An eval dataset kept in storage (a task's dataset_config.path may name any key; this is the convention)."""
        return _key("eval_datasets", *parts)

    def eval_set(self, task: str) -> str:
        """An eval task rendered to prompt ids (eval_sets): samples.parquet, then set.json."""
        return _key("eval_sets", task)

    def eval_set_record(self, task: str) -> str:
        return f"{self.eval_set(task)}/{self.EVAL_SET_RECORD}"

    def canary_set(self, task: str) -> str:
        """A set's canary shard folder (canary_set), published whole with manifest.json last."""
        return _key("canary", task)

    def canary_prefix(self, task: str) -> str:
        """The canary shard's Megatron prefix (a blend entry `canary_set: <task>` reads it)."""
        return f"{self.canary_set(task)}/{self.SHARD_PREFIX}"

    def canary_record(self, task: str) -> str:
        """canary.json: the canary ids, seed and marker."""
        return f"{self.canary_set(task)}/{self.CANARY_RECORD}"

    def eval_dir(self, experiment: str) -> str:
        """The eval report of one experiment, published whole (report.json last)."""
        return _key("eval", experiment)

    def eval_report(self, experiment: str) -> str:
        """report.json: the whole report (metric rows, sacrebleu signatures, checkpoint, device)."""
        return f"{self.eval_dir(experiment)}/{self.EVAL_REPORT_RECORD}"

    def eval_metrics(self, experiment: str) -> str:
        """One row per task x split x metric: the catalog view eval_reports."""
        return f"{self.eval_dir(experiment)}/{self.EVAL_METRICS}"

    def eval_predictions(self, experiment: str) -> str:
        return f"{self.eval_dir(experiment)}/{self.EVAL_PREDICTIONS}"

    def decontamination_report(self, experiment: str) -> str:
        return f"decontamination/{_part(experiment)}.parquet"

    def eval_job_dir(self, experiment: str) -> str:
        """The evaluator job's files, beside the training job's in the run folder."""
        return f"{self.run_dir(experiment)}/eval"

    def eval_plan(self, experiment: str) -> str:
        """What the evaluator job runs (mm_assets.eval.evaluate --plan)."""
        return f"{self.eval_job_dir(experiment)}/plan.json"

    def eval_logs(self, experiment: str) -> str:
        return f"{self.eval_job_dir(experiment)}/logs"

    def eval_job_log(self, experiment: str, started_at: str) -> str:
        """The local backend's log of one evaluator job (named like local_job_log)."""
        stamp = started_at.replace(":", "")
        if "/" in stamp:
            raise UnsafePathError(f"{started_at!r} is not a start time")
        return f"{self.eval_logs(experiment)}/{_part(experiment)}-eval-local-{stamp}.log"

    def eval_slurm_output(self, experiment: str) -> str:
        """The evaluator job's --output (stdout and stderr); Slurm fills in %j."""
        return f"{self.eval_logs(experiment)}/slurm-%j.out"

    def eval_pipes(self, experiment: str) -> str:
        return f"{self.eval_job_dir(experiment)}/pipes"

    # -- releases ------------------------------------------------------------------------------------------------
    def release_dir(self, version: str) -> str:
        return _key("releases", version)

    def release_manifest(self, version: str) -> str:
        return f"{self.release_dir(version)}/{self.BUNDLE_MANIFEST}"

    # Paths inside a release bundle (relative to its folder); the manifest records them under `contents`, so a
    # reader of the bundle (its inference script, `mm release verify`) needs only the manifest's name.
    BUNDLE_MANIFEST = "manifest.json"
    BUNDLE_CHECKPOINT = "checkpoint"  # a Megatron --load folder holding the one released iteration
    BUNDLE_LAUNCH = "launch"
    BUNDLE_CONFIGS = "configs"
    BUNDLE_VOCAB = "vocab.json"
    BUNDLE_TOKENIZERS = "tokenizers"
    BUNDLE_EVAL = "eval"
    BUNDLE_MODEL_CARD = "model_card.md"
    BUNDLE_DATA_CARD = "data_card.md"
    BUNDLE_LICENSE = "LICENSE"
    BUNDLE_INFERENCE = "inference.py"

    @staticmethod
    def bundle_configs(experiment: str, version: str) -> dict[str, str]:
        """The configs that made a release, by kind, as the project keeps them."""
        return {"pipeline": f"{ArtifactLayout.BUNDLE_CONFIGS}/pipeline.yaml",
                "experiment": f"{ArtifactLayout.BUNDLE_CONFIGS}/experiments/{_part(experiment)}.yaml",
                "release": f"{ArtifactLayout.BUNDLE_CONFIGS}/releases/{_part(version)}.yaml"}

    @staticmethod
    def bundle_tokenizer(modality: str) -> str:
        """A tokenizer's identity in a bundle; its weights go to tokenizers/<modality>/<file name>."""
        return f"{ArtifactLayout.BUNDLE_TOKENIZERS}/{_part(modality)}.json"

    @staticmethod
    def bundle_tokenizer_weights(modality: str, name: str) -> str:
        return ArtifactLayout.inside(f"{ArtifactLayout.BUNDLE_TOKENIZERS}/{_part(modality)}", _part(name))

    # -- the demo ---------------------------------------------------------------------------------------------
    def demo_site(self) -> str:
        return "demo_site"
