"""``atlas2d audit model``: check a model version and its parent chain end to end.

For every version on the chain: its training set re-verified (selection re-run, content
hash and per-frame digests recomputed; each distinct set once), the source files its
frames came from, its model file re-hashed against the registry, its environment and the
activity that trained it. For the version itself: its registered metrics recomputed from
the stored predictions, optionally some stored predictions made again with the model
file (``reproduce``), and what was made with it downstream. The verdict fails with one
reason per problem. Writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.audit import (
    METRIC_RELATIVE_TOLERANCE,
    MetricComparison,
    PredictionDifference,
    compare_metrics,
    prediction_differences,
)
from atlas2d.errors import Atlas2dError, InvalidInput
from atlas2d.mlff.artifacts import sha256_of_file
from atlas2d.queries import artifact_blobs as blob_queries
from atlas2d.queries import audits as queries
from atlas2d.queries.activities import ActivityRecord, activities_by_ids
from atlas2d.queries.audits import SourceContribution
from atlas2d.queries.frames import frame_atoms, frames_by_id
from atlas2d.queries.model_versions import ModelVersionRef, parent_chain
from atlas2d.queries.provenance import RetractedSource, lineage, retracted_sources_by_training_set
from atlas2d.services import models as registry
from atlas2d.services.predictions import split_errors
from atlas2d.services.trainsets import verify_training_set

ENERGY_TOLERANCE_MEV_PER_ATOM = 1e-2
"""Largest |ΔE|/atom between a stored prediction and the same model file's fresh one.

Float32 models give slightly different numbers for a frame predicted in a batch of
another size or company. Measured on the test models (CPU): the same file predicting the
same frames in batches of 1, 5, 7 (reversed order) and 32 gave energies up to 3.2e-4
meV/atom apart (one float32 step of a 32 eV total over 6 atoms) and forces up to 5e-7
meV/Å. One float32 step of a total energy is up to 2.4e-7 of the energy per atom, 1.7e-3
meV/atom at −7 eV/atom, so this allows a few such steps; another model file differs by
meV (the swapped-file test)."""

FORCE_TOLERANCE_MEV_PER_A = 1e-2
"""Largest |ΔF| component between stored and fresh predictions, meV/Å (measured as
above: at most 5e-7 meV/Å between batchings)."""

REPRODUCE_BATCH_SIZE = 32
"""Structures per model call when reproducing predictions."""


@dataclass(frozen=True)
class ArtifactCheck:
    """A version's model file re-hashed against the registry: this machine's file (the
    cache) and the database's copy (``artifact_blobs``, re-hashed by the server).

    Attributes:
        path: the file checked (absolute); None when no file is registered.
        registered_sha256: the registry's digest. actual_sha256: the file's, None when
            the file is missing or none is registered. stored_sha256: the database
            copy's, None when the database holds none.
    """

    path: str | None
    registered_sha256: str | None
    actual_sha256: str | None
    stored_sha256: str | None = None

    @property
    def ok(self) -> bool:
        """A registered file of which at least one copy exists, every copy matching."""
        copies = [c for c in (self.actual_sha256, self.stored_sha256) if c is not None]
        return (
            self.registered_sha256 is not None
            and bool(copies)
            and all(copy == self.registered_sha256 for copy in copies)
        )

    def problem(self, model: str) -> str | None:
        """One line saying what is wrong with the file, or None."""
        registered = (self.registered_sha256 or "")[:16]
        if self.path is None:
            return f"{model} has no registered model file (it is not ready)"
        if self.actual_sha256 is None and self.stored_sha256 is None:
            return f"model file of {model} is missing: {self.path}, and the database holds no copy"
        if self.actual_sha256 is not None and self.actual_sha256 != self.registered_sha256:
            return (
                f"model file of {model} changed: {self.path} has sha256 "
                f"{self.actual_sha256[:16]}…, the registry recorded {registered}…"
            )
        if self.stored_sha256 is not None and self.stored_sha256 != self.registered_sha256:
            return (
                f"the database's copy of the model file of {model} is damaged: its sha256 is "
                f"{self.stored_sha256[:16]}…, the registry recorded {registered}…"
            )
        return None

    @property
    def where(self) -> str:
        """Which copies were checked, for people."""
        copies = [
            name
            for name, digest in (
                ("file", self.actual_sha256),
                ("database copy", self.stored_sha256),
            )
            if digest is not None
        ]
        return " and ".join(copies)


@dataclass(frozen=True)
class TrainingSetCheck:
    """A training set verified afresh (``trainset verify``) and the files it came from.

    Attributes:
        differences: ``deleted``, ``changed``, ``dropped``, ``added``, ``moved``, each
            ``{"count": n, "first": [frame ids]}`` (see ``VerifyReport``).
        sources: the source files of its frames, most frames first.
    """

    training_set_id: int
    name: str
    reproduced: bool
    stored_hash: str
    recomputed_hash: str
    differences: dict[str, Any]
    sources: list[SourceContribution]


DIFFERENCE_LABELS = {
    "changed": "frames whose content changed since ingest",
    "deleted": "frames deleted from the database",
    "dropped": "frames the selection no longer picks",
    "added": "frames the selection now picks",
    "moved": "frames now in another split",
}
"""What each kind of training-set difference means, for people."""


@dataclass(frozen=True)
class VersionAudit:
    """One version on the chain (depth 0: the audited version, then its parent, …)."""

    depth: int
    model: str
    model_version_id: int
    architecture: str
    status: str
    parent: str | None
    training_set: TrainingSetCheck
    artifact: ArtifactCheck
    environment: dict[str, Any]
    activity_id: int | None
    activity: ActivityRecord | None
    """None when the version was made before the activity log, or outside the CLI."""
    retracted_sources: list[RetractedSource]
    """Retracted files among its training set's sources (the version is ``tainted``)."""


