"""The reference's pre-release checklist (§B.7), each item a rule proven from the lineage and the data, never
ticked by hand: `checks/release.py` runs them as blocking asset checks on `release_bundle`, and
`mm release checklist` prints the reference's Markdown with each box as the latest check left it.

Each rule takes the `Evidence` of one built bundle (its local folder, its manifest, the lineage the upstream
assets recorded, the training data's facts from the catalog) and returns a `Verdict`: passed or not, one
sentence saying why, and the lines a checklist shows under the item.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mm_assets.etl.catalog import CatalogError
from mm_assets.eval.report import leakage_verdicts
from mm_assets.records.outcome import CheckEvaluation
from mm_assets.release.bundle import model_facts
from mm_assets.release.cards import ModelFacts, data_card, model_card
from mm_assets.release.config import ReviewSection
from mm_assets.release.evaluation import EvalEvidence, read_evaluation
from mm_assets.release.lineage import ReleaseLineage
from mm_assets.release.manifest import BundleManifest, ManifestError, bundle_path
from mm_assets.release.training_data import UNKNOWN, TrainingData, read_training_data
from mm_assets.release.verify import BundleFiles, stored_bundle, verify_bundle
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.store import Storage
from mm_assets.train.verified_checkpoints import CheckpointHashes

MAX_LISTED = 10  # problems a verdict lists before "… and N more"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    lines: tuple[str, ...] = ()  # sub-items: "[x] Text Tokenizer: `…`"


@dataclass(frozen=True)
class Evidence:
    """One built bundle and what it must agree with."""

    lineage: ReleaseLineage
    bundle: Path  # a local folder holding the bundle (on object storage: a verified copy)
    bundle_url: str
    stored: BundleFiles  # the bundle where the store keeps it (on object storage: its objects)
    manifest: BundleManifest | None  # None when manifest.json is unreadable (manifest_error says why)
    manifest_error: str | None
    data: TrainingData | None  # None when the catalog cannot say (data_error says why)
    data_error: str | None
    facts: ModelFacts
    checkpoint_hashes: CheckpointHashes
    evaluation: EvalEvidence
    inference_timeout_s: float = 300.0
    python: str = field(default=sys.executable)


def _listed(problems: list[str]) -> str:
    more = f"; … and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return "; ".join(problems[:MAX_LISTED]) + more


def _bundle_file(ev: Evidence, role: str) -> Path | None:
    """The bundle's part `role` as the manifest names it (None when it names none, or a path outside)."""
    if ev.manifest is None or not isinstance(ev.manifest.contents.get(role), str):
        return None
    try:
        return ev.bundle / ev.manifest.part(role)
    except ManifestError:
        return None


# -- Pre-Release 1: the checkpoint ---------------------------------------------------------------------------


def checkpoint_verified(ev: Evidence) -> Verdict:
    """The bundle's checkpoint files are byte for byte the ones its run recorded when it saved them."""
    iteration, hashes = ev.lineage.iteration, ev.checkpoint_hashes
    folder = _bundle_file(ev, "checkpoint") or ev.bundle / ArtifactLayout.BUNDLE_CHECKPOINT
    problems = hashes.problems(iteration, folder)
    if problems:
        return Verdict(False, f"checkpoint iteration {iteration} of {ev.lineage.experiment.id} does not match the "
                              f"sha256 recorded when it was saved: {_listed(problems)}")
    files = hashes.entries[iteration]["files"]
    listed = ", ".join(f"{name} {entry['sha256'][:12]}…" for name, entry in sorted(files.items()))
    stored = f"{ev.bundle_url}/{folder.relative_to(ev.bundle)}"
    return Verdict(True, f"iteration {iteration}: {len(files)} file(s) match the sha256 recorded by the run that saved "
                         f"them ({listed}); stored in the versioned location {stored}")


# -- Pre-Release 2: tokenizers and encoders ------------------------------------------------------------------

TOKENIZER_LABELS = {"text": "Text Tokenizer", "audio": "Audio Encoder", "image": "Image Encoder",
                    "video": "Video Encoder"}


def _label_order(modality: str) -> int:
    return list(TOKENIZER_LABELS).index(modality) if modality in TOKENIZER_LABELS else len(TOKENIZER_LABELS)


