"""The shards a blend hands to training, verified at each handoff.

`token_shards` records each file's sha256 and size (manifest.json, and its materialization metadata). The
blend compares the .bin/.idx with those records, never with hashes of its own, and writes the digests it
verified into blend.json; the launch compares the files with blend.json again right before training reads
them. Each step also checks the index against its .bin (a changed pointer or a truncated .bin), so a shard
made elsewhere without a manifest is at least consistent, and is pinned from the blend on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mm_assets.digests import FileDigest, digest_mismatch, file_digest
from mm_assets.shards.indexed import bin_path, idx_path, index_problems
from mm_assets.shards.manifest import ShardManifest, has_manifest, manifest_problems
from mm_assets.storage.layout import ArtifactLayout

RECORDED_BY_BLEND = "training_blend (blend.json)"
SUFFIXES = {"bin": bin_path, "idx": idx_path}


def _materialized_problems(prefix: Path, manifest: ShardManifest, materialized: Mapping[str, Any]) -> list[str]:
    """The manifest against the token_shards materialization: a rewrite outside Dagster changes one only."""
    problems = []
    for kind, path_of in SUFFIXES.items():
        recorded = materialized.get(f"{kind}_sha256")
        in_manifest = manifest.files.get(path_of(prefix).name)
        if recorded and in_manifest and recorded != in_manifest.sha256:
            problems.append(f"{prefix.parent / ArtifactLayout.SHARD_MANIFEST}: {path_of(prefix).name} sha256 {in_manifest.sha256}, "
                            f"but the latest token_shards materialization recorded {recorded}: the shard was "
                            "rewritten outside Dagster; rematerialize token_shards")
    return problems


def verify_blend_shard(prefix: str | Path, *, materialized: Mapping[str, Any] | None,
                       manifest_required: bool) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(the .bin/.idx digests to record in blend.json, problems) for one blend prefix.

    `materialized`: the latest token_shards materialization metadata of the shard's batch (None when the
    prefix is not a shard batch or was never materialized through Dagster).
    """
    prefix = Path(prefix)
    problems = index_problems(prefix)
    if has_manifest(prefix):
        try:
            manifest = ShardManifest.read(prefix.parent)
            recorded = manifest.prefix_digests(prefix)
        except ValueError as err:
            return {}, problems + [str(err)]
        problems += _materialized_problems(prefix, manifest, materialized or {})
        problems += manifest_problems(prefix)
        digests = {kind: recorded[path_of(prefix)].as_dict() for kind, path_of in SUFFIXES.items()}
    elif manifest_required:
        problems.append(f"{prefix.parent / ArtifactLayout.SHARD_MANIFEST} is missing: the shard is incomplete (its manifest is "
                        "written last); rematerialize token_shards for it")
        digests = {}
    else:  # a prefix made elsewhere: pinned from here on
        digests = {kind: file_digest(path_of(prefix)).as_dict() for kind, path_of in SUFFIXES.items()}
    return digests, problems


def launch_shard_problems(shards: Mapping[str, Mapping[str, Any]], local: Callable[[str], Path]) -> list[str]:
    """Before training reads them: every prefix's .bin/.idx (read where `local` says) against the digests
    blend.json recorded."""
    problems = []
    for prefix, digests in shards.items():
        consistency = index_problems(local(prefix))
        problems += consistency
        for kind, path_of in SUFFIXES.items():
            try:
                expected = FileDigest.from_dict(digests.get(kind), where=f"blend.json shards.{prefix}.{kind}")
            except ValueError as err:
                problems.append(f"{err}: rematerialize training_blend")
                continue
            mismatch = digest_mismatch(path_of(local(prefix)), expected, recorded_by=RECORDED_BY_BLEND)
            if mismatch and mismatch not in consistency:
                problems.append(mismatch)
    return problems
