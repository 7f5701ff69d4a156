"""ORM models of the atlas2d schema.

Units (stored canonical form): energies eV (total), lengths Å, forces eV/Å, stress
eV/Å³ in ASE's convention (positive = tensile). Positions are Cartesian. For 2D
layers the out-of-plane (vacuum) direction is the cell's c axis, along z.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from atlas2d.db.base import Base
from atlas2d.db.types import Matrix3, SmallIntArray, Vec3Array
from atlas2d.vocabulary import (
    ACTIVITY_STATUSES,
    AL_CAMPAIGN_STATUSES,
    AL_DECISIONS,
    AL_LABEL_STATUSES,
    AL_STAGES,
    AL_STATUSES,
    EVALUATION_KINDS,
    GENERATORS,
    METHODS,
    MODEL_ARCHITECTURES,
    MODEL_STATUSES,
    RULES,
    SOURCE_FORMATS,
    SPLITS,
)


def _in_list(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


CURRENT_ACTIVITY = text("NULLIF(current_setting('atlas2d.activity_id', true), '')::integer")
"""Default of every ``activity_id``: the activity the connection works for, which
atlas2d sets per connection (``db.activity_tag``); NULL for anyone else's SQL."""


def _activity_id() -> Mapped[int | None]:
    """The activity that created the row (NULL: made before the log, or outside atlas2d)."""
    return mapped_column(
        ForeignKey("activities.id", ondelete="SET NULL"), server_default=CURRENT_ACTIVITY
    )


