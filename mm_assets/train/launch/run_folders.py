"""An experiment's run folder as the local paths a training job reads and writes (ArtifactLayout's runs/<id>/):
the store's working folder for it (the folder itself under a local root; on S3 a local folder that the
checkpoint asset syncs with the store around the job)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mm_assets.storage.store import Storage
from mm_assets.train.launch.experiment import ExperimentConfig


@dataclass(frozen=True)
class RunFolders:
    root: Path
    launch: Path
    logs: Path
    checkpoints: Path  # --save and --load both: a resubmitted job resumes from the latest checkpoint
    data_cache: Path  # data.data_cache_path, else inside the run folder
    object_storage_cache: Path  # --object-storage-cache-path: the .idx of s3:// shards (megatron-core's cache)
    tensorboard: Path
    pipes: Path
    slurm_stdout: Path  # Slurm's --output / --error patterns (%j: the job id)
    slurm_stderr: Path

    @classmethod
    def of(cls, exp: ExperimentConfig, storage: Storage) -> RunFolders:
        layout, local = storage.layout, storage.store.working_path
        cache = exp.training.data.data_cache_path
        return cls(
            root=local(layout.run_dir(exp.id)),
            launch=local(layout.run_launch(exp.id)),
            logs=local(layout.run_logs(exp.id)),
            checkpoints=local(layout.run_checkpoints(exp.id)),
            data_cache=exp.resolve(cache) if cache is not None else local(layout.run_data_cache(exp.id)),
            object_storage_cache=local(layout.run_object_storage_cache(exp.id)),
            tensorboard=local(layout.run_tensorboard(exp.id)),
            pipes=local(layout.run_pipes(exp.id)),
            slurm_stdout=local(layout.slurm_output(exp.id, "out")),
            slurm_stderr=local(layout.slurm_output(exp.id, "err")),
        )

    @property
    def to_create(self) -> tuple[Path, ...]:
        """Folders that must exist at submission (Slurm opens --output before the script runs)."""
        return self.root, self.logs, self.checkpoints, self.data_cache
