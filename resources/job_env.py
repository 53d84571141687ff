"""A job's environment: an explicit allow-list, never a copy of the Dagster process's environment.

The Dagster process holds secrets (object-store keys, database passwords, tokens) that a job has no business
seeing, and Slurm stores a job's environment in its state directory. A job gets exactly: the variables
`compute.job_env` names, taken from this process (locale, HOME, …; names that look like credentials are
refused), PATH with this project's Python first, PYTHONPATH, the values the caller sets (the experiment's
`cluster.env`), the *path* of `compute.credentials_file` as AWS_SHARED_CREDENTIALS_FILE, where boto3 (and so
megatron-core's S3 reader) looks for keys, and, with storage on S3, its endpoint as AWS_ENDPOINT_URL (not a
secret). The Pipes and Slurm clients add their own variables.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mm_assets.config.base import PROJECT_ROOT
from mm_assets.config.pipeline import credential_like
from mm_assets.storage.s3_access import CREDENTIALS_FILE_VAR, ENDPOINT_VAR


def job_environment(passthrough: Sequence[str], values: Mapping[str, str] | None = None, *,
                    credentials_file: Path | None = None, endpoint_url: str | None = None,
                    source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a job (see the module docstring); `source` defaults to os.environ."""
    source = os.environ if source is None else source
    env = {name: source[name] for name in passthrough if name in source and not credential_like(name)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{source.get('PATH', os.defpath)}"
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env.update(values or {})
    if credentials_file is not None:
        env[CREDENTIALS_FILE_VAR] = str(credentials_file)
    if endpoint_url is not None:
        env[ENDPOINT_VAR] = endpoint_url
    return env
