"""A training project for the tests: one published pattern shard and a tiny CPU experiment, with storage,
experiments and runs relative to the project folder (a copy of the folder is a copy of the project)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import yaml

from mm_assets.config.base import DEFAULT_CONFIG, read_yaml
from mm_assets.config.pipeline import PipelineConfig, parse_config
from mm_assets.shards.assets import shard_manifest
from mm_assets.shards.indexed import write_shard
from mm_assets.shards.vocab import VocabLayout
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.train.launch.experiment import ExperimentConfig, deep_merge
from mm_assets.train.launch.run_folders import RunFolders
from mm_assets.train.launch.sbatch import LaunchFiles, render_launch
from resources.storage import StorageResource

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
EXPERIMENTS = REPO / "configs" / "experiments"
PATTERN_BATCH = "ci-pattern"
CLUSTER = StorageResource(root="/lustre/mm-pretrain")  # the golden files' storage root: runs/<id>/ under it
TINY_EXPERIMENT = """
notes: CI run on the CPU trainer.
model: {num_layers: 2, hidden_size: 64, num_attention_heads: 4, ffn_hidden_size: 176, seq_length: 64,
        max_position_embeddings: 64, transformer_impl: local}
parallelism: {tensor_model_parallel_size: 1, pipeline_model_parallel_size: 1, sequence_parallel: false,
              use_distributed_optimizer: false}
optimizer: {lr: 3.0e-3, min_lr: 3.0e-4}
schedule:
  micro_batch_size: 8
  global_batch_size: 8
  tokens: null
  iterations: {train_iters: 40, lr_warmup_iters: 5}
  log_interval: 5
  save_interval: 20
  eval_interval: 20
  eval_iters: 1
precision: {bf16: false, attention_backend: auto, recompute: {granularity: none, method: null, num_layers: null}}
data: {blend: [{shard_batch: ci-pattern, weight: 1.0}], split: "98,1,1"}
cluster: {nodes: 1, gpus_per_node: 0, gpu_type: null, cpus_per_task: 1, exclusive: false, time_limit: "00:10:00",
          entrypoint: [python, -m, mm_assets.train.cpu], use_torchrun: false, env: {OMP_NUM_THREADS: "1"}}
"""


def publish_pattern_shard(folder: Path) -> Path:
    """200 documents of a rotating pattern + EOD, published as token_shards does (data, vocab, manifest last)."""
    layout = VocabLayout.build(48, [])
    pattern = np.arange(2, 34, dtype=np.int32)
    docs = [np.concatenate([np.roll(pattern, i % 7), [layout.eod_id]]).astype(np.int32) for i in range(200)]
    files = write_shard(folder / ArtifactLayout.SHARD_PREFIX, docs, eod_id=layout.eod_id)
    layout.write(folder / ArtifactLayout.SHARD_VOCAB)
    shard_manifest(folder, files, names=(ArtifactLayout.SHARD_VOCAB,)).write(folder)
    return folder / ArtifactLayout.SHARD_PREFIX


def write_project(root: Path, *, compute: dict | None = None) -> Path:
    """configs/pipeline.yaml (storage, experiments and runs relative to `root`), the published pattern shard;
    returns the config path. Experiments go to root/experiments/<id>.yaml (write_experiment)."""
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    cfg["storage"] = {"root": "data"}
    cfg["compute"] = {**cfg["compute"], "poll_interval_s": 0.5, **(compute or {})}
    cfg["experiments_dir"] = "experiments"
    (root / "configs").mkdir(parents=True)
    path = root / "configs" / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    publish_pattern_shard(root / "data" / "shards" / PATTERN_BATCH)
    (root / "experiments").mkdir()
    return path


def write_experiment(config: Path, experiment: str, text: str = TINY_EXPERIMENT, **overrides) -> None:
    """root/experiments/<experiment>.yaml: `text` (YAML) deep-merged with `overrides` (section → mapping)."""
    data = deep_merge(yaml.safe_load(text), overrides)
    (config.parents[1] / "experiments" / f"{experiment}.yaml").write_text(yaml.safe_dump(data))


def train_green(defs: dg.Definitions, instance: dg.DagsterInstance, experiment: str) -> dg.ExecuteInProcessResult:
    """Materialize the experiment's training assets; the run and every check on them must pass."""
    result = defs.resolve_job_def("train_experiment").execute_in_process(partition_key=experiment, instance=instance,
                                                                         raise_on_error=False)
    assert result.success, [e.message for e in result.get_step_failure_events()]
    failed = [(e.check_name, e.metadata) for e in result.get_asset_check_evaluations() if not e.passed]
    assert not failed, failed
    return result


def asset_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """The plain metadata values of the one materialization of `asset` in `result`."""
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def render(exp: ExperimentConfig, storage: StorageResource = CLUSTER, **kwargs) -> LaunchFiles:
    """render_launch with the run folder `storage` gives the experiment (by default, the golden files')."""
    return render_launch(exp, RunFolders.of(exp, storage), **kwargs)


def golden_pipeline(experiments_dir: Path = EXPERIMENTS, base_dir: Path = REPO) -> PipelineConfig:
    """A pipeline config whose training base is tests/train/golden/base_training.yaml (the reference's 10B run)."""
    data = {**read_yaml(GOLDEN / "base_training.yaml"), "experiments_dir": str(experiments_dir)}
    return parse_config(data, source=str(GOLDEN / "base_training.yaml"), base_dir=base_dir)
