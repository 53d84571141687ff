"""Where a release comes from, read from what the upstream assets recorded, never from the bundle itself:
the release file → the experiment (its config, blend.json, run.json) → the checkpoint iteration and the
sha256s its run recorded (checkpoint_hashes.json) → the crawl batches the blend reads → each batch's token
files and the tokenizer identity written into them → the vocabulary layout the blend verified.

The bundle is built from this (bundle.py) and the checklist checks the bundle against it (checklist.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm_assets.config.base import ConfigError
from mm_assets.config.pipeline import PipelineConfig
from mm_assets.digests import FileDigest
from mm_assets.release.config import ReleaseConfig, load_release
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.store import Storage
from mm_assets.tokens.identity import RANDOM, library_versions
from mm_assets.tokens.store import read_identity
from mm_assets.train.launch.experiment import ExperimentConfig, load_experiment
from mm_assets.train.verified_checkpoints import RECORDED_BY, CheckpointHashes

# The libraries that make, train and read the artifacts a bundle ships (with Python: library_versions adds it).
LIBRARIES = ("torch", "megatron-core", "numpy", "tokenizers", "encodec", "vector-quantize-pytorch", "yt-dlp",
             "pyarrow", "duckdb", "dagster")


class ReleaseError(RuntimeError):
    """A release that cannot be built: the message names what is missing and what to materialize."""


@dataclass(frozen=True)
class TokenizerUse:
    """One modality's tokenizer as the training data's token files name it."""

    modality: str
    identity: dict[str, Any]  # TokenizerIdentity.to_metadata()
    batches: tuple[str, ...]

    @property
    def is_random(self) -> bool:
        return self.identity.get("weights") == RANDOM

    @property
    def weights_file(self) -> Path | None:
        path = self.identity.get("weights_path")
        return None if self.is_random or not path else Path(path)

    def label(self) -> str:
        """`encodec_24khz @ weights random` / `tokenizers-bpe @ sha256 c6e008bd6f65`."""
        weights = "weights random" if self.is_random else f"sha256 {str(self.identity.get('weights_sha256'))[:12]}"
        return f"{self.identity.get('tokenizer')} @ {weights}"


@dataclass(frozen=True)
class ReleaseLineage:
    cfg: PipelineConfig
    release: ReleaseConfig
    experiment: ExperimentConfig
    blend: dict[str, Any]
    run: dict[str, Any]
    batches: tuple[str, ...]
    # blend entries no crawl batch made, label -> prefix: a canary set injected on purpose, a prefix made elsewhere
    other_sources: dict[str, str]
    checkpoint_key: str  # runs/<experiment>/checkpoints/iter_NNNNNNN
    recorded: dict[str, FileDigest] | None  # the iteration's files as its run recorded them (None: never recorded)
    tokenizers: dict[str, TokenizerUse]
    tokenizer_problems: tuple[str, ...] = ()
    training: dict[str, Any] = field(default_factory=dict)  # the log record of the released iteration

    @property
    def version(self) -> str:
        return self.release.version

    @property
    def iteration(self) -> int:
        return self.release.checkpoint_iteration

    @property
    def random_tokenizers(self) -> list[TokenizerUse]:
        return [t for t in self.tokenizers.values() if t.is_random]

    def random_weights_line(self) -> str | None:
        """The first line of both cards when a tokenizer has random weights (None otherwise)."""
        random = self.random_tokenizers
        if not random:
            return None
        names = ", ".join(f"{t.modality} ({t.identity.get('tokenizer')})" for t in random)
        plural = len(random) > 1
        return (f"> **RANDOM WEIGHTS: the {names} tokenizer{'s' if plural else ''} of this "
                f"{'internal ' if self.release.internal else ''}release ha{'ve' if plural else 's'} randomly "
                f"initialised weights: {'their' if plural else 'its'} codes describe nothing. Not for use outside "
                "testing.**")

    def to_manifest(self, code_version: str) -> dict[str, Any]:
        """The manifest's `lineage` (experiment, batches, checkpoint, tokenizers, code and library versions)."""
        return {
            "experiment": self.experiment.id,
            "key_changes": list(self.experiment.key_changes),
            "crawl_batches": list(self.batches),
            "blend": {"data_path": self.blend["data_path"], "sources": self.blend.get("sources", []),
                      "vocab_sha256": self.blend["vocab_sha256"], "vocab_size": self.blend["vocab_size"]},
            "checkpoint": {"iteration": self.iteration, "recorded_by": RECORDED_BY,
                           "files": {k: d.as_dict() for k, d in sorted((self.recorded or {}).items())}},
            "training": self.training,
            "tokenizers": {m: t.identity for m, t in sorted(self.tokenizers.items())},
            "code_version": {"trained_at": self.run.get("git_commit", "unknown"), "bundled_at": code_version},
            "library_versions": library_versions(*LIBRARIES),
        }


