"""Compute as a Dagster resource: where jobs run (a local subprocess, or Slurm), behind one call.

The `checkpoint` asset (and later the eval jobs) describe a job once, as a `JobSpec` holding every rendering
(the program for the local backend, the sbatch script for Slurm), and `ComputeResource.run` starts it on the
configured backend through Dagster Pipes, streams its log into the Dagster log and to `on_line`, and returns
the Pipes invocation (metadata `log`: where the job's output went; `slurm_job_id` on Slurm). A job's
environment is the allow-list of `compute.job_env` (job_env.py).

Watching a job from outside (monitoring) takes two callbacks: `on_start` hears where the job runs once it
runs (Slurm allocates the nodes only then, and no log line names them), `on_line` every line of its log. The
end needs none: `run` returns or raises.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from pydantic import Field

from mm_assets.config.base import ConfigError
from mm_assets.config.pipeline import ComputeConfig, existing_credentials_file
from mm_assets.storage.s3_access import environment_endpoint
from resources.job_env import job_environment
from resources.local import LocalPipesClient
from resources.slurm.client import SlurmPipesClient

_DEFAULTS = ComputeConfig()

# Dagster's own Pipes session reads this preview property on every run: the warning is about Dagster's code,
# not ours, and would otherwise print once per job in every `mm` command.
warnings.filterwarnings("ignore", message=r"Function `PipesMessageReader\.expected_writer_count`",
                        category=dg.PreviewWarning)


@dataclass(frozen=True)
class JobSpec:
    """One job, rendered for every backend."""

    name: str  # the job's name (Slurm's --job-name)
    command: list[str]  # the program and its arguments: what the local backend runs
    sbatch: str  # the batch script: what the Slurm backend submits (its #SBATCH --output names the log)
    log: Path  # the local backend appends the job's stdout and stderr here
    pipes_dir: Path  # the Pipes context and messages (on Slurm, a folder per job inside): both ends see it
    env: Mapping[str, str] = field(default_factory=dict)  # the job's whole environment (ComputeResource.job_env)
    on_line: Callable[[str], None] | None = None  # hears each line of the job's log as it is written
    # hears (Slurm job id or None, host names) when the job starts running (again, after a requeue)
    on_start: Callable[[str | None, list[str]], None] | None = None


class ComputeResource(dg.ConfigurableResource):
    """The fields mirror ComputeConfig (configs/pipeline.yaml `compute:`), which validates them."""

    backend: str = _DEFAULTS.backend
    slurm_conf: str | None = _DEFAULTS.slurm_conf
    poll_interval_s: float = _DEFAULTS.poll_interval_s
    log_tail_lines: int = _DEFAULTS.log_tail_lines
    job_env: list[str] = Field(default_factory=lambda: list(_DEFAULTS.job_env))
    credentials_file: str | None = None  # resolved; checked when a job is built
    # storage.root is s3://: jobs read their shards from there (megatron-core's boto3 client), so they need
    # compute.credentials_file and the endpoint (storage.endpoint_url, else this process's AWS_ENDPOINT_URL).
    object_storage: bool = False
    object_storage_endpoint: str | None = None

    @property
    def compute_config(self) -> ComputeConfig:
        """The validated settings (a bad value fails here, with its name)."""
        return ComputeConfig(**{name: getattr(self, name) for name in ComputeConfig.model_fields})

    def environment(self, values: Mapping[str, str] | None = None) -> dict[str, str]:
        """A job's whole environment: the allow-list, and `values` (the experiment's cluster.env) where the
        backend does not set them itself (an sbatch script exports them). ConfigError for a missing
        compute.credentials_file, before anything is started."""
        cfg = self.compute_config
        own = dict(values or {}) if cfg.backend == "local" else {}
        if self.object_storage and self.credentials_file is None:
            raise ConfigError(
                "compute.credentials_file: storage.root is on object storage, and training jobs read their shards "
                "from it: name an AWS shared-credentials file for them (a key that may read the bucket suffices; "
                "it may be the file storage.credentials_file names). Jobs never get this process's keys.")
        endpoint = (self.object_storage_endpoint or environment_endpoint()) if self.object_storage else None
        return job_environment(cfg.job_env, own, credentials_file=existing_credentials_file(self.credentials_file),
                               endpoint_url=endpoint)

    def run(self, context: dg.AssetExecutionContext, job: JobSpec) -> dg.PipesClientCompletedInvocation:
        """Run `job` on the configured backend and wait for it; dg.Failure (with metadata `log`) when it fails."""
        cfg = self.compute_config
        if cfg.backend == "slurm":
            client = SlurmPipesClient(shared_dir=job.pipes_dir, slurm_conf=cfg.slurm_conf,
                                      poll_interval_s=cfg.poll_interval_s, log_tail_lines=cfg.log_tail_lines)
            return client.run(context=context, script=job.sbatch, job_name=job.name, env=job.env,
                              on_line=job.on_line, on_start=job.on_start)
        client = LocalPipesClient(poll_interval_s=min(cfg.poll_interval_s, 2.0), log_tail_lines=cfg.log_tail_lines)
        return client.run(context=context, command=job.command, log_path=job.log, pipes_dir=job.pipes_dir,
                          env=job.env, on_line=job.on_line, on_start=job.on_start)
