"""The pipeline config as a resource, so assets and sensors read it through Dagster, not globals."""

from __future__ import annotations

from functools import cached_property

import dagster as dg

from mm_assets.config import PipelineConfig, load_config


class PipelineConfigResource(dg.ConfigurableResource):
    """configs/pipeline.yaml (or another file), loaded and validated once per process."""

    path: str

    @cached_property
    def _config(self) -> PipelineConfig:
        return load_config(self.path)

    def load(self) -> PipelineConfig:
        return self._config