class Activity(Base):
    """One run of a command that writes: who ran what, where, with which code, and
    what it wrote. ``kill -9`` leaves it ``running`` (its pid tells it is gone)."""

    __tablename__ = "activities"
    __table_args__ = (
        CheckConstraint(_in_list("status", ACTIVITY_STATUSES), name="status"),
        CheckConstraint("status <> 'failed' OR error IS NOT NULL", name="failed_has_error"),
        CheckConstraint("(status = 'running') = (finished_at IS NULL)", name="finished"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    command: Mapped[str] = mapped_column(Text)
    """The command path without ``atlas2d``, e.g. ``trainset create``."""
    arguments: Mapped[dict[str, Any]]
    """Every parameter the command ran with, defaults included (JSON values)."""
    os_user: Mapped[str] = mapped_column(Text)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    atlas2d_version: Mapped[str] = mapped_column(Text)
    git_commit: Mapped[str | None] = mapped_column(Text)
    """The atlas2d checkout's commit; NULL when not run from a git checkout."""
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    started_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    rows_written: Mapped[dict[str, Any] | None]
    """{table: rows inserted}, summed from ``activity_rows`` when the command ended."""


class ActivityRows(Base):
    """Rows one INSERT statement of an activity added to one table, written by the
    statement-level trigger ``activity_count_inserted`` on every table that commands fill."""

    __tablename__ = "activity_rows"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    activity_id: Mapped[int] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE"), index=True
    )
    table_name: Mapped[str] = mapped_column(Text)
    n_rows: Mapped[int] = mapped_column(BigInteger)


class Source(Base):
    """One ingested file (or in-memory batch): what it was, its hash, who parsed it."""

    __tablename__ = "sources"
    __table_args__ = (
        CheckConstraint(_in_list("format", SOURCE_FORMATS), name="format"),
        CheckConstraint(
            "(retracted_at IS NULL) = (retraction_reason IS NULL)", name="retraction_has_reason"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    format: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    """sha256 of the file's decompressed bytes (or of the batch's canonical content)."""
    parser: Mapped[str] = mapped_column(Text)
    versions: Mapped[dict[str, Any]]
    """Package versions of the parser (atlas2d, ase, pymatgen, numpy)."""
    options: Mapped[dict[str, Any]]
    """Options the ingest ran with (stress unit, group key, material key)."""
    n_materials: Mapped[int] = mapped_column(Integer)
    n_relaxations: Mapped[int] = mapped_column(Integer)
    n_frames: Mapped[int] = mapped_column(Integer)
    n_entries: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    retracted_at: Mapped[datetime | None]
    """When the file was declared wrong (``audit source --retract``); nothing is deleted,
    new training sets leave it out and models trained on it are ``tainted``."""
    retraction_reason: Mapped[str | None] = mapped_column(Text)
    activity_id: Mapped[int | None] = _activity_id()


class Material(Base):
    """One compound (a 2D layer or a 3D bulk reference), keyed by an external id."""

    __tablename__ = "materials"
    __table_args__ = (
        CheckConstraint("dimensionality IN (0, 1, 2, 3)", name="dimensionality"),
        CheckConstraint("n_elements = cardinality(elements)", name="n_elements"),
        Index("ix_materials_elements", "elements", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    """External key, e.g. an Alexandria ``mat_id``."""
    formula: Mapped[str] = mapped_column(Text, index=True)
    """Reduced formula (pymatgen), e.g. ``MoS2``."""
    formula_alphabetical: Mapped[str | None] = mapped_column(
        Text, Computed("formula_alphabetical(formula)", persisted=True), index=True
    )
    """``formula`` reduced with its elements in alphabetical order, e.g. ``Se2W`` (OPTIMADE's
    ``chemical_formula_reduced``); generated by the database."""
    formula_anonymous: Mapped[str | None] = mapped_column(
        Text, Computed("formula_anonymous(formula)", persisted=True), index=True
    )
    """``formula`` anonymised, largest proportion first, e.g. ``A2B``; generated by the
    database."""
    chemsys: Mapped[str] = mapped_column(Text, index=True)
    """Elements sorted alphabetically and joined by ``-``, e.g. ``Mo-S``."""
    elements: Mapped[list[str]] = mapped_column(ARRAY(Text))
    n_elements: Mapped[int] = mapped_column(SmallInteger)
    prototype: Mapped[str | None] = mapped_column(Text)
    spacegroup_number: Mapped[int | None] = mapped_column(SmallInteger)
    dimensionality: Mapped[int | None] = mapped_column(SmallInteger)
    """2 for layers (vacuum along c), 3 for bulk; 0/1 for molecules and wires."""
    info: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    activity_id: Mapped[int | None] = _activity_id()

    relaxations: Mapped[list[Relaxation]] = relationship(back_populates="material")


class EnergyEntry(Base):
    """A material's final DFT energy entry from a convex-hull file (pymatgen style).

    The corrected energy is ``energy + correction`` (eV, total).
    """

    __tablename__ = "energy_entries"
    __table_args__ = (
        CheckConstraint(_in_list("method", METHODS), name="method"),
        CheckConstraint("n_sites > 0", name="n_sites_positive"),
        CheckConstraint("cardinality(species) = n_sites", name="species_length"),
        CheckConstraint("octet_length(positions) = 24 * n_sites", name="positions_length"),
        CheckConstraint("cardinality(cell) = 9", name="cell_shape"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    material_id: Mapped[int] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), index=True
    )
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(Text)
    energy: Mapped[float] = mapped_column(Double)
    """Uncorrected total energy (eV)."""
    correction: Mapped[float] = mapped_column(Double)
    """Energy correction (eV, total), e.g. MP2020 anion/U corrections."""
    n_sites: Mapped[int] = mapped_column(SmallInteger)
    species: Mapped[np.ndarray] = mapped_column(SmallIntArray)
    """Atomic numbers, shape (n_sites,)."""
    cell: Mapped[np.ndarray] = mapped_column(Matrix3)
    """Lattice vectors as rows, shape (3, 3), Å."""
    positions: Mapped[np.ndarray] = mapped_column(Vec3Array)
    """Cartesian positions, shape (n_sites, 3), Å."""
    data: Mapped[dict[str, Any]]
    """The entry's ``data`` dict as published (mat_id, e_above_hull, e_form, spg, …)."""
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Relaxation(Base):
    """One geometry optimisation of a material, DFT or ML."""

    __tablename__ = "relaxations"
    __table_args__ = (
        CheckConstraint(_in_list("method", METHODS), name="method"),
        CheckConstraint("n_sites > 0", name="n_sites_positive"),
        CheckConstraint("cardinality(species) = n_sites", name="species_length"),
        CheckConstraint("cardinality(pbc) = 3", name="pbc_length"),
        CheckConstraint("n_steps >= 0", name="n_steps_nonnegative"),
        CheckConstraint("method = 'ml' OR model_version_id IS NULL", name="model_only_for_ml"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    material_id: Mapped[int] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), index=True
    )
    source_id: Mapped[int | None] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), index=True
    )
    method: Mapped[str] = mapped_column(Text)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True
    )
    """The model version of an ML relaxation (a version with results cannot be deleted)."""
    sequence: Mapped[int] = mapped_column(SmallInteger)
    """Position among the material's successive relaxations in its source (0, 1, …)."""
    parameters: Mapped[dict[str, Any]]
    """INCAR / functional settings (DFT) or optimiser settings (ML)."""
    n_sites: Mapped[int] = mapped_column(SmallInteger)
    species: Mapped[np.ndarray] = mapped_column(SmallIntArray)
    """Atomic numbers, shape (n_sites,)."""
    pbc: Mapped[list[bool]] = mapped_column(ARRAY(Boolean))
    n_steps: Mapped[int] = mapped_column(Integer)
    converged: Mapped[bool | None] = mapped_column(Boolean)
    final_energy: Mapped[float] = mapped_column(Double)
    """Total energy of the last step (eV)."""
    final_energy_per_atom: Mapped[float] = mapped_column(Double)
    """eV/atom."""
    final_area_per_atom: Mapped[float] = mapped_column(Double)
    """|a × b| / N of the last step (Å²/atom)."""
    max_energy_change: Mapped[float | None] = mapped_column(Double)
    """Largest |e_i − e_{i+1}| between successive steps (eV/atom); NULL for one step.
    No step passes the ecut rule when this is ≤ ecut."""
    wall_time_s: Mapped[float | None] = mapped_column(Double)
    info: Mapped[dict[str, Any]]
    """Ingest notes, e.g. the re-orientation applied to put the vacuum along c."""
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    activity_id: Mapped[int | None] = _activity_id()

    material: Mapped[Material] = relationship(back_populates="relaxations")


class Frame(Base):
    """One ionic step of a relaxation, with summaries computed at ingest.

    Selection (training sets) runs on the scalar columns in SQL; the arrays are read
    only for the frames selected.
    """

    __tablename__ = "frames"
    __table_args__ = (
        # Also the index for "the frames of a relaxation in step order", covering the
        # columns a training-set selection reads: the selection is an index-only scan
        # of a tenth of the table's bytes, at the price of wider index entries at ingest.
        UniqueConstraint(
            "relaxation_id",
            "step",
            postgresql_include=[
                "id",
                "energy_change",
                "n_sites",
                "energy_per_atom",
                "max_force",
                "max_abs_stress",
                "has_isolated_atom",
            ],
        ),
        CheckConstraint("n_sites > 0", name="n_sites_positive"),
        CheckConstraint("step >= 0", name="step_nonnegative"),
        CheckConstraint("octet_length(positions) = 24 * n_sites", name="positions_length"),
        CheckConstraint("octet_length(forces) = 24 * n_sites", name="forces_length"),
        CheckConstraint("cardinality(cell) = 9", name="cell_shape"),
        CheckConstraint("stress IS NULL OR cardinality(stress) = 9", name="stress_shape"),
        CheckConstraint("octet_length(digest) = 16", name="digest_length"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    relaxation_id: Mapped[int] = mapped_column(Integer)
    """The relaxation this step belongs to. Enforced by statement-level triggers (see the
    first migration) rather than a row-level foreign key, whose per-row check halved
    COPY throughput: every inserted batch is checked in one anti-join, and deleting a
    relaxation deletes its frames."""
    step: Mapped[int] = mapped_column(Integer)
    n_sites: Mapped[int] = mapped_column(SmallInteger)
    cell: Mapped[np.ndarray] = mapped_column(Matrix3)
    """Lattice vectors as rows, shape (3, 3), Å."""
    positions: Mapped[np.ndarray] = mapped_column(Vec3Array)
    """Cartesian positions, shape (n_sites, 3), Å."""
    forces: Mapped[np.ndarray] = mapped_column(Vec3Array)
    """Forces, shape (n_sites, 3), eV/Å."""
    stress: Mapped[np.ndarray | None] = mapped_column(Matrix3)
    """Stress, shape (3, 3), eV/Å³, ASE sign (positive = tensile); NULL when not computed."""
    energy: Mapped[float] = mapped_column(Double)
    """Total energy (eV)."""
    energy_per_atom: Mapped[float] = mapped_column(Double)
    """energy / n_sites (eV/atom)."""
    energy_change: Mapped[float | None] = mapped_column(Double)
    """|e_i − e_{i+1}| to the next step (eV/atom); NULL for the last step."""
    max_force: Mapped[float] = mapped_column(Double)
    """Largest per-atom force norm (eV/Å)."""
    max_abs_stress: Mapped[float | None] = mapped_column(Double)
    """Largest |σ_ij| (eV/Å³); NULL when the frame has no stress."""
    area_per_atom: Mapped[float] = mapped_column(Double)
    """|a × b| / n_sites (Å²/atom)."""
    has_isolated_atom: Mapped[bool] = mapped_column(Boolean)
    """True when some atom has no neighbour (periodic images included) within 5 Å."""
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    """xxh3-128 of the frame's content (``db.digests``), to detect changes."""


class TrainingSet(Base):
    """An immutable snapshot of frames chosen by a rule, filtered, and split by material."""

    __tablename__ = "training_sets"
    __table_args__ = (CheckConstraint(_in_list("rule", RULES), name="rule"),)

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    rule: Mapped[str] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]]
    """Every parameter: rule, ecut (eV/atom), filters, split ratios, seed, grouping, selection."""
    split_counts: Mapped[dict[str, Any]]
    """{split: {"frames": n, "materials": m}}."""
    filter_counts: Mapped[dict[str, Any]]
    """{filter: {"frames": n, "materials": m}} removed by each outlier filter."""
    n_frames: Mapped[int] = mapped_column(Integer)
    n_materials: Mapped[int] = mapped_column(Integer)
    relaxation_watermark: Mapped[int] = mapped_column(Integer)
    """Largest relaxation id visible when the set was made; verify re-selects below it."""
    content_hash: Mapped[str] = mapped_column(String(64))
    """sha256 over, in relaxation order, each relaxation's id, split, selected frame ids
    and content hash (``queries.training_sets.HASH_SQL``)."""
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    activity_id: Mapped[int | None] = _activity_id()


class TrainingSetRelaxation(Base):
    """The frames a training set takes from one relaxation, and their split.

    The view ``training_set_frames(training_set_id, relaxation_id, frame_id, split)``
    lists them one per row.
    """

    __tablename__ = "training_set_relaxations"
    __table_args__ = (
        CheckConstraint(_in_list("split", SPLITS), name="split"),
        CheckConstraint("cardinality(frame_ids) > 0", name="frame_ids_not_empty"),
    )

    training_set_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    """training_sets.id, enforced by statement-level triggers (as ``frames.relaxation_id``):
    the per-row foreign-key check cost more than the rest of the insert."""
    relaxation_id: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)
    """relaxations.id; no foreign key: verify reports what was deleted since. Indexed
    alone for audits, which go from a relaxation to the sets holding it."""
    split: Mapped[str] = mapped_column(Text)
    frame_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger, dimensions=1))
    """frames.id of the selected steps, in step order."""


