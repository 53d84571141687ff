"""Storage as a Dagster resource: the artifact layout and the store under the configured root (DESIGN.md §7)."""

from __future__ import annotations

import dagster as dg

from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.store import ArtifactStore, open_store


class StorageResource(dg.ConfigurableResource):
    """`storage:` of the pipeline config: assets ask `layout` for keys and `store` for I/O."""

    root: str  # a local folder (absolute) or, later, s3://bucket/prefix
    scratch: str | None = None  # local staging/cache folder; None: <root>/.staging

    @property
    def layout(self) -> ArtifactLayout:
        return ArtifactLayout()

    @property
    def store(self) -> ArtifactStore:
        return open_store(self.root, self.scratch)