def _recorded(storage: Storage, experiment: str, iteration: int) -> dict[str, FileDigest] | None:
    hashes = CheckpointHashes.load(storage.store.local_path(storage.layout.checkpoint_hashes(experiment)))
    entry = hashes.entries.get(iteration)
    if entry is None:
        return None
    where = f"{hashes.path}: iteration {iteration}"
    return {name: FileDigest.from_dict(d, where=f"{where} {name}") for name, d in entry["files"].items()}


def tokenizer_uses(storage: Storage, modalities: list[str],
                   batches: tuple[str, ...]) -> tuple[dict[str, TokenizerUse], list[str]]:
    """Each modality's tokenizer identity across the batches' token files; batches that disagree are problems."""
    found: dict[str, dict[str, list[str]]] = {}  # modality -> identity fingerprint -> batches
    identities: dict[str, dict[str, Any]] = {}
    problems = []
    for batch in batches:
        for modality in modalities:
            key = storage.layout.token_file(batch, modality)
            if not storage.store.exists(key):
                problems.append(f"batch {batch}: no {modality} token file ({storage.store.url(key)}): "
                                f"materialize {modality}_tokens for it")
                continue
            identity = read_identity(storage.store.local_path(key))
            if not identity.get("tokenizer"):  # the batch has no item of this modality
                continue
            fingerprint = identity.get("identity_sha256", json.dumps(identity, sort_keys=True))
            identities[fingerprint] = identity
            found.setdefault(modality, {}).setdefault(fingerprint, []).append(batch)
    uses = {}
    for modality, by_identity in found.items():
        if len(by_identity) > 1:
            listed = "; ".join(f"{identities[f]['tokenizer']} ({f[:12]}) in {', '.join(b)}"
                               for f, b in by_identity.items())
            problems.append(f"{modality}: the training batches were tokenized by different tokenizers: {listed}")
        fingerprint, used_by = max(by_identity.items(), key=lambda kv: len(kv[1]))
        uses[modality] = TokenizerUse(modality, identities[fingerprint], tuple(used_by))
    return uses, problems


def _training_record(storage: Storage, experiment: str, iteration: int) -> dict[str, Any]:
    key = storage.layout.training_log(experiment)
    if not storage.store.exists(key):
        return {}
    records = [json.loads(line) for line in storage.store.read_text(key).splitlines() if line.strip()]
    at = [r for r in records if r.get("iteration") == iteration]
    return at[-1] if at else {}


def read_lineage(cfg: PipelineConfig, storage: Storage, version: str) -> ReleaseLineage:
    """The release `version`'s lineage; ReleaseError naming what is missing (ConfigError for a bad file)."""
    release = load_release(cfg, version)
    try:
        experiment = load_experiment(cfg, release.experiment)
    except ConfigError as err:
        raise ConfigError(f"{release.path}: experiment: {err}") from None
    layout, store = storage.layout, storage.store
    docs = {}
    for what, key in (("blend", layout.run_blend(experiment.id)), ("run", layout.run_record(experiment.id))):
        if not store.exists(key):
            asset = "training_blend" if what == "blend" else "checkpoint"
            raise ReleaseError(f"release {version}: experiment {experiment.id} has no {store.url(key)}: "
                               f"materialize {asset} for it first")
        docs[what] = json.loads(store.read_text(key))
    iteration = ArtifactLayout.checkpoint_iteration(release.checkpoint_iteration)
    checkpoint_key = f"{layout.run_checkpoints(experiment.id)}/{iteration}"
    if not store.exists(checkpoint_key):
        recorded = sorted(CheckpointHashes.load(store.local_path(layout.checkpoint_hashes(experiment.id))).entries)
        raise ReleaseError(f"release {version}: experiment {experiment.id} has no checkpoint at iteration "
                           f"{release.checkpoint_iteration} ({store.url(checkpoint_key)}); its recorded iterations: "
                           f"{recorded or 'none'}. Set checkpoint_iteration in {release.path}")
    sources = docs["blend"].get("sources", [])
    batches = tuple(dict.fromkeys(s["shard_batch"] for s in sources if s.get("shard_batch")))
    other = {(f"canary of eval set {s['canary_set']}" if s.get("canary_set") else f"prefix {s['prefix']} (made "
              "outside Dagster)"): s["prefix"] for s in sources if not s.get("shard_batch")}
    uses, problems = tokenizer_uses(storage, list(cfg.shards.order), batches)
    return ReleaseLineage(cfg, release, experiment, docs["blend"], docs["run"], batches, other, checkpoint_key,
                          _recorded(storage, experiment.id, release.checkpoint_iteration), uses, tuple(problems),
                          _training_record(storage, experiment.id, release.checkpoint_iteration))