def _tokenizer_problems(ev: Evidence, modality: str) -> list[str]:
    use = ev.lineage.tokenizers[modality]
    entry = (ev.manifest.contents.get("tokenizers") or {}).get(modality) if ev.manifest else None
    if not entry:
        return [f"{modality}: not packaged (manifest.json contents.tokenizers.{modality} is missing)"]
    problems = []
    try:
        packaged = ev.bundle / bundle_path(entry.get("identity"), where=f"contents.tokenizers.{modality}")
    except ManifestError as err:
        return [f"{modality}: {err}"]
    if not packaged.is_file() or json.loads(packaged.read_text(encoding="utf-8")) != use.identity:
        problems.append(f"{modality}: {entry['identity']} is not the identity written into the training batches' "
                        "token files")
    if use.is_random:
        if not ev.lineage.release.internal:
            problems.append(f"{modality}: {use.identity.get('tokenizer')} has random weights: configure pretrained "
                            f"weights (tokenizers.allow_random_weights: false) and re-tokenize, or set internal: true "
                            f"in {ev.lineage.release.path} for an internal release")
        return problems
    weights = entry.get("weights_file")
    if weights is None and (ev.lineage.release.tokenizer_weights == "include" or modality == "text"):
        problems.append(f"{modality}: weights {use.identity.get('weights_path')} were not packaged (missing?)")
    elif weights is not None:
        recorded = ev.manifest.files.get(weights)
        if recorded is None or recorded.sha256 != use.identity.get("weights_sha256"):
            problems.append(f"{modality}: {weights} is not the weights file the tokens were made with (sha256 "
                            f"{use.identity.get('weights_sha256')})")
    return problems


def _first_line_problems(ev: Evidence) -> list[str]:
    expected = ev.lineage.random_weights_line()
    if expected is None:
        return []
    problems = []
    for role in ("model_card", "data_card"):
        card = _bundle_file(ev, role)
        first = card.read_text(encoding="utf-8").splitlines()[0] if card and card.is_file() else ""
        if first != expected:
            problems.append(f"{card.name if card else role}: its first line does not say that the weights are random")
    return problems


def tokenizers_packaged(ev: Evidence) -> Verdict:
    """Every modality's tokenizer identity packaged as the token files recorded it; pretrained weights (random
    ones only in an internal release whose cards say so in their first line)."""
    lineage = ev.lineage
    if not lineage.tokenizers:
        return Verdict(False, "no tokenizer identity found in the training batches' token files")
    problems = list(lineage.tokenizer_problems)
    lines = []
    for modality in sorted(lineage.tokenizers, key=_label_order):
        use = lineage.tokenizers[modality]
        own = _tokenizer_problems(ev, modality)
        problems += own
        note = " (random weights: accepted for an internal release)" if use.is_random and not own else ""
        lines.append(f"[{' ' if own else 'x'}] {TOKENIZER_LABELS.get(modality, modality)}: `{use.label()}`{note}")
    problems += _first_line_problems(ev)
    if problems:
        return Verdict(False, f"tokenizers: {_listed(problems)}", tuple(lines))
    random = [t.modality for t in lineage.random_tokenizers]
    extra = f"; {', '.join(random)} with random weights, stated in the first line of both cards" if random else ""
    return Verdict(True, f"{len(lineage.tokenizers)} tokenizer identities packaged as the token files recorded "
                         f"them{extra}", tuple(lines))


# -- Pre-Release 3 and 4: evaluation and the canary -----------------------------------------------------------


def _task_line(ev: Evidence, task: str) -> str:
    rows = ev.evaluation.standard(task)
    if not rows:
        return f"[ ] {task}: not evaluated"
    first = rows[0]  # each task's first configured metric
    name = "PPL" if first["metric"] == "Perplexity" else first["metric"]
    return f"[x] {task}: `{name} {first['value']:.4g}` ({first['n_samples']} samples)"


