"""``atlas2d alloys fit-ce``: a cluster expansion of DFT formation energies, fitted on the
train split of a training set only and registered as a model version of architecture
``cluster-expansion``; and its predictions for ``atlas2d alloys formation``.

Fitting data: the system's alloys in the set's **train** split that lie on the chosen
prototype's lattice, with their DFT E_F (meV/site) and final DFT structures, plus the
two DFT end members (E_F = 0 by definition) unless the set holds them in val or test.
The lattice is built from the lowest-energy DFT end member of the prototype, as
``alloys enumerate`` builds it. The icet file is the artifact (sha256 in the registry,
checked on every load through ``services.models.read_artifact``); the registry records
the training set, every hyperparameter, the cross-validation figures, the training
materials and the environment.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis import alloy_lattice
from atlas2d.analysis import cluster_expansion as numerics
from atlas2d.analysis.alloys import AlloySystem, composition, parse_system, per_atom
from atlas2d.analysis.alloys_extra import require_alloys_extra
from atlas2d.errors import InvalidInput, NotFound, TrainingFailed
from atlas2d.mlff import chatter
from atlas2d.provenance import environment
from atlas2d.queries import alloys as alloy_queries
from atlas2d.queries import artifact_blobs as blob_queries
from atlas2d.queries import candidate_pools as pool_queries
from atlas2d.queries import model_versions as registry_queries
from atlas2d.queries import relaxations as relaxation_queries
from atlas2d.queries import training_sets as trainset_queries
from atlas2d.queries.frames import frame_atoms, frames_by_id
from atlas2d.queries.model_versions import ModelVersionRef
from atlas2d.services import models as registry
from atlas2d.services.alloy_enumeration import parent_lattice
from atlas2d.services.alloys import dft_layers, end_members, formation_rows, how_to_add
from atlas2d.services.models import ModelVersionDetails
from atlas2d.vocabulary import (
    ALLOY_PROTOTYPES,
    CE_FIT_METHODS,
    CLUSTER_EXPANSION,
    DEFAULT_CE_CUTOFFS_A,
    DEFAULT_CE_FIT_METHOD,
    DFT,
    AlloyPrototype,
    or_list,
)

ARTIFACT_NAME = "expansion.ce"
MIN_TRAIN_STRUCTURES = 3
"""Fewer cannot be cross-validated."""
MAX_FOLDS = 5


@dataclass(frozen=True)
class FitRequest:
    """A cluster-expansion fit.

    Attributes:
        system: ``Mo-W-S`` (any order). training_set: whose train split to fit on.
        name: the model name (a new version of it is registered).
        cutoffs_a: pair, triplet, … cutoffs (Å).
        fit_method: ``lasso``, ``ardr`` or ``least-squares``.
        prototype: ``2H`` or ``1T``; None: the prototype most of the train alloys have.
        seed: of the cross-validation folds.
    """

    system: str
    training_set: str
    name: str
    cutoffs_a: tuple[float, ...] = DEFAULT_CE_CUTOFFS_A
    fit_method: str = DEFAULT_CE_FIT_METHOD
    prototype: str | None = None
    seed: int = 42


def _check(request: FitRequest) -> AlloySystem:
    registry.check_name(request.name)
    if request.fit_method not in CE_FIT_METHODS:
        raise InvalidInput(f"--fit-method {request.fit_method!r} is not {or_list(CE_FIT_METHODS)}.")
    if not request.cutoffs_a or any(c <= 0 for c in request.cutoffs_a):
        raise InvalidInput("--cutoffs: give one or more positive cutoffs in Å (pairs first).")
    if request.prototype is not None and request.prototype not in ALLOY_PROTOTYPES:
        raise InvalidInput(f"--prototype {request.prototype!r} is not {or_list(ALLOY_PROTOTYPES)}.")
    return parse_system(request.system)


def final_structures(session: Session, keys: list[str]) -> dict[str, Atoms]:
    """{key: final structure} (last DFT frame, else last ML frame, else the structure the
    material was generated with, as an enumerated alloy has)."""
    finals = relaxation_queries.final_frames_by_key(session, keys)
    frames = {f.frame_id: f for f in frames_by_id(session, [s.frame_id for s in finals])}
    found = {s.material_key: frame_atoms(frames[s.frame_id]) for s in finals}
    missing = [k for k in keys if k not in found]
    if missing:
        for candidate in pool_queries.candidates_by_keys(session, missing):
            found.setdefault(
                candidate.material_key,
                Atoms(
                    numbers=candidate.species,
                    positions=candidate.positions,
                    cell=candidate.cell,
                    pbc=True,
                ),
            )
    return found


@dataclass(frozen=True)
class TrainingData:
    """What a fit sees: material keys, structures on the lattice, E_F (meV/site)."""

    keys: list[str]
    structures: list[Atoms]
    targets_mev_per_site: np.ndarray
    prototype: AlloyPrototype
    parent_key: str
    lattice: Atoms


def training_data(
    session: Session, system: AlloySystem, training_set_id: int, request: FitRequest
) -> TrainingData:
    """The train split's alloys of the system (and the end members), see the module
    docstring. Raises NotFound / InvalidInput when there is too little."""
    splits = trainset_queries.material_splits(session, training_set_id)
    layers = dft_layers(session, system)
    ends = end_members(system, layers, DFT, how_to_add(DFT))
    energies = {
        int(row["material_id"]): float(row["formation_energy_mev_per_site"])
        for row in formation_rows(system, layers, ends, DFT, None)
    }
    train = [
        s
        for s in layers
        if 0.0 < s.composition.x < 1.0 and splits.get(s.layer.material_id) == "train"
    ]
    kinds = Counter(alloy_lattice.prototype_kind(s.layer.prototype) for s in train)
    kinds.pop(None, None)
    prototype = request.prototype or (
        max(ALLOY_PROTOTYPES, key=lambda k: (kinds.get(k, 0), k == "2H")) if kinds else "2H"
    )
    chosen = [s for s in train if alloy_lattice.prototype_kind(s.layer.prototype) == prototype]
    anchors = [
        s
        for s in layers
        if s.layer.material_id in (ends.a_id, ends.b_id)
        and splits.get(s.layer.material_id) not in ("val", "test")
    ]
    parent_key, lattice = parent_lattice(session, system, prototype)  # type: ignore[arg-type]
    keys = [s.layer.key for s in chosen + anchors]
    structures = final_structures(session, keys)
    targets = {s.layer.key: energies[s.layer.material_id] for s in chosen + anchors}
    if len(chosen) + len(anchors) < MIN_TRAIN_STRUCTURES:
        raise InvalidInput(
            f"Training set {request.training_set!r} has {len(chosen)} {system.label} alloys of "
            f"prototype {prototype} in its train split (with the end members, fewer than "
            f"{MIN_TRAIN_STRUCTURES} structures); make a set that holds them "
            f"(`atlas2d trainset create NAME --chemsys {system.chemsys}`)."
        )
    return TrainingData(
        keys=keys,
        structures=[structures[k] for k in keys],
        targets_mev_per_site=np.array([targets[k] for k in keys]),
        prototype=prototype,  # type: ignore[arg-type]
        parent_key=parent_key,
        lattice=lattice,
    )


def fit_cluster_expansion(
    sessions: sessionmaker[Session], request: FitRequest, artifacts_dir: Path
) -> ModelVersionDetails:
    """Fit on the train split and register the expansion (see the module docstring).

    Raises:
        InvalidInput / NotFound: a bad request or too little data; nothing registered.
        TrainingFailed: the fit failed; the version is registered as ``failed``.
    """
    require_alloys_extra("Fitting a cluster expansion")
    system = _check(request)
    with sessions.begin() as session:
        training_set = trainset_queries.training_set_row(session, request.training_set)
        if training_set is None:
            raise NotFound(
                f"No training set is named {request.training_set!r}; "
                "`atlas2d trainset list` shows them."
            )
        data = training_data(session, system, training_set.id, request)
    hyperparameters: dict[str, Any] = {
        "system": system.label,
        "prototype": data.prototype,
        "cutoffs_a": [float(c) for c in request.cutoffs_a],
        "fit_method": request.fit_method,
        "seed": request.seed,
        "n_splits": min(MAX_FOLDS, len(data.keys)),
        "target": "DFT formation energy per metal site (meV/site), train split only",
        "parent": data.parent_key,
    }
    with sessions.begin() as session:
        model_version_id, version = registry_queries.insert_training_version(
            session,
            name=request.name,
            architecture=CLUSTER_EXPANSION,
            training_set_id=training_set.id,
            parent_id=None,
            hyperparameters=hyperparameters,
            environment=environment("cpu", 1, request.seed),
        )
    label = f"{request.name}:{version}"
    relative_dir = Path("models") / request.name / f"v{version}-{uuid.uuid4().hex[:8]}"
    try:
        space = numerics.cluster_space(data.lattice, system, request.cutoffs_a)
        mapped, kept, targets, unmapped = [], [], [], []
        for key, structure, target in zip(
            data.keys, data.structures, data.targets_mev_per_site, strict=True
        ):
            try:
                mapped.append(numerics.on_lattice(structure, space, system))
            except ValueError:  # relaxed off the lattice (another prototype, too strained)
                unmapped.append(key)
                continue
            kept.append(key)
            targets.append(target)
        if len(kept) < MIN_TRAIN_STRUCTURES:
            raise InvalidInput(
                f"Only {len(kept)} train structures map onto the {data.prototype} lattice "
                f"(unmapped: {', '.join(unmapped)}); at least {MIN_TRAIN_STRUCTURES} are needed."
            )
        with chatter.quiet(title=f"fitting {label}"):  # trainstation's warnings
            fitted = numerics.fit(
                space,
                mapped,
                np.array(targets),
                request.fit_method,
                request.seed,
                min(MAX_FOLDS, len(kept)),
            )
        (artifacts_dir / relative_dir).mkdir(parents=True)
        path = artifacts_dir / relative_dir / ARTIFACT_NAME
        numerics.write(fitted.expansion, path)
        # One read: the bytes hashed are the bytes stored.
        content = path.read_bytes()
        sha256 = hashlib.sha256(content).hexdigest()
        metrics = {
            "cross_validation": fitted.metrics,
            "training_materials": kept,
            "unmapped_materials": unmapped,
        }
        with sessions.begin() as session:
            # The database's copy, in the transaction that makes the version ready (as
            # for force fields): any machine that reaches the database can load it.
            blob_queries.store_blob(session, sha256, content)
            registry_queries.finish_version(
                session,
                model_version_id,
                status="ready",
                artifact_path=str(relative_dir / ARTIFACT_NAME),
                artifact_sha256=sha256,
                metrics=metrics,
                training_curve=[],
                hyperparameters={**hyperparameters, "n_splits": fitted.metrics["n_splits"]},
            )
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        with sessions.begin() as session:
            registry_queries.finish_version(
                session, model_version_id, status="failed", error=reason
            )
        if isinstance(err, Exception):
            raise TrainingFailed(
                f"Fitting {label} failed and is recorded as failed: {reason}"
            ) from err
        raise
    return registry.show_model(sessions, label)


def load_expansion(
    sessions: sessionmaker[Session], model: ModelVersionRef, artifacts_dir: Path
) -> Any:
    """A registered cluster expansion, its file (the local copy, else the database's)
    checked against the registered sha256.

    Raises:
        NotFound: neither a file nor a database copy. ArtifactChanged: it changed since
            the fit.
    """
    require_alloys_extra("A cluster expansion")
    return numerics.read_bytes(registry.read_artifact(sessions, model, artifacts_dir))


def predicted_rows(
    session: Session, system: AlloySystem, model: ModelVersionRef, expansion: Any
) -> list[dict[str, Any]]:
    """``formation_energies`` rows of ``expansion``'s (``model``'s, loaded with
    :func:`load_expansion`) predictions for every alloy of the system on its lattice
    with a structure (E_F meV/site; DFT's end members)."""
    if model.hyperparameters.get("system") != system.label:
        raise InvalidInput(
            f"Cluster expansion {model.label} is of system "
            f"{model.hyperparameters.get('system')}, not {system.label}."
        )
    prototype = model.hyperparameters["prototype"]
    layers = dft_layers(session, system)
    ends = end_members(system, layers, DFT, how_to_add(DFT))
    materials = [
        m
        for m in alloy_queries.system_materials(session, system.chemsys)
        if alloy_lattice.prototype_kind(m.prototype) == prototype
    ]
    structures = final_structures(session, [m.key for m in materials])
    space = expansion.get_cluster_space_copy()
    rows = []
    for material in materials:
        structure = structures.get(material.key)
        if structure is None:
            continue
        found = composition(structure.get_chemical_symbols(), system)
        if found is None or found.x in (0.0, 1.0):
            continue
        try:
            mapped = numerics.on_lattice(structure, space, system)
        except ValueError:
            continue
        e_f = float(numerics.predict(expansion, [mapped])[0])
        rows.append(
            {
                "material_id": material.material_id,
                "energy_source": model.label,
                "model_version_id": model.id,
                "system": system.label,
                "x": found.x,
                "n_metal_sites": found.n_metal_sites,
                "formation_energy_mev_per_site": e_f,
                "formation_energy_mev_per_atom": per_atom(e_f),
                "end_member_a_id": ends.a_id,
                "end_member_b_id": ends.b_id,
                "alloy_energy_ev": None,
            }
        )
    if not rows:
        raise NotFound(
            f"No {system.label} alloy of prototype {prototype} has a structure to predict."
        )
    return rows
