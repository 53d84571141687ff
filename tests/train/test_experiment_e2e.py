"""An experiment end to end on the real local Slurm cluster: shard -> blend -> sbatch job (Pipes) -> checkpoint
-> JSONL log -> experiment record; a resubmission resumes from the latest checkpoint."""

import json

import dagster as dg
import numpy as np
import pytest
import yaml

from mm_assets.config import DEFAULT_CONFIG
from mm_assets.definitions import build_definitions
from mm_assets.etl.catalog import run_query
from mm_assets.partitions import experiments
from mm_assets.shards import VocabLayout, write_shard

pytestmark = pytest.mark.slow
EXPERIMENT = "exp-ci-slurm"
OVERRIDES = """
notes: CI run on the local Slurm cluster.
model: {num_layers: 2, hidden_size: 64, num_attention_heads: 4, ffn_hidden_size: 176, seq_length: 64,
        max_position_embeddings: 64, transformer_impl: local}
parallelism: {tensor_model_parallel_size: 1, pipeline_model_parallel_size: 1, sequence_parallel: false,
              use_distributed_optimizer: false}
optimizer: {lr: 3.0e-3, min_lr: 3.0e-4}
schedule:
  micro_batch_size: 8
  global_batch_size: 8
  tokens: null
  iterations: {train_iters: ITERS, lr_warmup_iters: 5}
  log_interval: 5
  save_interval: 20
  eval_interval: 20
  eval_iters: 1
precision: {bf16: false, attention_backend: auto, recompute: {granularity: none, method: null, num_layers: null}}
data: {blend: [{shard_batch: ci-pattern, weight: 1.0}], split: "98,1,1"}
cluster: {nodes: 1, gpus_per_node: 0, gpu_type: null, cpus_per_task: 1, exclusive: false, time_limit: "00:10:00",
          entrypoint: [python, -m, mm_assets.train.cpu_pretrain], use_torchrun: false, env: {OMP_NUM_THREADS: "1"}}
"""


@pytest.fixture
def project(tmp_path, slurm_cluster):
    """A project whose compute backend is the local Slurm cluster, with one pattern shard and one experiment."""
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    cfg["storage"] = {"root": str(tmp_path / "data")}
    cfg["compute"] = {"backend": "slurm", "slurm_conf": str(slurm_cluster.conf), "poll_interval_s": 0.5}
    cfg["experiments_dir"] = str(tmp_path / "experiments")
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    layout = VocabLayout.build(48, [])
    pattern = np.arange(2, 34, dtype=np.int32)
    docs = [np.concatenate([np.roll(pattern, i % 7), [layout.eod_id]]).astype(np.int32) for i in range(200)]
    shard = tmp_path / "data" / "shards" / "ci-pattern"
    write_shard(shard / "tokens", docs, eod_id=layout.eod_id)
    layout.write(shard / "vocab.json")
    (tmp_path / "experiments").mkdir()
    return path


def _write_experiment(project, iters: int) -> None:
    (project.parents[1] / "experiments" / f"{EXPERIMENT}.yaml").write_text(OVERRIDES.replace("ITERS", str(iters)))


def _train(defs, instance) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def("train_experiment").execute_in_process(partition_key=EXPERIMENT, instance=instance)
    assert result.success
    failed = [(e.check_name, e.metadata) for e in result.get_asset_check_evaluations() if not e.passed]
    assert not failed, failed
    return result


def _metadata(result, asset: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_experiment_trains_on_slurm_resumes_and_is_recorded(project):
    _write_experiment(project, 40)
    defs = build_definitions(project)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        first = _train(defs, instance)
        ckpt = _metadata(first, "checkpoint")
        assert ckpt["backend"] == "slurm" and ckpt["slurm_job_id"].isdigit()
        assert ckpt["iteration"] == 40 and ckpt["resumed_from_iteration"] == -1
        assert all(len(sha) == 64 for sha in ckpt["sha256"].values())
        log = _metadata(first, "training_log")
        assert log["last_loss"] < log["first_loss"] - 0.5  # the loss falls

        run_dir = project.parents[1] / "data" / "train" / EXPERIMENT
        records = [json.loads(line) for line in (run_dir / "training_log.jsonl").read_text().splitlines()]
        assert list(records[0]) == ["timestamp", "iteration", "loss", "grad_norm", "lr", "consumed_tokens",
                                    "throughput_tps", "gpu_mem_used_gb", "loss_scale"]
        assert log["records"] == len(records) and records[-1]["iteration"] == 40
        assert records[-1]["consumed_tokens"] == 40 * 8 * 64
        sbatch = (run_dir / "launch" / f"{EXPERIMENT}.sbatch").read_text()
        assert "--gres" not in sbatch and "--train-iters" in (run_dir / "launch" / f"{EXPERIMENT}.args.txt").read_text()

        _write_experiment(project, 60)  # resubmitting continues from the latest checkpoint
        second = _train(defs, instance)
        ckpt = _metadata(second, "checkpoint")
        assert (ckpt["resumed_from_iteration"], ckpt["iteration"]) == (40, 60)

        assert defs.resolve_job_def("refresh_records").execute_in_process(instance=instance).success
        db = project.parents[1] / "data" / "catalog" / "metadata.duckdb"
        cols, rows = run_query(db, "SELECT experiment_id, config_path, key_changes, result_summary, notes "
                                   "FROM experiment_records")
        (row,) = [dict(zip(cols, r)) for r in rows]
        assert row["experiment_id"] == EXPERIMENT and row["notes"] == "CI run on the local Slurm cluster."
        assert "schedule.iterations.train_iters=60" in row["key_changes"]
        assert "over 60 iterations" in row["result_summary"]
        md = (project.parents[1] / "data" / "records" / "experiment_records.md").read_text()
        assert f"`{EXPERIMENT}`" in md and "| Experiment ID |" in md
