"""The evaluator program: `python -m mm_assets.eval.evaluate --plan PLAN.json`.

The eval_report asset writes the plan (checkpoint folder and its sha256s, vocabulary layout, text tokenizer, the
rendered eval sets and their canary ids, generation length, device, output folder) and starts this program
through the compute backend, like training: a local subprocess or a Slurm job. It verifies the checkpoint,
loads it, generates (or scores, for perplexity) every sample of every set, splits the scores into the standard
and the canary split, and writes predictions.parquet, metrics.parquet and report.json (last) into the output
folder.

It prints its progress to stdout, which the compute client streams from the job's log into the Dagster log
(never also through Pipes: each line would show twice); under Dagster Pipes it ends by reporting a
materialization (samples, device, wall time), without Pipes it is a plain command. Exit status: 0 done, 2 a bad plan or checkpoint, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mm_assets.eval.config import EvalTask
from mm_assets.eval.metrics import Score, answer_of, exact_matches, generation_scores, perplexity_meter
from mm_assets.eval.model import (
    EvalModelError,
    LoadedModel,
    greedy_generate,
    load_model,
    megatron_process,
    pick_device,
    score_text,
    verify_checkpoint,
)
from mm_assets.eval.report import CANARY, PREDICTIONS_SCHEMA, REPORT_SCHEMA, STANDARD, write_table
from mm_assets.eval.sets import read_eval_set
from mm_assets.shards.vocab import VocabLayout
from mm_assets.storage.layout import ArtifactLayout

Log = Callable[[str], None]


def _generate_rows(lm: LoadedModel, task: EvalTask, rows: list[dict], split_of: Callable[[str], str],
                   plan: dict, layout: VocabLayout, decode: Callable[[list[int]], str], log: Log) -> list[dict]:
    out = []
    for n, row in enumerate(rows, start=1):
        gen = greedy_generate(lm, row["prompt_ids"], max_new_tokens=plan["max_new_tokens"],
                              text_size=layout.text_size, eod_id=layout.eod_id)
        generated = decode(gen.ids)
        out.append({"task_name": task.task_name, "split": split_of(row["sample_id"]), "sample_id": row["sample_id"],
                    "prompt": row["prompt"], "generated": generated, "prediction": answer_of(generated),
                    "expected": row["references"], "perplexity": None, "prompt_tokens": len(row["prompt_ids"]),
                    "prompt_truncated": gen.prompt_truncated, "generated_tokens": len(gen.ids),
                    "stopped_by": gen.stopped_by})
        if n % 10 == 0 or n == len(rows):
            log(f"{task.task_name}: {n}/{len(rows)} samples generated")
    correct = exact_matches([r["prediction"] for r in out], [r["expected"] for r in out])
    for r, ok in zip(out, correct):
        r["correct"] = ok
    return out


def _perplexity_rows(lm: LoadedModel, task: EvalTask, rows: list[dict], split_of: Callable[[str], str],
                     meters: dict[str, Any], log: Log) -> list[dict]:
    out = []
    for row in rows:
        split = split_of(row["sample_id"])
        own = perplexity_meter()
        meters.setdefault(split, perplexity_meter())
        score_text(lm, row["prompt_ids"], [own, meters[split]])
        out.append({"task_name": task.task_name, "split": split, "sample_id": row["sample_id"], "prompt": row["prompt"],
                    "generated": None, "prediction": None, "expected": [], "correct": None,
                    "perplexity": float(own.compute()), "prompt_tokens": len(row["prompt_ids"]),
                    "prompt_truncated": 0, "generated_tokens": 0, "stopped_by": None})
    log(f"{task.task_name}: {len(rows)} texts scored")
    return out


def _metric_rows(experiment: str, task: EvalTask, predictions: list[dict], meters: dict[str, Any],
                 details: dict[str, dict]) -> list[dict]:
    """Report rows of one task (standard, then canary split); each score's detail and signature into `details`."""
    rows = []
    for split in (STANDARD, CANARY):
        mine = [p for p in predictions if p["split"] == split]
        if not mine:
            continue
        if task.kind.generates:
            scores = generation_scores(task.metrics, [p["prediction"] for p in mine], [p["expected"] for p in mine])
        else:
            scores = [Score("Perplexity", float(meters[split].compute()), "torchmetrics Perplexity")]
        for score in scores:
            rows.append({"experiment_id": experiment, "task_name": task.task_name, "split": split,
                         "metric": score.metric, "value": score.value, "n_samples": len(mine)})
            details[f"{task.task_name}/{split}/{score.metric}"] = {"detail": score.detail,
                                                                   "signature": score.signature}
    return rows


