"""The `cluster:` section: the Slurm allocation and how each node starts, with values safe on `#SBATCH` lines."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator

from mm_assets.train.config_sections import _no_control, _Section

# Values that end up on `#SBATCH` lines. sbatch parses those lines itself (no shell), so they cannot be quoted:
# they are restricted to characters that mean nothing to sbatch's own tokenizer or to its filename patterns.
SBATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SBATCH_PARTITION = re.compile(r"^[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*$")
SBATCH_PATH = re.compile(r"^[A-Za-z0-9._/+:@,=-]+$")
# Slurm accepts more forms; we take the two that cannot be misread: HH:MM:SS and D-HH:MM:SS.
TIME_LIMIT = re.compile(r"^(?:(?P<days>\d{1,3})-(?P<dh>\d{1,2})|(?P<hours>\d{1,4})):(?P<m>\d{2}):(?P<s>\d{2})$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ClusterConfig(_Section):
    """Slurm allocation and how each node starts its processes."""

    nodes: Annotated[int, Field(ge=1)] = 1
    gpus_per_node: Annotated[int, Field(ge=0, le=16)] = 8  # 0: CPU only (CI), one process per node
    gpu_type: str | None = None  # e.g. h100; only used to check that fp8 can run
    cpus_per_task: Annotated[int | None, Field(ge=1)] = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str = "01:00:00"  # HH:MM:SS or D-HH:MM:SS
    job_name: str | None = None  # None: the experiment id
    exclusive: bool = True
    megatron_path: str = "/opt/Megatron-LM"  # the user's Megatron-LM checkout (holds pretrain_gpt.py)
    torchrun: list[str] = Field(default_factory=lambda: ["torchrun"], min_length=1)
    # None: <megatron_path>/pretrain_gpt.py through torchrun. Otherwise the program and its fixed arguments
    # (after torchrun's options when use_torchrun, e.g. ['-m', 'pkg.mod']; a whole command line when not).
    entrypoint: list[str] | None = Field(default=None, min_length=1)
    use_torchrun: bool = True
    rdzv_port: Annotated[int, Field(ge=1024, le=65535)] = 29500
    container_image: str | None = None  # pyxis/enroot: srun --container-image
    container_mounts: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)  # exported before srun

    @field_validator("job_name")
    @classmethod
    def _job_name(cls, name: str | None) -> str | None:
        if name is not None and not SBATCH_NAME.match(name):
            raise ValueError(f"job_name {name!r} must match {SBATCH_NAME.pattern} (it is an #SBATCH value)")
        return name

    @field_validator("partition")
    @classmethod
    def _partition(cls, value: str | None) -> str | None:
        if value is not None and not SBATCH_PARTITION.match(value):
            raise ValueError(f"partition {value!r} must be names of [A-Za-z0-9._-], comma-separated")
        return value

    @field_validator("account", "qos")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not SBATCH_NAME.match(value):
            raise ValueError(f"{value!r} must match {SBATCH_NAME.pattern} (it is an #SBATCH value)")
        return value

    @field_validator("time_limit")
    @classmethod
    def _time(cls, value: str) -> str:
        time_limit_minutes(value)
        return value

    @field_validator("megatron_path", "container_image")
    @classmethod
    def _body_text(cls, value: str | None) -> str | None:
        return None if value is None else _no_control(value, "value")

    @field_validator("torchrun", "entrypoint", "container_mounts")
    @classmethod
    def _argv(cls, argv: list[str] | None) -> list[str] | None:
        for item in argv or []:
            if "\0" in item:
                raise ValueError(f"argument {item!r} contains a NUL byte")
        return argv

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not ENV_NAME.match(key):
                raise ValueError(f"environment variable name {key!r} must match {ENV_NAME.pattern}")
            if "\0" in value:
                raise ValueError(f"environment variable {key}: value contains a NUL byte")
        return env

    @property
    def procs_per_node(self) -> int:
        """torchrun processes per node: one per GPU, or one on a CPU node."""
        return self.gpus_per_node or 1

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node


def time_limit_minutes(value: str) -> float:
    """Minutes in a Slurm time limit `HH:MM:SS` or `D-HH:MM:SS`; ValueError naming the accepted forms."""
    m = TIME_LIMIT.match(value)
    if not m or int(m["m"]) > 59 or int(m["s"]) > 59 or (m["dh"] is not None and int(m["dh"]) > 23):
        raise ValueError(
            f"time_limit {value!r}: use HH:MM:SS or D-HH:MM:SS (minutes and seconds < 60, hours < 24 after D-)"
        )
    hours = int(m["days"]) * 24 + int(m["dh"]) if m["days"] is not None else int(m["hours"])
    minutes = hours * 60 + int(m["m"]) + int(m["s"]) / 60
    if minutes <= 0:
        raise ValueError(f"time_limit {value!r} is zero")
    return minutes
