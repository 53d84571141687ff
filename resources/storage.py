"""The storage root and the layout of every artifact under it (DESIGN.md §7), as a Dagster resource."""

from __future__ import annotations

import dagster as dg

from mm_assets.layout import StorageLayout


class StorageResource(dg.ConfigurableResource, StorageLayout):
    """The artifact layout (mm_assets.layout.StorageLayout) under `root`, configured per deployment."""

    root: str