def evaluate(plan: dict[str, Any], log: Log) -> dict[str, Any]:
    """Run the plan; returns what to report (files are written into plan["out"])."""
    from mm_assets.tokens.text import TextTokenizer

    started = time.monotonic()
    ckpt = plan["checkpoint"]
    folder = Path(ckpt["folder"])
    verify_checkpoint(folder, ckpt["sha256"])
    log(f"checkpoint {folder}: {len(ckpt['sha256'])} files match their sha256")
    layout = VocabLayout.read(Path(plan["vocab_file"]))
    tokenizer = TextTokenizer.from_file(plan["text_tokenizer"])
    device = pick_device(plan["device"])
    predictions: list[dict] = []
    report: list[dict] = []
    scores: dict[str, dict] = {}
    with megatron_process(device):
        lm = load_model(folder, device)
        log(f"model: {lm.parameters} parameters, iteration {lm.iteration}, seq_length {lm.seq_length}, on {device}")
        for entry in plan["sets"]:
            eval_set = read_eval_set(Path(entry["folder"]))
            task, canaries = eval_set.task, set(entry["canary_ids"])
            split_of = lambda sample_id: CANARY if sample_id in canaries else STANDARD  # noqa: E731
            meters: dict[str, Any] = {}
            if task.kind.generates:
                rows = _generate_rows(lm, task, eval_set.rows, split_of, plan, layout, tokenizer.decode, log)
            else:
                rows = _perplexity_rows(lm, task, eval_set.rows, split_of, meters, log)
            predictions += [{"experiment_id": plan["experiment"], **r} for r in rows]
            report += _metric_rows(plan["experiment"], task, rows, meters, scores)
    out = Path(plan["out"])
    write_table(out / ArtifactLayout.EVAL_PREDICTIONS, predictions, PREDICTIONS_SCHEMA)
    write_table(out / ArtifactLayout.EVAL_METRICS, report, REPORT_SCHEMA)
    details = {"experiment": plan["experiment"], "checkpoint": str(folder), "iteration": lm.iteration,
               "checkpoint_sha256": ckpt["sha256"], "device": str(device), "parameters": lm.parameters,
               "rows": report, "scores": scores,
               "bleu_signatures": sorted({s["signature"] for s in scores.values() if s["signature"]}),
               "max_new_tokens": plan["max_new_tokens"], "samples": len(predictions),
               "wall_s": round(time.monotonic() - started, 2)}
    (out / ArtifactLayout.EVAL_REPORT_RECORD).write_text(json.dumps(details, indent=2, sort_keys=True))  # last
    return details


def _pipes_context():
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    return open_dagster_pipes() if PipesEnvVarParamsLoader().is_dagster_pipes_process() else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mm_assets.eval.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, type=Path, help="the eval plan the eval_report asset wrote")
    args = parser.parse_args(argv)
    try:
        with contextlib.ExitStack() as stack:
            pipes = _pipes_context()
            if pipes is not None:
                stack.enter_context(pipes)  # an exception leaving this block is reported to Dagster

            details = evaluate(json.loads(args.plan.read_text()), lambda line: print(line, flush=True))
            if pipes is not None and pipes.is_asset_step:
                pipes.report_asset_materialization(metadata={
                    "samples": details["samples"], "device": details["device"], "wall_s": details["wall_s"],
                    "iteration": details["iteration"]})
    except (EvalModelError, FileNotFoundError) as err:
        print(f"evaluate: error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
