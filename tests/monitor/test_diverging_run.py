"""The issue's "done when": the tiny CPU model trained with an exploding learning rate
(configs/experiments/exp-tiny-cpu-diverge.yaml) raises GradNormExplosion in Alertmanager while it runs, fails the
ERROR check grad_norm_bounded on training_log, and the alert sensor delivers that failure to a webhook once."""

import json
import threading
import time

import dagster as dg
import numpy as np
import pytest
import yaml
from monitoring_stack import Ticker

from mm_assets.config.base import PROJECT_ROOT
from mm_assets.definitions import build_definitions
from mm_assets.partitions import experiments
from mm_assets.shards.assets import shard_manifest
from mm_assets.shards.indexed import write_shard
from mm_assets.shards.vocab import VocabLayout
from mm_assets.storage.layout import ArtifactLayout

pytestmark = pytest.mark.slow
EXPERIMENT = "exp-tiny-cpu-diverge"


def _project(stack) -> None:
    """The committed experiment, trained on a small pattern shard instead of the demo crawl."""
    layout = VocabLayout.build(48, [])
    pattern = np.arange(2, 34, dtype=np.int32)
    docs = [np.concatenate([np.roll(pattern, i % 7), [layout.eod_id]]).astype(np.int32) for i in range(200)]
    shard = stack.root / "data" / ArtifactLayout().shard_dir("ci-pattern")
    files = write_shard(shard / ArtifactLayout.SHARD_PREFIX, docs, eod_id=layout.eod_id)
    layout.write(shard / ArtifactLayout.SHARD_VOCAB)
    shard_manifest(shard, files, names=(ArtifactLayout.SHARD_VOCAB,)).write(shard)
    overrides = yaml.safe_load((PROJECT_ROOT / "configs" / "experiments" / f"{EXPERIMENT}.yaml").read_text())
    overrides["data"] = {"blend": [{"shard_batch": "ci-pattern", "weight": 1.0}], "split": "98,1,1"}
    (stack.root / "experiments").mkdir(exist_ok=True)
    (stack.root / "experiments" / f"{EXPERIMENT}.yaml").write_text(yaml.safe_dump(overrides))


class FirstAbove(threading.Thread):
    """Polls the Pushgateway every 20 ms; remembers when a grad norm above `threshold` first appeared there."""

    def __init__(self, stack, threshold: float):
        super().__init__(daemon=True)
        self.stack, self.threshold, self.at, self.stop = stack, threshold, None, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.at is None:
            for group in self.stack.pushed():
                norm = group.get("llm_pretrain_training_grad_norm")
                if group["labels"].get("experiment") == EXPERIMENT and norm:
                    if float(norm["metrics"][0]["value"]) > self.threshold:
                        self.at = time.time()
            time.sleep(0.02)


def _firing(message) -> bool:
    return message.path == "/alertmanager" and any(
        a["status"] == "firing" and a["labels"]["alertname"] == "GradNormExplosion"
        and a["labels"].get("experiment") == EXPERIMENT for a in message.body["alerts"])


def test_a_diverging_run_raises_grad_norm_explosion_and_a_delivered_error_check(stack):
    _project(stack)
    defs = build_definitions(stack.config)
    watcher = FirstAbove(stack, 10.0)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        tick = Ticker(defs, instance)
        tick()  # the sensor runs before the experiment starts
        watcher.start()
        result = defs.resolve_job_def("train_experiment").execute_in_process(
            partition_key=EXPERIMENT, instance=instance, raise_on_error=False)
        watcher.stop.set()
        assert result.success  # a WARN/ERROR check failure does not fail the run

        fired = stack.receiver.wait_for(_firing, 30)
        assert watcher.at is not None and fired is not None, f"Prometheus alerts: {stack.alerts()}"
        print(f"\ndiverging run: grad norm > 10 at the Pushgateway -> GradNormExplosion at the webhook: "
              f"{fired.at - watcher.at:.2f} s")
        assert not [g for g in stack.pushed() if g["labels"].get("experiment") == EXPERIMENT]  # deleted at the end

        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        grad = checks["grad_norm_bounded"]
        assert not grad.passed and grad.severity == dg.AssetCheckSeverity.ERROR
        assert grad.metadata["max_grad_norm"].value > 10 and grad.metadata["first_above_at_iteration"].value >= 1
        assert checks["loss_finite"].passed and checks["few_skipped_iterations"].passed
        mfu = checks["throughput_above_floor"].metadata["mfu"].value
        assert 0 < mfu < 1  # against the test config's 1e11 FLOP/s "cpu" peak

        log_meta = {k: v.value for k, v in result.asset_materializations_for_node("training_log")[0].metadata.items()}
        layout = ArtifactLayout()
        png = stack.root / "data" / layout.training_curves(EXPERIMENT)
        assert log_meta["curves_path"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert log_meta["curves"].startswith(f"![{EXPERIMENT} loss and grad norm](data:image/png;base64,")
        targets = stack.root / "data" / layout.monitoring_target(EXPERIMENT)
        assert json.loads(targets.read_text()) == []  # written while the job ran, emptied at its end

        assert "delivered" in tick()
        for _ in range(2):
            tick()
    delivered = [m.body for m in stack.receiver.received if m.path == "/dagster"]
    about_grad = [b for b in delivered if "grad_norm_bounded" in b["text"]]
    assert len(about_grad) == 1, [b["text"] for b in delivered]
    assert about_grad[0]["text"].startswith(
        f"[ERROR] check grad_norm_bounded failed on training_log partition {EXPERIMENT}: http://127.0.0.1:3000/runs/")
    assert json.dumps(about_grad[0]).count("max_grad_norm") == 1