def _evaluated_checkpoint_problems(ev: Evidence) -> list[str]:
    """The report evaluated the released iteration, with the bytes its run recorded."""
    details, iteration = ev.evaluation.details, ev.lineage.iteration
    if details.get("iteration") != iteration:
        return [f"the report evaluated iteration {details.get('iteration')}, the release ships iteration {iteration}: "
                f"evaluate that checkpoint, or release the one evaluated"]
    recorded = {name: e["sha256"] for name, e in ev.checkpoint_hashes.entries.get(iteration, {}).get("files", {}).items()}
    if details.get("checkpoint_sha256") != recorded:
        return [f"the report evaluated checkpoint files {details.get('checkpoint_sha256')}, not the ones recorded for "
                f"iteration {iteration} ({recorded})"]
    return []


def eval_complete(ev: Evidence) -> Verdict:
    """The experiment's eval report holds standard-split results for every task in eval.tasks, for the released
    checkpoint (the iteration and sha256s the report's evaluator verified)."""
    evaluation, exp = ev.evaluation, ev.lineage.experiment.id
    if evaluation.tasks_error:
        return Verdict(False, f"eval.tasks cannot be read: {evaluation.tasks_error}")
    if not evaluation.tasks:
        return Verdict(False, "eval.tasks in the pipeline config lists no task: nothing says what to evaluate")
    lines = tuple(_task_line(ev, task) for task in evaluation.tasks)
    if evaluation.error:
        return Verdict(False, f"experiment {exp} has no eval report: {evaluation.error}", lines)
    problems = [f"task {t} has no standard-split result in the report (mm eval run {exp})"
                for t in evaluation.tasks if not evaluation.standard(t)]
    problems += _evaluated_checkpoint_problems(ev)
    if problems:
        return Verdict(False, f"evaluation incomplete: {_listed(problems)}", lines)
    return Verdict(True, f"every configured task ({len(evaluation.tasks)}) evaluated on iteration {ev.lineage.iteration} "
                         "of the released checkpoint, whose sha256s the evaluator verified", lines)


def canary_passed(ev: Evidence) -> Verdict:
    """check_leakage passed on the experiment's latest eval report, and the reference's rule, recomputed from
    the report, finds no task whose canary was memorised."""
    evaluation, exp = ev.evaluation, ev.lineage.experiment.id
    if evaluation.error:
        return Verdict(False, f"no canary result: experiment {exp} has no eval report ({evaluation.error})")
    rule = ev.lineage.cfg.eval.leakage
    verdicts = leakage_verdicts(evaluation.rows, rule)
    if not verdicts:
        return Verdict(False, f"the eval report of {exp} has no task with canary and standard accuracy: the canary "
                              "was never tested")
    leaked = [f"{v.task_name} (canary {v.canary_accuracy:.3f}, standard {v.standard_accuracy:.3f})"
              for v in verdicts if v.leaked]
    check = evaluation.leakage
    if check is None or check.status is None:
        return Verdict(False, f"check_leakage has not evaluated the latest eval_report of {exp}")
    if leaked or not check.passed:
        return Verdict(False, f"canary test failed for {exp}: check_leakage {check.status.value.lower()}"
                              + (f"; leaked: {', '.join(leaked)}" if leaked else ""))
    worst = max(verdicts, key=lambda v: v.margin)
    return Verdict(True, f"check_leakage passed on the eval report of {exp}; recomputed: {len(verdicts)} task(s), "
                         f"the largest margin {worst.task_name} canary {worst.canary_accuracy:.3f} vs standard "
                         f"{worst.standard_accuracy:.3f} (leak: > {rule.canary_accuracy_min} and > standard + "
                         f"{rule.margin_min})")


# -- Pre-Release 5 and 6: the cards --------------------------------------------------------------------------


def _card_verdict(ev: Evidence, role: str, expected: str, fields: tuple[str, ...]) -> Verdict:
    card = _bundle_file(ev, role)
    name = card.name if card else role
    if card is None or not card.is_file():
        return Verdict(False, f"{name} is missing from the bundle")
    if card.read_text(encoding="utf-8") != expected:
        return Verdict(False, f"{name} is not the card generated from this release's lineage and catalog (edited "
                              "after it was generated, or the data changed since): rematerialize release_bundle")
    missing = ev.lineage.release.review.missing(fields)
    if missing and not ev.lineage.release.internal:
        return Verdict(False, f"{name} was generated, but {len(missing)} field(s) await a person's review: "
                              f"{', '.join(missing)} in {ev.lineage.release.path}")
    review = f"; {len(missing)} field(s) left for review ({', '.join(missing)}): accepted for an internal release" \
        if missing else "; every review field filled"
    return Verdict(True, f"{name} generated from the lineage and the catalog{review}")


