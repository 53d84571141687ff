"""The artifact layout under a storage root (DESIGN.md §7), without Dagster.

`resources.storage.StorageResource` is this layout as a Dagster resource; commands that need only paths
(`mm query`) use the layout directly, so they start without importing Dagster.
"""

from __future__ import annotations

from pathlib import Path

from mm_assets.paths import safe_join, sanitize_component

CATALOG_FILE = ("catalog", "metadata.duckdb")


class StorageLayout:
    """Artifacts under one root folder; every path is built from sanitised parts and confined to the root.

    Layout:
      batches/<batch>/manifest.txt, batch.json   the registered crawl batch (an immutable snapshot)
      raw/<source>/<id>/<id>.<ext>, item.json    crawled media, published whole by one rename
      crawl/<batch>/items.parquet                 the per-item crawl ledger (ok / skipped / failed + reason)
      metadata/<batch>/media_metadata.parquet     unified metadata; quarantine.parquet beside it
      catalog/metadata.duckdb                     DuckDB views over all batches
      cache/tokens/<modality>/                    per-item token cache (safe to delete: a rerun recomputes)
      eval/sets/<task>/samples.parquet, set.json  an eval set rendered to prompt ids (eval_sets)
      eval/canary/<task>/tokens.bin/.idx, vocab.json, canary.json   a set's canary samples as a shard
      eval/reports/<experiment>/report.parquet    metrics (task x split x metric); predictions.parquet and
                                                  report.json beside it
      eval/decontamination/<experiment>.parquet   eval samples sharing an n-gram with the training text
    Eval datasets named by a relative path live under the root (e.g. eval/datasets/<name>.jsonl).
    """

    root: str

    def __init__(self, root: str | Path):
        self.root = str(root)

    @property
    def root_path(self) -> Path:
        path = Path(self.root).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, *parts: str) -> Path:
        return safe_join(self.root_path, *parts)

    def batch_dir(self, batch: str) -> Path:
        return self.path("batches", sanitize_component(batch))

    def raw_source_dir(self, source: str) -> Path:
        return self.path("raw", sanitize_component(source))

    def item_dir(self, source: str, item_id: str) -> Path:
        return self.path("raw", sanitize_component(source), sanitize_component(item_id))

    def crawl_dir(self, batch: str) -> Path:
        return self.path("crawl", sanitize_component(batch))

    def metadata_dir(self, batch: str) -> Path:
        return self.path("metadata", sanitize_component(batch))

    def catalog_path(self) -> Path:
        return self.path(*CATALOG_FILE)

    def token_cache_dir(self, modality: str) -> Path:
        return self.path("cache", "tokens", sanitize_component(modality))

    def eval_input(self, relative: str) -> Path:
        """An eval dataset (or video folder) given relative to the storage root; refused if it leaves the root."""
        return self.path(*[p for p in str(relative).split("/") if p])

    def eval_set_dir(self, task: str) -> Path:
        return self.path("eval", "sets", sanitize_component(task))

    def canary_dir(self, task: str) -> Path:
        return self.path("eval", "canary", sanitize_component(task))

    def canary_prefix(self, task: str) -> Path:
        """The Megatron prefix of a set's canary shard (a blend entry `canary_set: <task>` points here)."""
        return self.canary_dir(task) / "tokens"

    def eval_report_dir(self, experiment: str) -> Path:
        return self.path("eval", "reports", sanitize_component(experiment))

    def decontamination_path(self, experiment: str) -> Path:
        return self.path("eval", "decontamination", f"{sanitize_component(experiment)}.parquet")


def catalog_storage_root(db_path: str | Path) -> Path:
    """The storage root a catalog at `<root>/catalog/metadata.duckdb` belongs to."""
    return Path(db_path).resolve().parents[len(CATALOG_FILE) - 1]