@dataclass(frozen=True)
class ReproduceCheck:
    """Stored predictions made again with the model file.

    Attributes:
        requested, seed: how many frames were asked for and the seed that chose them.
        frames: one difference per frame predicted (fewer than requested when fewer
            have stored predictions).
        skipped: why nothing was predicted (None when it ran).
    """

    requested: int
    seed: int
    device: str
    energy_tolerance_mev_per_atom: float
    force_tolerance_mev_per_a: float
    frames: list[PredictionDifference]
    skipped: str | None = None

    @property
    def out_of_tolerance(self) -> list[PredictionDifference]:
        return [
            d
            for d in self.frames
            if d.energy_mev_per_atom > self.energy_tolerance_mev_per_atom
            or d.force_mev_per_a > self.force_tolerance_mev_per_a
        ]

    @property
    def ok(self) -> bool:
        return self.skipped is None and bool(self.frames) and not self.out_of_tolerance

    @property
    def largest_energy_mev_per_atom(self) -> float | None:
        return max((d.energy_mev_per_atom for d in self.frames), default=None)

    @property
    def largest_force_mev_per_a(self) -> float | None:
        return max((d.force_mev_per_a for d in self.frames), default=None)


@dataclass
class ModelAudit:
    """Everything ``audit model`` checked and found; ``reasons`` is empty on a pass."""

    model: str
    lineage: list[VersionAudit]
    metrics: list[MetricComparison]
    metric_relative_tolerance: float
    reproduce: ReproduceCheck | None
    downstream_counts: dict[str, int]
    downstream_keys: dict[str, list[str]] | None
    reasons: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``pass`` or ``fail``."""
        return "fail" if self.reasons else "pass"

    @property
    def tainted(self) -> bool:
        return any(version.retracted_sources for version in self.lineage)


def audit_model(
    sessions: sessionmaker[Session],
    ref: str,
    artifacts_dir: Path,
    reproduce: int = 0,
    seed: int = 0,
    device: str = "cpu",
    keys: bool = False,
) -> ModelAudit:
    """Audit a model version (any status) and its parent chain (see the module docstring).

    Args:
        ref: ``NAME`` (latest ready) or ``NAME:VERSION``.
        artifacts_dir: ``$ATLAS2D_HOME/artifacts`` (relative artifact paths start there).
        reproduce: frames with stored predictions to predict again (0: none).
        seed: seed of the choice of those frames.
        device: where to run the model for ``reproduce``.
        keys: also list what was made downstream, not only count it.

    Raises:
        NotFound: no such model. InvalidInput: ``reproduce`` < 0.
    """
    if reproduce < 0:
        raise InvalidInput(f"--reproduce {reproduce}: give a number of frames, 0 or more.")
    with sessions.begin() as session:
        model = registry.resolve(session, ref, require_ready=False)
        chain = {version.id: version for version in parent_chain(session, model.id)}
        steps = lineage(session, model.id)
        set_ids = list(dict.fromkeys(step.training_set_id for step in steps))
        sources = queries.training_set_sources(session, set_ids)
        retracted = retracted_sources_by_training_set(session, set_ids)
        activities = activities_by_ids(
            session, [s.activity_id for s in steps if s.activity_id is not None]
        )
        metrics = _recomputed_metrics(session, model)
        counts = queries.downstream_counts(session, model.id)
        downstream_keys = queries.downstream_keys(session, model.id) if keys else None
        artifacts = {
            version_id: _check_artifact(session, version, artifacts_dir)
            for version_id, version in chain.items()
        }
    # Each distinct set once: a fine-tuned chain often reuses its parent's set.
    set_checks = {}
    for step in steps:
        if step.training_set_id not in set_checks:
            report = verify_training_set(sessions, step.training_set)
            set_checks[step.training_set_id] = TrainingSetCheck(
                training_set_id=step.training_set_id,
                name=step.training_set,
                reproduced=report.reproduced,
                stored_hash=report.stored_hash,
                recomputed_hash=report.recomputed_hash,
                differences=report.differences,
                sources=sources.get(step.training_set_id, []),
            )
    versions = [
        VersionAudit(
            depth=step.depth,
            model=step.model,
            model_version_id=step.model_version_id,
            architecture=step.architecture,
            status=step.status,
            parent=steps[i + 1].model if i + 1 < len(steps) else None,
            training_set=set_checks[step.training_set_id],
            artifact=artifacts[step.model_version_id],
            environment=chain[step.model_version_id].environment,
            activity_id=step.activity_id,
            activity=activities.get(step.activity_id) if step.activity_id is not None else None,
            retracted_sources=retracted.get(step.training_set_id, []),
        )
        for i, step in enumerate(steps)
    ]
    reproduced = None
    if reproduce:
        reproduced = _reproduce(
            sessions, model, artifacts_dir, reproduce, seed, device, versions[0].artifact.ok
        )
    audit = ModelAudit(
        model=model.label,
        lineage=versions,
        metrics=metrics,
        metric_relative_tolerance=METRIC_RELATIVE_TOLERANCE,
        reproduce=reproduced,
        downstream_counts=counts,
        downstream_keys=downstream_keys,
    )
    audit.reasons = failure_reasons(audit)
    return audit


def _check_artifact(session: Session, model: ModelVersionRef, artifacts_dir: Path) -> ArtifactCheck:
    if model.artifact_path is None or model.artifact_sha256 is None:
        return ArtifactCheck(None, model.artifact_sha256, None)
    path = registry.artifact_file(model, artifacts_dir)
    actual = sha256_of_file(path) if path.is_file() else None
    stored = blob_queries.rehash_blob(session, model.artifact_sha256)
    return ArtifactCheck(str(path), model.artifact_sha256, actual, stored)


def _recomputed_metrics(session: Session, model: ModelVersionRef) -> list[MetricComparison]:
    """Each split's registered direct-prediction errors next to the same errors computed
    again from the stored predictions and the frames' current labels."""
    comparisons = []
    for split, registered in model.metrics.items():
        if isinstance(registered, dict):  # the per-split errors (not epochs_run, …)
            recomputed = split_errors(session, model.id, model.training_set_id, split)
            comparisons.extend(compare_metrics(split, registered, recomputed))
    return comparisons