def model_card_generated(ev: Evidence) -> Verdict:
    return _card_verdict(ev, "model_card", model_card(ev.lineage, ev.facts), ReviewSection.MODEL_CARD)


def data_card_generated(ev: Evidence) -> Verdict:
    if ev.data is None:
        return Verdict(False, f"data card: the catalog cannot say what the release was trained on: {ev.data_error}")
    return _card_verdict(ev, "data_card", data_card(ev.lineage, ev.data), ReviewSection.DATA_CARD)


# -- Pre-Release 7: the license ------------------------------------------------------------------------------


def license_compatible(ev: Evidence) -> Verdict:
    """LICENSE is the configured license text, and every training item's license permits it (the policy's
    release.license_compatibility); unknown and incompatible licenses block, with their sources and counts."""
    release, policy = ev.lineage.release, ev.lineage.cfg.release
    shipped = _bundle_file(ev, "license")
    configured = release.license_file
    if shipped is None or not shipped.is_file():
        return Verdict(False, "LICENSE is missing from the bundle")
    if shipped.read_bytes() != configured.read_bytes():
        return Verdict(False, f"LICENSE differs from {configured} (license.file of {release.path})")
    if ev.data is None:
        return Verdict(False, f"the training data's licenses are unknown: {ev.data_error}")
    problems, counted = [], []
    for c in ev.data.licenses():
        counted.append(f"{c.source}: {c.items} item(s) {c.license}")
        if c.license == UNKNOWN:
            problems.append(f"source {c.source}: {c.items} item(s) with no license (license_source {c.license_source}"
                            f"; metadata.license_policy)")
        elif not policy.allows(c.license, release.license.id):
            problems.append(f"source {c.source}: {c.items} item(s) under {c.license}, which release."
                            f"license_compatibility does not allow to be released as {release.license.id}")
    if problems:
        return Verdict(False, f"LICENSE {release.license.id} is not compatible with the training data: "
                              f"{_listed(problems)}")
    return Verdict(True, f"LICENSE ({release.license.id}) included; the training data's licenses allow it: "
                         f"{_listed(counted)}")


# -- Pre-Release 8: the inference script ---------------------------------------------------------------------