class ModelVersion(Base):
    """One trained force field: a version of a named model, with everything that made it.

    A version is ``ready`` only with its artifact and sha256; a run that fails or is
    interrupted stays ``failed`` with the reason, and is never loaded.
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint(_in_list("architecture", MODEL_ARCHITECTURES), name="architecture"),
        CheckConstraint(_in_list("status", MODEL_STATUSES), name="status"),
        CheckConstraint("version > 0", name="version_positive"),
        CheckConstraint(
            "status <> 'ready' OR (artifact_path IS NOT NULL AND artifact_sha256 IS NOT NULL"
            " AND finished_at IS NOT NULL)",
            name="ready_has_artifact",
        ),
        CheckConstraint("status <> 'failed' OR error IS NOT NULL", name="failed_has_error"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    """1, 2, … per name; ``NAME`` alone means the latest ready version."""
    architecture: Mapped[str] = mapped_column(Text)
    training_set_id: Mapped[int] = mapped_column(
        ForeignKey("training_sets.id", ondelete="RESTRICT"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True
    )
    """The version this one was fine-tuned from (transfer learning); NULL from scratch."""
    hyperparameters: Mapped[dict[str, Any]]
    """Every training setting: lr, batch size, epochs, seed, loss weights, architecture sizes."""
    artifact_path: Mapped[str | None] = mapped_column(Text)
    """Path of the model file, relative to ``$ATLAS2D_HOME/artifacts`` unless absolute."""
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]]
    """{split: {energy_mae_mev_per_atom, force_mae_mev_per_a, stress_mae_gpa, n_frames}}."""
    training_curve: Mapped[list[Any]] = mapped_column(JSONB)
    """One dict per epoch: epoch, train_loss, val_loss, validation MAEs (units in the keys)."""
    environment: Mapped[dict[str, Any]]
    """Package versions, git commit, device, threads, seed, host."""
    status: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
    activity_id: Mapped[int | None] = _activity_id()


class ArtifactBlob(Base):
    """The bytes of a model file, content-addressed: any machine that reaches the
    database can load a model after checking its hash (``$ATLAS2D_HOME/artifacts`` is
    only a cache). ``model_versions.artifact_sha256`` names the blob; versions with the
    same file share one row. Stored uncompressed out of line (STORAGE EXTERNAL, set by
    the migration) so that reading it in slices fetches only those slices."""

    __tablename__ = "artifact_blobs"
    __table_args__ = (
        CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        CheckConstraint("octet_length(content) = n_bytes", name="content_length"),
    )

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Hex sha256 of ``content``."""
    n_bytes: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    """The model file's bytes (a torch.save pickle)."""
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class FramePrediction(Base):
    """A model version's direct prediction on a stored frame (no relaxation)."""

    __tablename__ = "frame_predictions"
    __table_args__ = (
        CheckConstraint("octet_length(forces) = 24 * n_sites", name="forces_length"),
        CheckConstraint("stress IS NULL OR cardinality(stress) = 9", name="stress_shape"),
    )

    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    frame_id: Mapped[int] = mapped_column(
        ForeignKey("frames.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    n_sites: Mapped[int] = mapped_column(SmallInteger)
    energy: Mapped[float] = mapped_column(Double)
    """Total energy (eV)."""
    forces: Mapped[np.ndarray] = mapped_column(Vec3Array)
    """Forces, shape (n_sites, 3), eV/Å."""
    stress: Mapped[np.ndarray | None] = mapped_column(Matrix3)
    """Stress, shape (3, 3), eV/Å³, ASE sign; NULL when the model computes none."""
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    activity_id: Mapped[int | None] = _activity_id()


class Evaluation(Base):
    """A stored evaluation of a model version against DFT on a set of materials."""

    __tablename__ = "evaluations"
    __table_args__ = (
        CheckConstraint(_in_list("kind", EVALUATION_KINDS), name="kind"),
        CheckConstraint("leakage = (leaked_materials > 0)", name="leakage_counted"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    training_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_sets.id", ondelete="CASCADE"), index=True
    )
    split: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]]
    """What was evaluated: relaxation parameters, selection, thresholds."""
    metrics: Mapped[dict[str, Any]]
    """Overall figures, units in the keys (e.g. energy_mae_mev_per_atom)."""
    per_element: Mapped[dict[str, Any]]
    """{element: figures}; a material counts for every element it contains."""
    per_spacegroup: Mapped[dict[str, Any]]
    """{space-group number: figures}."""
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    leakage: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    """Evaluated with ``--allow-leakage`` on materials in the train split of the model
    or of an ancestor."""
    leaked_materials: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    """Evaluated materials that were in a train split of the model or an ancestor."""
    ancestor_val_materials: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    """Evaluated materials that were in an ancestor's val split (allowed, counted)."""
    activity_id: Mapped[int | None] = _activity_id()


class HullRun(Base):
    """One ``atlas2d hull update`` for one energy source: what it recomputed and why."""

    __tablename__ = "hull_runs"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    energy_source: Mapped[str] = mapped_column(Text, index=True)
    """``dft`` or a model version as ``NAME:VERSION``."""
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE")
    )
    parameters: Mapped[dict[str, Any]]
    """chemsys filter, ``all``, energy rules and tolerances."""
    watermarks: Mapped[dict[str, Any]]
    """Largest energy-entry and relaxation ids seen; the next run recomputes only the
    chemical systems touched by newer energies."""
    counts: Mapped[dict[str, Any]]
    """chemsys recomputed, materials written, materials skipped (and why)."""
    wall_time_s: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    activity_id: Mapped[int | None] = _activity_id()


