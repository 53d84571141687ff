"""The canary both ways on the CPU model, through Dagster: eval set -> canary set -> blend -> checkpoint -> eval
report. Trained with the canary injected (its shard in the blend), the tiny GPT memorises it and the blocking
check_leakage fails, so a downstream asset in the same run is refused; trained without, the check passes.

Real components throughout: the project's BPE text tokenizer, our shard writer, the CPU trainer (megatron-core
GPTModel) and the evaluator as local subprocesses under Pipes, a Dagster instance in a temp folder.
"""

import json
import time

import dagster as dg
import pytest
from evalproject import write_eval_project

from mm_assets.definitions import build_definitions
from mm_assets.etl.catalog import run_query
from mm_assets.eval.assets import eval_report
from mm_assets.partitions import experiments

pytestmark = pytest.mark.slow
FACTS = [("ada", "Ada Lovelace", "1815"), ("alan", "Alan Turing", "1912"), ("grace", "Grace Hopper", "1906"),
         ("john", "John von Neumann", "1903"), ("claude", "Claude Shannon", "1916"), ("edsger", "Edsger Dijkstra", "1930"),
         ("barbara", "Barbara Liskov", "1939"), ("donald", "Donald Knuth", "1938")]
FILLER = ["the river runs past the old mill and the bridge", "a storm came over the hills in the evening",
          "she read the letter twice before she answered it", "the market opens early on the first day"]
TASK = {"task_name": "birth_years", "eval_class": "TextQuestionAnswering",
        "dataset_config": {"path": "eval_datasets/birth_years.jsonl"},
        "metric_config": [{"name": "ExactMatch"}, {"name": "BLEU"}], "prompt_template": "Q: When was {question} born?\nA: "}
