"""The evaluator on the compute resource's Slurm backend: eval_report submits the evaluator as a one-task job on
the real local cluster (tests/conftest.py), follows it through Pipes and publishes the report."""

import dagster as dg
import pytest
from evalproject import write_eval_project

from mm_assets.definitions import build_definitions
from mm_assets.partitions import experiments

pytestmark = pytest.mark.slow
EXPERIMENT = "exp-eval-slurm"
TASK = {"task_name": "greetings", "eval_class": "TextQuestionAnswering",
        "dataset_config": {"path": "eval_datasets/greetings.jsonl"},
        "metric_config": [{"name": "ExactMatch"}], "prompt_template": "Q: {question}\nA: "}
OVERRIDES = """
model: {num_layers: 1, hidden_size: 32, num_attention_heads: 2, ffn_hidden_size: 64, seq_length: 32,
        max_position_embeddings: 32, transformer_impl: local}
parallelism: {tensor_model_parallel_size: 1, pipeline_model_parallel_size: 1, sequence_parallel: false,
              use_distributed_optimizer: false}
optimizer: {lr: 1.0e-3, min_lr: 1.0e-4}
schedule: {micro_batch_size: 4, global_batch_size: 4, tokens: null, iterations: {train_iters: 5, lr_warmup_iters: 1},
           log_interval: 5, save_interval: 5, eval_interval: 5, eval_iters: 1}
precision: {bf16: false, attention_backend: auto, recompute: {granularity: none, method: null, num_layers: null}}
data: {blend: [{shard_batch: filler, weight: 1.0}], split: "98,1,1"}
cluster: {nodes: 1, gpus_per_node: 0, gpu_type: null, cpus_per_task: 1, exclusive: false, time_limit: "00:10:00",
          entrypoint: [python, -m, mm_assets.train.cpu], use_torchrun: false, env: {OMP_NUM_THREADS: "1"}}
"""


@pytest.fixture
def project(tmp_path, slurm_cluster):
    return write_eval_project(
        tmp_path, texts=["Q: say hello\nA: hello there", "Q: say bye\nA: bye now"] * 20, task=TASK,
        samples=[{"id": w, "question": f"say {w}", "answers": [w]} for w in ("hello", "bye")],
        filler=["Q: say hello\nA: hello there"], experiments={EXPERIMENT: OVERRIDES},
        compute={"backend": "slurm", "slurm_conf": str(slurm_cluster.conf)},
        evaluation={"max_new_tokens": 3, "canary": {"samples_per_set": 1}})


def test_eval_report_runs_as_a_slurm_job(project):
    defs = build_definitions(project)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        for job in ("prepare_eval", "train_experiment"):
            assert defs.resolve_job_def(job).execute_in_process(
                instance=instance, partition_key=None if job == "prepare_eval" else EXPERIMENT).success
        result = defs.resolve_job_def("evaluate_experiment").execute_in_process(partition_key=EXPERIMENT,
                                                                                 instance=instance)
        assert result.success
        (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["eval_report"]]
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        assert meta["backend"] == "slurm" and str(meta["slurm_job_id"]).isdigit()
        assert meta["evaluator.samples"] == 2 and meta["device"] == "cpu" and meta["rows"] == 4
        assert "nrefs" not in meta["bleu_signature"]  # this task has no BLEU
        logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
        assert any("Submitted Slurm job" in m and "-eval" in m for m in logs)
        # progress, streamed from the job's log into the Dagster log, once
        assert sum("greetings: 2/2 samples generated" in m for m in logs) == 1
        sbatch = next((project.parents[1] / "data" / "runs" / EXPERIMENT / "eval" / "pipes").rglob("job.sbatch"))
        assert "#SBATCH --job-name=exp-eval-slurm-eval" in sbatch.read_text()
        assert str(meta["log"]).startswith(str(project.parents[1] / "data" / "runs" / EXPERIMENT / "eval" / "logs" / "slurm-"))