class Stability(Base):
    """A material's place relative to the convex hull, for one energy source.

    All energies eV/atom. Replaced (not appended) each time a hull run recomputes the
    material's chemical system, so a row is the latest result.
    """

    __tablename__ = "stability"
    __table_args__ = (
        CheckConstraint(
            "(energy_source = 'dft') = (model_version_id IS NULL)", name="source_matches_model"
        ),
        Index("ix_stability_energy_source_e_above_hull", "energy_source", "e_above_hull"),
    )

    material_id: Mapped[int] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), primary_key=True
    )
    energy_source: Mapped[str] = mapped_column(Text, primary_key=True)
    """``dft`` or a model version as ``NAME:VERSION``."""
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    hull_run_id: Mapped[int] = mapped_column(
        ForeignKey("hull_runs.id", ondelete="CASCADE"), index=True
    )
    energy_per_atom: Mapped[float] = mapped_column(Double)
    """Corrected energy used (energy + correction) / N, eV/atom."""
    formation_energy_per_atom: Mapped[float] = mapped_column(Double)
    """Relative to the lowest-energy DFT elemental references, eV/atom."""
    e_above_hull: Mapped[float] = mapped_column(Double)
    """DFT: distance above the hull of every DFT material (≥ 0, pymatgen's
    ``get_e_above_hull``). A model: its energy against the DFT hull of all *other*
    materials (negative when the model places it below that hull), eV/atom."""
    hull_distance: Mapped[float] = mapped_column(Double)
    """Signed distance to the DFT hull of all other materials, eV/atom: equals
    ``e_above_hull`` except for DFT hull vertices, where it is minus the energy by which
    the material is below the hull without it. What a model's e_above_hull is compared
    with."""
    decomposition: Mapped[list[Any]] = mapped_column(JSONB)
    """[{material_key, formula, fraction}] of the hull phases at the material's
    composition (atom fractions); itself alone for a hull vertex."""
    activity_id: Mapped[int | None] = _activity_id()