EXPERIMENT = """
model: {num_layers: 2, hidden_size: 64, num_attention_heads: 4, ffn_hidden_size: 176, seq_length: 64,
        max_position_embeddings: 64, transformer_impl: local, untie_embeddings_and_output_weights: false}
parallelism: {tensor_model_parallel_size: 1, pipeline_model_parallel_size: 1, sequence_parallel: false,
              use_distributed_optimizer: false}
optimizer: {lr: 3.0e-3, min_lr: 3.0e-4}
schedule: {micro_batch_size: 8, global_batch_size: 8, tokens: null, iterations: {train_iters: 300, lr_warmup_iters: 5},
           log_interval: 50, save_interval: 300, eval_interval: 300, eval_iters: 1}
precision: {bf16: false, attention_backend: auto, recompute: {granularity: none, method: null, num_layers: null}}
data: {blend: BLEND, split: "98,1,1"}
cluster: {nodes: 1, gpus_per_node: 0, gpu_type: null, cpus_per_task: 1, exclusive: false, time_limit: "00:10:00",
          entrypoint: [python, -m, mm_assets.train.cpu], use_torchrun: false, env: {OMP_NUM_THREADS: "1"}}
"""
BLENDS = {"exp-clean": [{"shard_batch": "filler", "weight": 1.0}],
          "exp-leaky": [{"shard_batch": "filler", "weight": 1.0}, {"canary_set": "birth_years", "weight": 1.0}]}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with a small vocabulary, one eval task, a filler training shard and the two experiments."""
    return write_eval_project(
        tmp_path_factory.mktemp("canary-project"),
        texts=[f"Q: When was {name} born?\nA: {year}" for _, name, year in FACTS] * 5 + FILLER * 5, task=TASK,
        samples=[{"id": i, "question": n, "answers": [y]} for i, n, y in FACTS], filler=FILLER,
        experiments={exp: EXPERIMENT.replace("BLEND", json.dumps(blend)) for exp, blend in BLENDS.items()},
        evaluation={"max_new_tokens": 6, "canary": {"samples_per_set": 4, "seed": 7}})


@dg.asset(partitions_def=experiments, deps=[eval_report], group_name="release")
def release_candidate() -> None:
    """Stands for what consumes an eval report (the release bundle): it must never see a leaked experiment."""


def _check(result, name: str) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_canary_leaks_only_when_injected(project):
    defs = dg.Definitions.merge(build_definitions(project), dg.Definitions(
        assets=[release_candidate],
        jobs=[dg.define_asset_job("gate", dg.AssetSelection.assets("eval_report", "release_candidate"))]))
    seen = {}
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("prepare_eval").execute_in_process(instance=instance).success
        canary_ids = json.loads((project.parents[1] / "data/canary/birth_years/canary.json").read_text())
        assert len(canary_ids["sample_ids"]) == 4 and canary_ids["seed"] == 7
        for exp in ("exp-clean", "exp-leaky"):
            started = time.monotonic()
            instance.add_dynamic_partitions(experiments.name, [exp])
            assert defs.resolve_job_def("train_experiment").execute_in_process(
                partition_key=exp, instance=instance).success
            trained = time.monotonic()
            gate = defs.resolve_job_def("gate").execute_in_process(partition_key=exp, instance=instance,
                                                                   raise_on_error=False)
            check = _check(gate, "check_leakage")
            meta = {k: v.value for k, v in check.metadata.items()}
            seen[exp] = (gate, check, meta)
            print(f"{exp}: canary accuracy {meta['canary_accuracy']:.2f}, standard {meta['standard_accuracy']:.2f}, "
                  f"margin {meta['margin']:+.2f}; train {trained - started:.1f} s, eval {time.monotonic() - trained:.1f} s")

        gate, check, meta = seen["exp-clean"]
        assert gate.success and check.passed and meta["leaked_tasks"] == "none"
        assert meta["canary_accuracy"] < 0.98
        assert [e.asset_key.to_user_string() for e in gate.get_asset_materialization_events()] == \
            ["eval_report", "release_candidate"]

        gate, check, meta = seen["exp-leaky"]
        (made,) = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("training_blend"), asset_partitions=["exp-leaky"]), limit=1).records
        blend = {k: v.value for k, v in made.asset_materialization.metadata.items()}
        assert blend["canary_sets"] == "birth_years" and "canary of eval set `birth_years`" in blend["lineage"]
        assert not check.passed and check.blocking and meta["leaked_tasks"] == "birth_years"
        assert meta["canary_accuracy"] > 0.98 and meta["margin"] > 0.3
        assert meta["margin"] == pytest.approx(meta["canary_accuracy"] - meta["standard_accuracy"])
        assert not gate.success  # the blocking check fails the run ...
        materialized = [e.asset_key.to_user_string() for e in gate.get_asset_materialization_events()]
        assert materialized == ["eval_report"]  # ... and release_candidate is refused

        # the report and the per-sample predictions are in the catalog, with the canary split apart
        assert defs.resolve_job_def("refresh_records").execute_in_process(instance=instance).success
        db = project.parents[1] / "data" / "catalog" / "metadata.duckdb"
        cols, rows = run_query(db, "SELECT experiment_id, task_name, split, metric, value, n_samples FROM eval_reports "
                                   "WHERE metric = 'Accuracy' ORDER BY 1, 3")
        assert [(r[0], r[2], r[5]) for r in rows] == [("exp-clean", "canary", 4), ("exp-clean", "standard", 4),
                                                     ("exp-leaky", "canary", 4), ("exp-leaky", "standard", 4)]
        _, leaked = run_query(db, "SELECT sample_id, prediction, expected FROM eval_predictions "
                                  "WHERE experiment_id = 'exp-leaky' AND split = 'canary' ORDER BY 1")
        assert [p for _, p, _ in leaked] == [e[0] for _, _, e in leaked]  # memorised verbatim
        _, summary = run_query(db, "SELECT experiment_id, result_summary FROM experiment_records ORDER BY 1")
        assert "canary check passed" in summary[0][1] and "canary LEAKED: birth_years" in summary[1][1]
