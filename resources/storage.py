"""Storage as a Dagster resource: the artifact layout and the store under the configured root (DESIGN.md §7)."""

from __future__ import annotations

import dagster as dg

from mm_assets.config.pipeline import PipelineConfig
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.s3_access import ACCESS_KEY_VAR, SECRET_KEY_VAR, S3Access, environment_endpoint, is_s3_url
from mm_assets.storage.store import ArtifactStore, open_store


def _value(field: str | None) -> str | None:
    """A field's value; an EnvVar outside a run (the CLI builds resources without Dagster) is read now."""
    return field.get_value() if isinstance(field, dg.EnvVar) else field


class StorageResource(dg.ConfigurableResource):
    """`storage:` of the pipeline config: assets ask `layout` for keys and `store` for I/O. On S3 the keys come
    from `credentials_file`, else from `access_key_id` / `secret_access_key`, which `from_config` sets to
    dg.EnvVar: Dagster stores and shows the variables' names, never their values."""

    root: str  # a local folder (absolute) or s3://bucket/prefix
    scratch: str | None = None  # local staging/cache folder; None: <root>/.staging
    endpoint_url: str | None = None  # S3: storage.endpoint_url; None: AWS_ENDPOINT_URL, else AWS
    credentials_file: str | None = None  # S3: an AWS shared-credentials file ([default])
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> StorageResource:
        s3 = cfg.storage.on_object_storage and cfg.storage_credentials_file is None
        return cls(root=cfg.storage_root, scratch=cfg.storage_scratch, endpoint_url=cfg.storage.endpoint_url,
                   credentials_file=cfg.storage_credentials_file,
                   access_key_id=dg.EnvVar(ACCESS_KEY_VAR) if s3 else None,
                   secret_access_key=dg.EnvVar(SECRET_KEY_VAR) if s3 else None)

    @property
    def layout(self) -> ArtifactLayout:
        return ArtifactLayout()

    @property
    def store(self) -> ArtifactStore:
        if not is_s3_url(self.root):
            return open_store(self.root, self.scratch)
        access = S3Access(self.endpoint_url or environment_endpoint(), self.credentials_file,
                          _value(self.access_key_id), _value(self.secret_access_key))
        return open_store(self.root, self.scratch, access)