class CandidatePool(Base):
    """A named set of generated candidate layers: how they were made and what became of
    every structure the generator proposed."""

    __tablename__ = "candidate_pools"
    __table_args__ = (
        CheckConstraint(_in_list("generator", GENERATORS), name="generator"),
        CheckConstraint("n_candidates >= 0", name="n_candidates_nonnegative"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    generator: Mapped[str] = mapped_column(Text)
    """``substitute`` or ``decorate``."""
    parameters: Mapped[dict[str, Any]]
    """Every parameter, defaults included (threshold, max candidates, selection,
    prototypes, elements, distance factor, partial, charge balance)."""
    counts: Mapped[dict[str, Any]]
    """Structures per outcome: generated, charge_imbalanced, too_close,
    duplicate_in_pool, duplicate_of_stored, stored."""
    duplicates: Mapped[list[Any]] = mapped_column(JSONB)
    """One dict per duplicate: formula, parent_key, substitution and ``matched_key`` (the
    stored material or pool candidate it matched)."""
    n_candidates: Mapped[int] = mapped_column(Integer)
    """Candidates stored (members of the pool)."""
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    activity_id: Mapped[int | None] = _activity_id()


class PoolCandidate(Base):
    """One candidate of a pool: the material it became, its parent and its structure.

    The structure is the generated, unrelaxed geometry (``relax --pool`` and
    ``label --pool`` start from it); the material has no DFT data until labelled.
    """

    __tablename__ = "pool_candidates"
    __table_args__ = (
        CheckConstraint("n_sites > 0", name="n_sites_positive"),
        CheckConstraint("cardinality(species) = n_sites", name="species_length"),
        CheckConstraint("octet_length(positions) = 24 * n_sites", name="positions_length"),
        CheckConstraint("cardinality(cell) = 9", name="cell_shape"),
    )

    pool_id: Mapped[int] = mapped_column(
        ForeignKey("candidate_pools.id", ondelete="CASCADE"), primary_key=True
    )
    """Deleting a pool deletes its memberships (the materials stay)."""
    material_id: Mapped[int] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    parent_material_id: Mapped[int | None] = mapped_column(
        ForeignKey("materials.id", ondelete="SET NULL"), index=True
    )
    """The prototype layer; NULL once it is deleted (its key stays in the material's
    ``info.generated.parent_key``)."""
    substitution: Mapped[dict[str, Any]]
    """What was put where: ``{"Mo": "W"}`` (every site of Mo), or for a partial
    substitution or a decoration ``{"S@1": "Se"}`` (one symmetry orbit)."""
    score: Mapped[float] = mapped_column(Double)
    """Substitution probability (Hautier et al.'s model; 1 for a decoration)."""
    n_sites: Mapped[int] = mapped_column(SmallInteger)
    species: Mapped[np.ndarray] = mapped_column(SmallIntArray)
    """Atomic numbers, shape (n_sites,)."""
    cell: Mapped[np.ndarray] = mapped_column(Matrix3)
    """Lattice vectors as rows, shape (3, 3), Å; vacuum along c."""
    positions: Mapped[np.ndarray] = mapped_column(Vec3Array)
    """Cartesian positions, shape (n_sites, 3), Å, layer centred along c."""


class AlCampaign(Base):
    """An active-learning campaign: its name, starting model and every parameter."""

    __tablename__ = "al_campaigns"
    __table_args__ = (CheckConstraint(_in_list("status", AL_CAMPAIGN_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="RESTRICT")
    )
    """The model that screens the first iteration."""
    parameters: Mapped[dict[str, Any]]
    """Every parameter, defaults included: generator and its options, threshold and
    stable threshold (eV/atom), budget, control, selection, committee, labeller,
    retrain mode, training-set rule and training options."""
    status: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    activity_id: Mapped[int | None] = _activity_id()


class AlIteration(Base):
    """One iteration of a campaign: the model that screened, where each stage stands,
    what it counted and measured, and the training set and model it produced."""

    __tablename__ = "al_iterations"
    __table_args__ = (
        UniqueConstraint("campaign_id", "index"),
        CheckConstraint("index >= 1", name="index_positive"),
        CheckConstraint(_in_list("stage", AL_STAGES), name="stage"),
        CheckConstraint(_in_list("status", AL_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("al_campaigns.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    """1, 2, … within the campaign."""
    screening_model_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="RESTRICT")
    )
    stage: Mapped[str] = mapped_column(Text)
    """The stage in progress (``done`` once finished)."""
    status: Mapped[str] = mapped_column(Text)
    stage_times: Mapped[dict[str, Any]]
    """{stage: {started, finished (ISO 8601 UTC), seconds}}."""
    pool_id: Mapped[int | None] = mapped_column(
        ForeignKey("candidate_pools.id", ondelete="RESTRICT")
    )
    """The pool its candidates came from."""
    counts: Mapped[dict[str, Any]]
    """Per stage: candidates generated, relaxed, passed, selected, labelled, …"""
    metrics: Mapped[dict[str, Any]]
    """Hit rates, enrichment, prospective MAEs (meV/atom), new DFT-stable materials,
    DFT hull size (see ``al_iteration_summary``)."""
    training_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_sets.id", ondelete="RESTRICT")
    )
    produced_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="RESTRICT")
    )
    """The retrained model (``CAMPAIGN-iterK``) that screens the next iteration."""
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
    activity_id: Mapped[int | None] = _activity_id()


class AlCandidate(Base):
    """One candidate of an iteration: its ML result, the decision with its reason, and
    its label. Energies eV/atom."""

    __tablename__ = "al_candidates"
    __table_args__ = (
        CheckConstraint(_in_list("decision", AL_DECISIONS), name="decision"),
        CheckConstraint(_in_list("label_status", AL_LABEL_STATUSES), name="label_status"),
        CheckConstraint(
            "(label_status IS NOT NULL) = (decision IN ('selected', 'control'))",
            name="labels_for_chosen",
        ),
        CheckConstraint("decision <> 'control' OR in_control", name="control_in_control"),
    )

    iteration_id: Mapped[int] = mapped_column(
        ForeignKey("al_iterations.id", ondelete="CASCADE"), primary_key=True
    )
    material_id: Mapped[int] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    ml_relaxation_id: Mapped[int | None] = mapped_column(
        ForeignKey("relaxations.id", ondelete="SET NULL")
    )
    ml_e_above_hull: Mapped[float | None] = mapped_column(Double)
    """The screening model's e_above_hull (against the DFT hull of the other materials)."""
    committee_relaxation_id: Mapped[int | None] = mapped_column(
        ForeignKey("relaxations.id", ondelete="SET NULL")
    )
    committee_e_above_hull: Mapped[float | None] = mapped_column(Double)
    disagreement: Mapped[float | None] = mapped_column(Double)
    """|screening − committee| e_above_hull."""
    passed: Mapped[bool] = mapped_column(Boolean)
    """ML e_above_hull ≤ the campaign's threshold."""
    in_control: Mapped[bool] = mapped_column(Boolean)
    """Drawn for the control group (decision ``control``, or ``selected`` when the
    policy took it too: labelled once, counted in both groups)."""
    decision: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    rank: Mapped[int | None] = mapped_column(Integer)
    """Position in the policy's order among the passing candidates (1 = first)."""
    label_status: Mapped[str | None] = mapped_column(Text)
    """``pending``, ``labelled`` or ``failed`` for selected and control candidates."""
    label_error: Mapped[str | None] = mapped_column(Text)
    dft_relaxation_id: Mapped[int | None] = mapped_column(
        ForeignKey("relaxations.id", ondelete="SET NULL")
    )
    dft_e_above_hull: Mapped[float | None] = mapped_column(Double)
    """The labelled (DFT) e_above_hull once the hull is updated."""


class FormationEnergy(Base):
    """A layer's formation energy per substitutional (metal) site in one alloy system, for
    one energy source.

    E_F = E(alloy) − [x·E(AX2) + (1−x)·E(BX2)] per formula unit of one metal site, with
    A the alphabetically first metal and x its fraction of the metal sites
    (``analysis.alloys``). Keyed by (material, system, energy source): an end member
    (MoS2) has a row in every system with its metal, its x differing (1 in Mo-W-S, 0 in
    Cr-Mo-S). Replaced (not appended) by each ``atlas2d alloys formation``, so a row is
    the latest result.
    """

    __tablename__ = "formation_energies"
    __table_args__ = (
        CheckConstraint(
            "(energy_source = 'dft') = (model_version_id IS NULL)", name="source_matches_model"
        ),
        CheckConstraint("x >= 0 AND x <= 1", name="x_range"),
        CheckConstraint("n_metal_sites > 0", name="n_metal_sites_positive"),
        Index("ix_formation_energies_system_energy_source", "system", "energy_source"),
    )

    material_id: Mapped[int] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), primary_key=True
    )
    energy_source: Mapped[str] = mapped_column(Text, primary_key=True)
    """``dft``, or a model version (force field or cluster expansion) as ``NAME:VERSION``."""
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    system: Mapped[str] = mapped_column(Text, primary_key=True)
    """``A-B-X`` with the metals in alphabetical order, e.g. ``Mo-W-S``."""
    x: Mapped[float] = mapped_column(Double)
    """Fraction of the metal sites held by A (the alphabetically first metal)."""
    n_metal_sites: Mapped[int] = mapped_column(SmallInteger)
    formation_energy_mev_per_site: Mapped[float] = mapped_column(Double)
    """E_F per formula unit of one metal site (meV/site)."""
    formation_energy_mev_per_atom: Mapped[float] = mapped_column(Double)
    """E_F / 3 (meV/atom)."""
    end_member_a_id: Mapped[int] = mapped_column(ForeignKey("materials.id", ondelete="CASCADE"))
    """The AX2 layer used: lowest energy per atom in the same energy source (for a
    cluster expansion, DFT's, which it was fitted against)."""
    end_member_b_id: Mapped[int] = mapped_column(ForeignKey("materials.id", ondelete="CASCADE"))
    alloy_energy_ev: Mapped[float | None] = mapped_column(Double)
    """The alloy's total energy used (eV, uncorrected); NULL for a cluster expansion,
    which predicts E_F itself."""
    computed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    activity_id: Mapped[int | None] = _activity_id()