def _script_env() -> dict[str, str]:
    """A plain environment: the script must need nothing but the bundle and its libraries."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1",
            "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}


def inference_runs(ev: Evidence) -> Verdict:
    """The bundle's inference.py, run from the bundle on its checkpoint, generates tokens."""
    script = _bundle_file(ev, "inference")
    if script is None or not script.is_file():
        return Verdict(False, "inference.py is missing from the bundle")
    prompt = ev.lineage.release.inference
    argv = [ev.python, str(script), "--bundle", str(ev.bundle), "--prompt", prompt.prompt,
            "--max-new-tokens", str(prompt.max_new_tokens), "--device", "cpu"]
    try:
        done = subprocess.run(argv, cwd=ev.bundle, env=_script_env(), capture_output=True, text=True,
                              timeout=ev.inference_timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return Verdict(False, f"inference.py did not finish within {ev.inference_timeout_s:g} s "
                              "(release.inference_timeout_s)")
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    if done.returncode != 0:
        return Verdict(False, f"inference.py exited {done.returncode}: {' | '.join(tail)}")
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
        generated, iteration = result["generated_ids"], result["iteration"]
    except (json.JSONDecodeError, IndexError, KeyError, TypeError):
        return Verdict(False, f"inference.py printed no result: {' | '.join(tail)}")
    if iteration != ev.lineage.iteration:
        return Verdict(False, f"inference.py loaded iteration {iteration}, not the released {ev.lineage.iteration}")
    if not generated:
        return Verdict(False, "inference.py generated no token")
    return Verdict(True, f"inference.py generated {len(generated)} token(s) from {prompt.prompt!r} on the bundle's "
                         f"iteration {iteration} ({result.get('stopped_by')}): {' '.join(result.get('tokens', []))}")


# -- Release 1: one complete bundle --------------------------------------------------------------------------

REQUIRED_PARTS = ("checkpoint", "checkpoint_tracker", "launch_args", "launch_sbatch", "config_pipeline",
                  "config_experiment", "config_release", "vocab", "text_tokenizer", "model_card", "data_card",
                  "license", "inference")


def bundle_complete(ev: Evidence) -> Verdict:
    """Every part is in the bundle and every file matches manifest.json, where the store keeps it."""
    if ev.manifest is None:
        return Verdict(False, f"manifest.json: {ev.manifest_error}")
    missing = [role for role in REQUIRED_PARTS if not ev.manifest.contents.get(role)]
    verification = verify_bundle(ev.stored)
    problems = [f"no {role} in the bundle (manifest.json contents.{role})" for role in missing] + verification.problems
    if problems:
        return Verdict(False, f"bundle {ev.bundle_url}: {_listed(problems)}")
    return Verdict(True, f"{verification.checked} files ({verification.bytes:,} bytes) at {ev.bundle_url} match "
                         f"manifest.json (sha256 {verification.manifest_sha256})")


@dataclass(frozen=True)
class ChecklistItem:
    check: str  # the asset check's name
    section: str  # Pre-Release or Release
    number: int
    text: str  # the reference's line
    rule: Callable[[Evidence], Verdict]


CHECKLIST = (
    ChecklistItem("checkpoint_verified", "Pre-Release", 1,
                  "**Checkpoint Finalized**: Checkpoint hash verified and stored in a versioned location.",
                  checkpoint_verified),
    ChecklistItem("tokenizers_packaged", "Pre-Release", 2,
                  "**Tokenizer & Encoders**: All tokenizer and discrete encoder versions are documented and packaged.",
                  tokenizers_packaged),
    ChecklistItem("eval_complete", "Pre-Release", 3,
                  "**Evaluation Complete**: Final evaluation results on all key benchmarks are recorded.",
                  eval_complete),
    ChecklistItem("canary_passed", "Pre-Release", 4, "**Data Leakage Check**: Canary test passed.", canary_passed),
    ChecklistItem("model_card_generated", "Pre-Release", 5, "**Model Card**: `model_card.md` written and reviewed.",
                  model_card_generated),
    ChecklistItem("data_card_generated", "Pre-Release", 6, "**Data Card**: `data_card.md` written and reviewed.",
                  data_card_generated),
    ChecklistItem("license_compatible", "Pre-Release", 7, "**License**: `LICENSE` file included and correct.",
                  license_compatible),
    ChecklistItem("inference_runs", "Pre-Release", 8,
                  "**Inference Code**: Sample inference script is working and tested.", inference_runs),
    ChecklistItem("bundle_complete", "Release", 1,
                  "Package all artifacts (checkpoint, configs, cards, code) into a single bundle.", bundle_complete),
)


def collect_evidence(storage: Storage, lineage: ReleaseLineage, leakage: CheckEvaluation | None = None) -> Evidence:
    """The published bundle of `lineage`'s release (a local copy) and what its checks compare it with;
    `leakage` is how check_leakage last evaluated the experiment's eval report."""
    key = storage.layout.release_dir(lineage.version)
    bundle = storage.store.local_dir(key)
    try:
        manifest, manifest_error = BundleManifest.read(bundle), None
    except ManifestError as err:
        manifest, manifest_error = None, str(err)
    try:
        data, data_error = read_training_data(storage, lineage.batches, lineage.other_sources), None
    except CatalogError as err:
        data, data_error = None, str(err)
    hashes = CheckpointHashes.load(storage.store.local_path(storage.layout.checkpoint_hashes(lineage.experiment.id)))
    return Evidence(lineage, bundle, storage.store.url(key), stored_bundle(storage.store, key), manifest,
                    manifest_error, data, data_error,
                    model_facts(storage, lineage), hashes,
                    read_evaluation(lineage.cfg, storage, lineage.experiment.id, leakage),
                    lineage.cfg.release.inference_timeout_s)
