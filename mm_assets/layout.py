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
      monitoring/targets/<experiment>.json        Prometheus file_sd targets of a running job (removed at its end)
    Beside a run's training_log.jsonl: training_curves.png (loss and grad norm).
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

    def monitoring_targets_dir(self) -> Path:
        return self.path("monitoring", "targets")

    def monitoring_targets_path(self, experiment: str) -> Path:
        return self.path("monitoring", "targets", f"{sanitize_component(experiment)}.json")

    @staticmethod
    def training_curves_path(training_log: Path) -> Path:
        """The loss / grad-norm picture beside the run's JSONL log."""
        return Path(training_log).with_name("training_curves.png")


def catalog_storage_root(db_path: str | Path) -> Path:
    """The storage root a catalog at `<root>/catalog/metadata.duckdb` belongs to."""
    return Path(db_path).resolve().parents[len(CATALOG_FILE) - 1]
