"""The pipeline config as a resource, so assets and sensors read it through Dagster, not globals."""

from __future__ import annotations

import dagster as dg

from mm_assets.config.pipeline import PipelineConfig, load_config


class PipelineConfigResource(dg.ConfigurableResource):
    """configs/pipeline.yaml (or another file); `load` gives the process's one loaded PipelineConfig."""

    path: str

    def load(self) -> PipelineConfig:
        return load_config(self.path)
