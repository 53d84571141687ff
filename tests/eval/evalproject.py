"""A tiny evaluation project for the tests: the project's BPE text tokenizer trained on a few texts, one eval
task with its dataset in storage, a filler shard published as token_shards publishes one (data, vocab,
manifest last) and experiments that train on it; storage and configs relative to the project folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mm_assets.config.base import DEFAULT_CONFIG
from mm_assets.config.pipeline import load_config
from mm_assets.shards.assets import shard_manifest, vocab_layout
from mm_assets.shards.indexed import write_shard
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.tokens.text import TextTokenizer, train_demo_bpe
from resources.storage import StorageResource

TEXT_RANGE = 512  # tokenizers.text.reserved_vocab_size: the demo BPE's 300 ids fit
SMALL_TOKENIZERS = {"allow_random_weights": True, "audio": {"target_bandwidth": 1.5}, "image": {"codebook_size": 16},
                    "video": {"codebook_size": 16, "num_quantizers": 1},
                    "text": {"tokenizer_json": "models/tokenizer.json", "reserved_vocab_size": TEXT_RANGE}}


def write_eval_project(root: Path, *, texts: list[str], task: dict[str, Any], samples: list[dict[str, Any]],
                       filler: list[str], experiments: dict[str, str], compute: dict[str, Any] | None = None,
                       evaluation: dict[str, Any] | None = None) -> Path:
    """configs/pipeline.yaml with `task` as its one eval task (dataset `samples` at the task's path, a key in
    storage), shard batch `filler` (200 documents cycling through `filler`) and `experiments` (id -> YAML
    overrides); returns the config path."""
    train_demo_bpe(texts, 300, root / "models" / "tokenizer.json")
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    cfg.update(storage={"root": "data"}, experiments_dir="configs/experiments",
               compute={"poll_interval_s": 0.5, **(compute or {})}, tokenizers=SMALL_TOKENIZERS,
               eval={"tasks_dir": "configs/eval", "tasks": [task["task_name"]], **(evaluation or {})})
    (root / "configs" / "eval").mkdir(parents=True)
    (root / "configs" / "experiments").mkdir()
    config = root / "configs" / "pipeline.yaml"
    config.write_text(yaml.safe_dump(cfg))
    (root / "configs" / "eval" / f"{task['task_name']}.yaml").write_text(yaml.safe_dump(task))
    for experiment, text in experiments.items():
        (root / "configs" / "experiments" / f"{experiment}.yaml").write_text(text)
    storage = StorageResource(root=str(root / "data"))
    storage.store.write_text(task["dataset_config"]["path"], "".join(json.dumps(s) + "\n" for s in samples))
    _publish_filler(storage, load_config(config), filler)
    return config


def _publish_filler(storage: StorageResource, cfg, texts: list[str]) -> None:
    layout, tok = vocab_layout(cfg, TEXT_RANGE), TextTokenizer.from_file(cfg.resolve("models/tokenizer.json"))
    docs = [np.concatenate([tok.encode(texts[i % len(texts)]), [layout.eod_id]]) for i in range(200)]
    with storage.store.publish(storage.layout.shard_dir("filler")) as folder:
        folder.mkdir()
        files = write_shard(folder / ArtifactLayout.SHARD_PREFIX, docs, eod_id=layout.eod_id)
        layout.write(folder / ArtifactLayout.SHARD_VOCAB)
        shard_manifest(folder, files, names=(ArtifactLayout.SHARD_VOCAB,)).write(folder)
