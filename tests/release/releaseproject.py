"""A project to release, made through the real graph: the demo site crawled over loopback, tokenized and
sharded (batch demo-site), a tiny experiment trained on it with the CPU trainer, and release files for it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml

from mm_assets.cli import evaluate_experiment, prepare_eval, run_experiment, run_ingest
from mm_assets.config.base import DEFAULT_CONFIG
from mm_assets.config.pipeline import PipelineConfig, load_config
from mm_assets.crawl.batch import register_batch
from mm_assets.definitions import build_resources
from mm_assets.demo.eval_set import write_demo_eval_sets
from mm_assets.demo.media import write_manifest
from mm_assets.partitions import crawl_batches
from resources.storage import StorageResource

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "exp-tiny-rel"
VERSION = "tiny-rel-0.1"
ITERATIONS = 20


@dataclass
class ReleaseProject:
    root: Path
    config: Path
    instance: dg.DagsterInstance

    @property
    def cfg(self) -> PipelineConfig:
        return load_config(self.config)

    @property
    def storage(self) -> StorageResource:
        return build_resources(self.config)["storage"]

    def write_release(self, version: str, **changes) -> Path:
        """releases/<version>.yaml: the tiny experiment's internal release, with `changes` (top-level keys)."""
        data = {"model_name": "mm-tiny-rel", "experiment": EXPERIMENT, "checkpoint_iteration": ITERATIONS,
                "internal": True, "license": {"id": "LicenseRef-mm-internal", "file": "LICENSE.internal.txt"},
                "inference": {"prompt": "Clip 1, first line.", "max_new_tokens": 4}, "notes": "A test release.",
                **changes}
        path = self.root / "releases" / f"{version}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path


def _tiny_experiment() -> dict:
    data = yaml.safe_load((REPO / "configs" / "experiments" / "exp-tiny-cpu.yaml").read_text())
    data["schedule"].update(iterations={"train_iters": ITERATIONS, "lr_warmup_iters": 2}, save_interval=10,
                            eval_interval=10)
    return data


@contextmanager
def make_release_project(root: Path, demo_site, demo_server) -> Iterator[ReleaseProject]:
    """Crawl, ingest and train the project under `root` (a context manager: it holds a test instance)."""
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    cfg["crawl"].update(item_timeout_s=60, retries=0)
    cfg["experiments_dir"] = "experiments"
    cfg["release"]["releases_dir"] = "releases"
    cfg["eval"]["tasks_dir"] = "eval"  # a copy of configs/eval: tests add a task to it
    (root / "configs").mkdir()
    (root / "experiments").mkdir()
    (root / "releases").mkdir()
    config = root / "configs" / "pipeline.yaml"
    config.write_text(yaml.safe_dump(cfg))
    (root / "experiments" / f"{EXPERIMENT}.yaml").write_text(yaml.safe_dump(_tiny_experiment()))
    licenses = REPO / "configs" / "releases" / "licenses"
    shutil.copyfile(licenses / "mm-internal.txt", root / "releases" / "LICENSE.internal.txt")
    shutil.copytree(REPO / "configs" / "eval", root / "eval")
    manifest = write_manifest(demo_site, demo_server.base_url, root / "sources" / "demo" / "site.txt")
    with dg.instance_for_test() as instance:
        project = ReleaseProject(root, config, instance)
        info, _ = register_batch(project.storage, project.cfg, manifest, "demo")
        instance.add_dynamic_partitions(crawl_batches.name, [info.batch])
        assert info.batch == "demo-site"
        assert run_ingest(config, info.batch, instance)
        assert run_experiment(config, EXPERIMENT, instance)
        # The demo's video QA task reads the site's clips where `mm demo` builds it: in storage.
        shutil.copytree(demo_site.root, project.storage.store.local_dir(project.storage.layout.demo_site()))
        write_demo_eval_sets(project.storage)
        assert prepare_eval(config, instance) and evaluate_experiment(config, EXPERIMENT, instance)
        project.write_release(VERSION)
        yield project
