"""The demo's evaluation: eval datasets written from what the site generator knows to be true about its own
clips (mm_assets.demo.media.DEMO_CLIPS: tones, test patterns, lengths, titles, subtitle lines), the eval report
of exp-tiny-cpu, and the leakage check passing on it and blocking its canary-injected twin.

configs/eval/demo_*.yaml read the datasets from `eval_datasets/demo/` in storage, the clips they name beside
them (copied from the site `mm demo` built, which is not an artifact: on object storage it stays local).
"""

from __future__ import annotations

import json
from pathlib import Path

from mm_assets.config.pipeline import PipelineConfig
from mm_assets.demo.media import DEMO_CLIPS, DemoClip
from mm_assets.etl.catalog import format_rows, query_catalog
from mm_assets.eval.report import leakage_verdicts, read_report
from mm_assets.storage.store import Storage
from mm_assets.train.launch.experiment import check_experiment_id

DATASETS = "demo"  # layout.eval_dataset("demo", <file>)


def _questions(clip: DemoClip) -> list[tuple[str, str, str]]:
    """(id, question, answer): which clip a fact belongs to. Each question names one fact that only its clip
    has, so the answer hangs on a single cue (a model this small memorises that within the demo's budget)."""
    n = clip.number
    return [
        (f"clip-{n}-tone", f"Which clip plays a {clip.freq_hz} Hz tone?", f"clip {n}"),
        (f"clip-{n}-pattern", f"Which clip shows the {clip.pattern} test pattern?", f"clip {n}"),
    ]


def demo_eval_samples() -> dict[str, list[dict]]:
    """File name -> samples, one dataset per demo eval task."""
    return {
        "clip_qa.jsonl": [{"id": sid, "question": q, "answers": [a]} for clip in DEMO_CLIPS
                          for sid, q, a in _questions(clip)],
        "captions.jsonl": [{"id": f"clip-{c.number}", "video": c.media, "captions": [" ".join(c.subtitles)]}
                           for c in DEMO_CLIPS],
        "video_qa.jsonl": [{"id": f"clip-{c.number}-pattern", "video": c.media,
                            "question": "Which test pattern is shown?", "answers": [c.pattern]} for c in DEMO_CLIPS],
        "subtitles.jsonl": [{"id": f"clip-{c.number}", "text": " ".join(c.subtitles)} for c in DEMO_CLIPS],
    }


def write_demo_eval_sets(storage: Storage) -> str:
    """Write the demo datasets (JSON Lines) and the clips they name into storage; returns their folder's key.
    The clips come from the site `mm demo` builds (FileNotFoundError naming it when it is not there)."""
    site = storage.store.working_path(storage.layout.demo_site())
    for clip in DEMO_CLIPS:
        storage.store.write_bytes(storage.layout.eval_dataset(DATASETS, *clip.media.split("/")),
                                  (site / clip.media).read_bytes())
    for name, samples in demo_eval_samples().items():
        storage.store.write_text(storage.layout.eval_dataset(DATASETS, name),
                                 "".join(json.dumps(s, sort_keys=True) + "\n" for s in samples))
    return storage.layout.eval_dataset(DATASETS)


CANARY_EXPERIMENT = "exp-tiny-cpu-canary"  # exp-tiny-cpu with the demo_clip_qa canary injected on purpose
# experiment ids match mm_assets.train.launch.experiment.EXPERIMENT_ID ([a-z0-9._-]): safe inside the quotes
REPORT_SQL = ("SELECT task_name, split, metric, round(value, 4) AS value, n_samples FROM eval_reports "
              "WHERE experiment_id = '{experiment}' ORDER BY task_name, split DESC, metric")


def evaluate_demo(cfg: PipelineConfig, storage: Storage, config_path: Path, experiment: str, instance, *,
                  canary: bool = True) -> bool:
    """Write the demo eval sets, draw their canaries, evaluate `experiment` and print its report; with `canary`,
    also train and evaluate the canary-injected twin, whose leakage check must block. Then the leakage verdicts.
    True when everything went as it should (the twin's evaluation run failing on check_leakage included)."""
    from mm_assets.cli import evaluate_experiment, prepare_eval

    folder = write_demo_eval_sets(storage)
    print(f"\neval sets from what the demo site knows about its clips ({storage.store.url(folder)}); "
          "canaries drawn ...")
    if not prepare_eval(config_path, instance):
        print("preparing the eval sets failed: see the run's logs (mm ui, then Runs)")
        return False
    print(f"evaluating {experiment} ...")
    if not evaluate_experiment(config_path, experiment, instance):
        print(f"evaluating {experiment} failed: see the run's logs (mm ui, then Runs)")
        return False
    cols, rows = query_catalog(storage.store, REPORT_SQL.format(experiment=check_experiment_id(experiment)))
    print(f"\neval report of {experiment} (mm query \"SELECT * FROM eval_reports\"):\n{format_rows(cols, rows)}")
    if not canary:
        print_leakage(cfg, storage, [experiment])
        print(f"(mm demo --canary also trains {CANARY_EXPERIMENT} and shows check_leakage blocking it)")
        return True
    blocked = evaluate_canary_twin(config_path, instance)
    if blocked is None:
        return False
    print_leakage(cfg, storage, [experiment, CANARY_EXPERIMENT])
    leaked = [v.task_name for v in _verdicts(cfg, storage, CANARY_EXPERIMENT) if v.leaked]
    if blocked and leaked:
        print(f"\nas expected: check_leakage passed on {experiment} and FAILED on {CANARY_EXPERIMENT} (canary "
              f"{', '.join(leaked)} memorised), blocking its eval run. That failed run is the demo working: the "
              "guard caught a leak planted on purpose.")
        return True
    print(f"\nUNEXPECTED: check_leakage did not block {CANARY_EXPERIMENT}: the planted canary was not detected")
    return False


def evaluate_canary_twin(config_path: Path, instance) -> bool | None:
    """Train exp-tiny-cpu-canary and evaluate it; True when its evaluation failed (the leakage check is what
    should fail it), None when training failed."""
    from mm_assets.cli import evaluate_experiment, run_experiment

    print(f"\ntraining {CANARY_EXPERIMENT}: exp-tiny-cpu's model with the demo_clip_qa canary samples injected into "
          "its blend on purpose (a leak planted for the guard to find) ...")
    if not run_experiment(config_path, CANARY_EXPERIMENT, instance):
        print(f"training {CANARY_EXPERIMENT} failed: see the run's logs (mm ui, then Runs)")
        return None
    print(f"evaluating {CANARY_EXPERIMENT}: check_leakage is EXPECTED to fail and block this run (errors below about "
          "a failed blocking asset check are the expected result) ...")
    return not evaluate_experiment(config_path, CANARY_EXPERIMENT, instance)


def _verdicts(cfg: PipelineConfig, storage: Storage, experiment: str):
    return leakage_verdicts(read_report(storage, experiment), cfg.eval.leakage)


def print_leakage(cfg: PipelineConfig, storage: Storage, experiment_ids: list[str]) -> None:
    rule = cfg.eval.leakage
    rows = [(exp, v.task_name, f"{v.canary_accuracy:.3f}", f"{v.standard_accuracy:.3f}", f"{v.margin:+.3f}",
             "LEAKED" if v.leaked else "passed") for exp in experiment_ids for v in _verdicts(cfg, storage, exp)]
    print(f"\ncheck_leakage (canary accuracy > {rule.canary_accuracy_min} and > standard + {rule.margin_min}):\n"
          + format_rows(["experiment", "task", "canary_acc", "standard_acc", "margin", "verdict"], rows))
