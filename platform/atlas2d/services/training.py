"""Train or fine-tune a model version from a stored training set and register it.

The run is registered as ``training`` first (committed), then the training set is
exported with the framework's conventions, the framework's own training code runs,
the model file is hashed, its errors on the validation and test splits are measured
(and the predictions stored), and only then is the version marked ``ready``. Any
error or interruption marks it ``failed`` with the reason, so no half-made version is
ever ``ready``.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import InvalidInput, MissingExtra, NotFound, TrainingFailed
from atlas2d.mlff import chatter
from atlas2d.mlff.artifacts import read_verified, sha256_of_file
from atlas2d.mlff.forcefield import ForceField
from atlas2d.mlff.training import TrainedModel, TrainOptions
from atlas2d.provenance import environment
from atlas2d.queries import artifact_blobs as blob_queries
from atlas2d.queries import model_versions as queries
from atlas2d.queries import training_sets as trainset_queries
from atlas2d.queries.model_versions import ModelVersionRef
from atlas2d.queries.training_sets import TrainingSetRow
from atlas2d.services import models as registry
from atlas2d.services.models import ModelVersionDetails
from atlas2d.services.predictions import predict_frames, split_errors
from atlas2d.services.trainset_export import export_training_set
from atlas2d.vocabulary import ARCHITECTURES, DEVICES, ExportFormat, Split, counted, or_list

EVALUATED_SPLITS: tuple[Split, ...] = ("val", "test")
"""The splits a finished run is measured on (direct predictions), when it has them."""


@dataclass(frozen=True)
class TrainRequest:
    """A training run: which data, which model name, from which parent, how."""

    name: str
    training_set: str
    options: TrainOptions
    parent: str | None = None
    """``NAME[:VERSION]`` of a ready version of the same architecture to fine-tune."""


def _check_request(
    session: Session, request: TrainRequest
) -> tuple[TrainingSetRow, ModelVersionRef | None]:
    registry.check_name(request.name)
    options = request.options
    if options.architecture not in ARCHITECTURES:
        raise InvalidInput(
            f"Architecture {options.architecture!r} is not {or_list(ARCHITECTURES)}."
        )
    if options.epochs < 1 or options.batch_size < 1 or options.devices < 1:
        raise InvalidInput("--epochs, --batch-size and --devices must be at least 1.")
    if options.device not in DEVICES:
        raise InvalidInput(f"--device {options.device!r} is not {or_list(DEVICES)}.")
    if options.devices > 1 and options.device != "cuda":
        raise InvalidInput("--devices N > 1 trains on N GPUs: add --device cuda.")
    if options.freeze and request.parent is None:
        raise InvalidInput("--freeze keeps a parent's layers fixed; give the parent with --from.")
    training_set = trainset_queries.training_set_row(session, request.training_set)
    if training_set is None:
        raise NotFound(
            f"No training set is named {request.training_set!r}; `atlas2d trainset list` shows them."
        )
    for split in ("train", "val"):
        if training_set.split_counts[split]["frames"] == 0:
            raise InvalidInput(
                f"Training set {request.training_set!r} has no {split} frames; training needs "
                "train and validation frames (e.g. `--split 90:5:5`)."
            )
    parent = None
    if request.parent is not None:
        parent = registry.resolve(session, request.parent)
        if parent.architecture != options.architecture:
            raise InvalidInput(
                f"--from {request.parent} is a {parent.architecture} model; fine-tuning "
                f"needs the same architecture as --arch {options.architecture}."
            )
    return training_set, parent


def _train(
    export: dict[Split, tuple[Path, int]],
    options: TrainOptions,
    work_dir: Path,
    parent_data: bytes | None,
    elements: tuple[str, ...],
) -> TrainedModel:
    """Run the framework's training on the exported splits (the parent already checked).

    Args:
        parent_data: the verified bytes of the parent's model file, or None.
        elements: the training set's elements in Z order (every split).
    """
    if options.architecture == "m3gnet":
        from atlas2d.mlff.train_m3gnet import train_m3gnet

        dirs: dict[Split, Path] = {s: path for s, (path, _) in export.items() if s != "test"}
        return train_m3gnet(dirs, elements, options, work_dir, parent_data)
    from atlas2d.mlff.train_mace import train_mace

    files = {split: path for split, (path, _) in export.items()}
    return train_mace(files, elements, options, work_dir, parent_data)


def _check_parent(options: TrainOptions, parent: ForceField, elements: tuple[str, ...]) -> None:
    """Fine-tuning needs the parent to know every element, and a layer left to train."""
    try:
        parent.check_fine_tuning(elements, options.freeze)
    except ValueError as err:
        raise InvalidInput(str(err)) from err


def write_curve(curve: list[dict[str, Any]], work_dir: Path) -> Path | None:
    """``training_curve.csv`` and, with matplotlib installed, ``training_curve.png``."""
    if not curve:
        return None
    path = work_dir / "training_curve.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    try:
        from atlas2d.analysis.plots import plot_training_curve
    except MissingExtra:
        return path
    plot_training_curve(curve, work_dir / "training_curve.png")
    return path


def train_model(
    sessions: sessionmaker[Session],
    request: TrainRequest,
    artifacts_dir: Path,
    progress: Callable[[str], None] = lambda message: None,
) -> ModelVersionDetails:
    """Train a new version of ``request.name`` and register it (see the module docstring).

    Args:
        artifacts_dir: ``$ATLAS2D_HOME/artifacts``; the run's folder is
            ``models/NAME/vVERSION`` under it.
        progress: called with a line at each stage.

    Raises:
        NotFound / InvalidInput: bad request; nothing is registered.
        TrainingFailed: the run failed; the version is registered as ``failed``.
    """
    options = request.options
    with sessions.begin() as session:
        training_set, parent = _check_request(session, request)
        elements = trainset_queries.training_set_elements(session, training_set.id)
    parent_data = None
    if parent is not None:  # checked before anything is registered
        parent_data = registry.read_artifact(sessions, parent, artifacts_dir)
        parent_force_field = registry.force_field_from_bytes(parent.architecture, parent_data)
        _check_parent(options, parent_force_field, elements)
    with sessions.begin() as session:
        model_version_id, version = queries.insert_training_version(
            session,
            name=request.name,
            architecture=options.architecture,
            training_set_id=training_set.id,
            parent_id=None if parent is None else parent.id,
            hyperparameters=options.hyperparameters(fine_tuning=parent is not None),
            environment=environment(
                options.device, options.num_threads, options.seed, options.devices
            ),
        )
    ref = f"{request.name}:{version}"
    # A run id in the folder name: databases sharing $ATLAS2D_HOME never share a folder.
    relative_dir = Path("models") / request.name / f"v{version}-{uuid.uuid4().hex[:8]}"
    work_dir = artifacts_dir / relative_dir
    chatter_log = work_dir / chatter.TRAINING_LOG  # the libraries' output, off the screen
    try:
        progress(f"registered {ref} ({options.architecture}) as training; work folder {work_dir}")
        work_dir.mkdir(parents=True)
        fmt: ExportFormat = "matgl" if options.architecture == "m3gnet" else "mace"
        export = export_training_set(sessions, request.training_set, fmt, work_dir / "data")
        progress(
            f"exported {request.training_set} for {fmt}: "
            + ", ".join(
                f"{split} {counted(count, 'frame')}" for split, (_, count) in export.items()
            )
        )
        progress(f"training {options.architecture} for up to {options.epochs} epochs")
        with chatter.quiet(chatter_log, f"training {ref}"):
            trained = _train(export, options, work_dir, parent_data, elements)
        sha256 = sha256_of_file(trained.artifact)
        progress(
            f"trained {trained.epochs_run} epochs in {trained.train_seconds:.1f} s; "
            f"model file sha256 {sha256[:16]}…"
        )
        metrics: dict[str, Any] = {}
        with chatter.quiet(chatter_log, f"loading {ref} and measuring its errors"):
            force_field = registry.force_field_from_bytes(
                options.architecture, read_verified(trained.artifact, sha256, ref), options.device
            )
            for split in EVALUATED_SPLITS:
                if split not in export:
                    continue
                predict_frames(
                    sessions,
                    model_version_id,
                    force_field,
                    training_set.id,
                    split,
                    options.batch_size,
                )
                with sessions.begin() as session:
                    metrics[split] = split_errors(session, model_version_id, training_set.id, split)
        metrics["epochs_run"] = trained.epochs_run
        metrics["stopped_by"] = trained.stopped_by
        metrics["train_seconds"] = trained.train_seconds
        write_curve(trained.curve, work_dir)
        with sessions.begin() as session:
            # The database's copy, in the transaction that makes the version ready: a
            # ready version can be loaded on any machine that reaches the database.
            blob_queries.store_blob(session, sha256, read_verified(trained.artifact, sha256, ref))
            queries.finish_version(
                session,
                model_version_id,
                status="ready",
                artifact_path=str(relative_dir / trained.artifact.name),
                artifact_sha256=sha256,
                metrics=metrics,
                training_curve=trained.curve,
                hyperparameters={
                    **options.hyperparameters(fine_tuning=parent is not None),
                    **trained.hyperparameters,
                },
            )
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        with sessions.begin() as session:
            queries.finish_version(session, model_version_id, status="failed", error=reason)
        if isinstance(err, Exception):
            message = f"Training {ref} failed and is recorded as failed: {reason}"
            if chatter_log.is_file():  # the libraries ran: what they printed may explain it
                message = f"{message.rstrip('.')}; the libraries' output is in {chatter_log}"
            raise TrainingFailed(message) from err
        raise
    progress(f"{ref} is ready")
    return registry.show_model(sessions, ref)