def choose_frames(frame_ids: np.ndarray, n: int, seed: int) -> list[int]:
    """``n`` of ``frame_ids`` (all when fewer) chosen by ``seed``, ascending."""
    if len(frame_ids) <= n:
        return [int(i) for i in frame_ids]
    chosen = np.random.default_rng(seed).choice(frame_ids, size=n, replace=False)
    return sorted(int(i) for i in chosen)


def _reproduce(
    sessions: sessionmaker[Session],
    model: ModelVersionRef,
    artifacts_dir: Path,
    n: int,
    seed: int,
    device: str,
    artifact_ok: bool,
) -> ReproduceCheck:
    """Predict ``n`` seeded frames with stored predictions again and compare."""

    def check(frames: list[PredictionDifference], skipped: str | None = None) -> ReproduceCheck:
        return ReproduceCheck(
            n,
            seed,
            device,
            ENERGY_TOLERANCE_MEV_PER_ATOM,
            FORCE_TOLERANCE_MEV_PER_A,
            frames,
            skipped,
        )

    if not artifact_ok:  # never load (unpickle) a file the registry does not vouch for
        return check([], "the model file does not match the registry")
    with sessions.begin() as session:
        chosen = choose_frames(queries.predicted_frame_ids(session, model.id), n, seed)
        stored = queries.stored_predictions(session, model.id, chosen)
        frames = frames_by_id(session, [p.frame_id for p in stored])
    if not stored:
        return check([], f"{model.label} has no stored predictions")
    try:
        # read_artifact checks the bytes it loads: a file swapped since the check is refused.
        data = registry.read_artifact(sessions, model, artifacts_dir)
        force_field = registry.force_field_from_bytes(model.architecture, data, device)
        fresh = force_field.predict(
            [frame_atoms(frame) for frame in frames], batch_size=REPRODUCE_BATCH_SIZE
        )
    except Exception as err:  # a file that will not load or run is a finding
        message = str(err) if isinstance(err, Atlas2dError) else f"{type(err).__name__}: {err}"
        return check([], f"predicting failed: {message}")
    differences = prediction_differences(
        [p.frame_id for p in stored],
        [p.energy for p in stored],
        fresh.energies,
        [p.forces for p in stored],
        fresh.forces,
    )
    return check(differences)


def _training_set_problem(check: TrainingSetCheck, models: list[str]) -> str:
    used_by = ", ".join(models)
    found = [
        f"{difference['count']} {DIFFERENCE_LABELS[kind]} (frame ids "
        f"{', '.join(str(i) for i in difference['first'])}"
        f"{', …' if difference['count'] > len(difference['first']) else ''})"
        for kind, difference in check.differences.items()
        if difference["count"]
    ]
    if not found:
        found = [f"content hash {check.recomputed_hash[:16]}… instead of {check.stored_hash[:16]}…"]
    return f"training set {check.name} (of {used_by}) does not verify: " + "; ".join(found)


def _reproduce_problem(check: ReproduceCheck, artifact_ok: bool) -> str | None:
    """What went wrong reproducing predictions, or None when the model file's own
    reason already says it (the file was not loaded)."""
    if check.skipped is not None:
        return None if not artifact_ok else f": {check.skipped}"
    worst = check.out_of_tolerance
    return (
        f" on {len(worst)} of {len(check.frames)} frames (frame ids "
        f"{', '.join(str(d.frame_id) for d in worst[:20])}): largest difference "
        f"{check.largest_energy_mev_per_atom:.3g} meV/atom, "
        f"{check.largest_force_mev_per_a:.3g} meV/Å (tolerance "
        f"{check.energy_tolerance_mev_per_atom:g} meV/atom, "
        f"{check.force_tolerance_mev_per_a:g} meV/Å)"
    )


def failure_reasons(audit: ModelAudit) -> list[str]:
    """One line per problem found, in lineage, metrics, reproduce order."""
    reasons = []
    sets: dict[int, list[str]] = {}
    for version in audit.lineage:
        sets.setdefault(version.training_set.training_set_id, []).append(version.model)
    reported_sets: set[int] = set()
    for version in audit.lineage:
        check = version.training_set
        if not check.reproduced and check.training_set_id not in reported_sets:
            reported_sets.add(check.training_set_id)
            reasons.append(_training_set_problem(check, sets[check.training_set_id]))
        problem = version.artifact.problem(version.model)
        if problem:
            reasons.append(problem)
        for source in version.retracted_sources:
            reasons.append(
                f"{version.model} is tainted: training set {check.name} holds frames of "
                f"retracted source {source.path} (sha256 {source.sha256[:16]}…): {source.reason}"
            )
    for metric in audit.metrics:
        if not metric.ok:
            reasons.append(
                f"{audit.model} {metric.split} {metric.metric}: the registry says "
                f"{metric.registered}, the stored predictions give {metric.recomputed} "
                f"(relative tolerance {audit.metric_relative_tolerance:g})"
            )
    reproduced = audit.reproduce
    if reproduced is not None and not reproduced.ok:
        reason = _reproduce_problem(reproduced, audit.lineage[0].artifact.ok)
        if reason:
            reasons.append(f"{audit.model} predictions not reproduced{reason}")
    return reasons
