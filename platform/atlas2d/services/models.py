"""The model registry: refer to versions, list and show them, load one safely.

A model is referred to as ``NAME:VERSION`` or ``NAME`` (its latest ready version).
Loading reads the artifact once, checks its sha256 against the registry and loads
those bytes (``mlff.artifacts``); a machine without the file fetches the database's
copy (``artifact_blobs``) into its ``$ATLAS2D_HOME/artifacts`` first.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import InvalidInput, NotFound
from atlas2d.mlff.forcefield import ForceField
from atlas2d.queries import artifact_blobs as blobs
from atlas2d.queries import model_versions as queries
from atlas2d.queries.model_versions import ModelVersionRef
from atlas2d.queries.provenance import tainted_models
from atlas2d.vocabulary import CLUSTER_EXPANSION

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(name: str) -> None:
    """Raise InvalidInput unless ``name`` is a valid model name."""
    if not NAME_PATTERN.match(name):
        raise InvalidInput(
            f"Model name {name!r} is not valid: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (':' separates the version, as in mos2:3)."
        )


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``NAME:VERSION`` → (NAME, VERSION); ``NAME`` → (NAME, None)."""
    name, sep, version = ref.partition(":")
    check_name(name)
    if not sep:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise InvalidInput(f"Model reference {ref!r}: the version after ':' must be 1, 2, …")
    return name, int(version)


def resolve(session: Session, ref: str, require_ready: bool = True) -> ModelVersionRef:
    """The registered version a reference names.

    Raises:
        NotFound: no such model or version, or (``require_ready``) it is not ready.
    """
    name, version = parse_ref(ref)
    model = queries.find_version(session, name, version)
    if model is None:
        existing = queries.versions_of(session, name)
        if not existing:
            raise NotFound(f"No model is named {name!r}; `atlas2d models list` shows them.")
        states = ", ".join(f"{m.label} ({m.status})" for m in existing[:5])
        raise NotFound(
            f"Model {ref!r} has no {'ready version' if version is None else 'such version'}; "
            f"its versions: {states}."
        )
    if require_ready and model.status != "ready":
        reason = f": {model.error}" if model.error else ""
        raise NotFound(
            f"Model {model.label} is {model.status}{reason}; it cannot be used. "
            "Pick a ready version (`atlas2d models list`)."
        )
    return model


def _no_model_file(model: ModelVersionRef) -> NotFound:
    return NotFound(
        f"Model {model.label} is {model.status} and has no model file; "
        "pick a ready version (`atlas2d models list`)."
    )


ARTIFACT_CHUNK_BYTES = 4 << 20
"""Bytes per slice when a model file is fetched from the database (memory bound)."""


def artifact_file(model: ModelVersionRef, artifacts_dir: Path) -> Path:
    """Where a version's model file lives on this machine: its registered path under
    ``artifacts_dir`` (the artifacts folder is a cache of the database's copies).

    A path registered as absolute is used when that file exists; otherwise its cached
    copy is ``artifacts_dir/blobs/SHA256``.

    Raises:
        NotFound: the version has no model file (it is not ready).
    """
    if model.artifact_path is None or model.artifact_sha256 is None:
        raise _no_model_file(model)
    path = Path(model.artifact_path)
    if not path.is_absolute():
        return artifacts_dir / path
    return path if path.is_file() else artifacts_dir / "blobs" / model.artifact_sha256


def read_artifact(
    sessions: sessionmaker[Session], model: ModelVersionRef, artifacts_dir: Path
) -> bytes:
    """The bytes of a version's model file, checked against the registered sha256: the
    one way a model file is read for loading.

    The file under ``artifacts_dir`` is used when present. Otherwise the database's copy
    (``artifact_blobs``) is fetched in slices of ``ARTIFACT_CHUNK_BYTES``, checked and
    written into the cache in one rename, then read from there. A cached file that
    does not match is refused, never replaced: a changed pickle is for a person to look
    at (the message says to delete it, after which the database's copy is fetched). A
    file that matches while the database has no copy (a version registered before
    ``artifact_blobs``) is stored in the database.

    Raises:
        NotFound: not ready, or neither a file nor a database copy exists.
        ArtifactChanged: the cached file or the database's copy does not match.
    """
    from atlas2d.mlff.artifacts import read_verified

    path = artifact_file(model, artifacts_dir)
    sha256 = str(model.artifact_sha256)
    if not path.is_file():
        _fetch_into_cache(sessions, model, path)
        return read_verified(path, sha256, model.label)
    data = read_verified(path, sha256, model.label)
    with sessions.begin() as session:
        if blobs.blob_size(session, sha256) is None:
            blobs.store_blob(session, sha256, data)
    return data


def _fetch_into_cache(sessions: sessionmaker[Session], model: ModelVersionRef, path: Path) -> None:
    from atlas2d.mlff.artifacts import write_verified

    sha256 = str(model.artifact_sha256)
    with sessions.begin() as session:
        n_bytes = blobs.blob_size(session, sha256)
        if n_bytes is None:
            # An absolute registered path that is missing falls back to the cache path
            # (``artifact_file``); the registered one is the path the user knows.
            registered = Path(str(model.artifact_path))
            where = (
                f"{registered} (nor its cached copy {path})"
                if registered.is_absolute() and registered != path
                else str(path)
            )
            raise NotFound(
                f"Model {model.label} cannot be loaded: its file {where} does not exist on "
                "this machine and the database holds no copy of it. Copy the file there from "
                "the machine that trained it (a load there stores it in the database), or "
                "train the model again."
            )
        slices = (
            blobs.read_blob_slice(session, sha256, offset, ARTIFACT_CHUNK_BYTES)
            for offset in range(0, n_bytes, ARTIFACT_CHUNK_BYTES)
        )
        write_verified(path, slices, sha256, model.label)


def load_version(
    sessions: sessionmaker[Session],
    model: ModelVersionRef,
    artifacts_dir: Path,
    device: str = "cpu",
) -> ForceField:
    """Read the model file (:func:`read_artifact`: sha256 checked, fetched from the
    database when this machine has no copy), then load it.

    Raises:
        NotFound: no file and no database copy. ArtifactChanged: it does not match.
    """
    data = read_artifact(sessions, model, artifacts_dir)
    return force_field_from_bytes(model.architecture, data, device)


def force_field_from_bytes(architecture: str, data: bytes, device: str = "cpu") -> ForceField:
    """A force field from a model file's (already verified) bytes.

    Raises:
        InvalidInput: the version is a cluster expansion, not a force field.
    """
    if architecture == CLUSTER_EXPANSION:
        raise InvalidInput(
            "This model version is a cluster expansion (formation energies of alloys), not a "
            "force field: use it with `atlas2d alloys formation --energy NAME`."
        )
    if architecture == "m3gnet":
        from atlas2d.mlff.m3gnet import M3GNetForceField, load_potential

        return M3GNetForceField(load_potential(data), device=device)
    from atlas2d.mlff.mace import MACEForceField, load_module

    return MACEForceField(load_module(data, device), device=device)


def load_force_field(
    sessions: sessionmaker[Session], ref: str, artifacts_dir: Path, device: str = "cpu"
) -> ForceField:
    """Look a ready version up and load it (sha256 checked). See :func:`load_version`."""
    with sessions.begin() as session:
        model = resolve(session, ref)
    return load_version(sessions, model, artifacts_dir, device)


@dataclass
class ModelVersionDetails:
    """One registered version with its provenance."""

    name: str
    version: int
    architecture: str
    status: str
    error: str | None
    training_set: str
    training_set_hash: str
    parent_chain: list[dict[str, Any]]
    hyperparameters: dict[str, Any]
    artifact_path: str | None
    artifact_sha256: str | None
    metrics: dict[str, Any]
    training_curve: list[dict[str, Any]]
    environment: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    tainted_by: list[dict[str, Any]]
    """Retracted source files in its training set or an ancestor's (``tainted`` when
    not empty): source_id, path, sha256, reason."""

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


def show_model(sessions: sessionmaker[Session], ref: str) -> ModelVersionDetails:
    """A version (any status) with its parent chain. Raises NotFound."""
    with sessions.begin() as session:
        model = resolve(session, ref, require_ready=False)
        chain = queries.parent_chain(session, model.id)
        tainted_by = tainted_models(session).get(model.id, [])
    return ModelVersionDetails(
        name=model.name,
        version=model.version,
        architecture=model.architecture,
        status=model.status,
        error=model.error,
        training_set=model.training_set,
        training_set_hash=model.training_set_hash,
        parent_chain=[
            {"model": p.label, "architecture": p.architecture, "training_set": p.training_set}
            for p in chain[1:]
        ],
        hyperparameters=model.hyperparameters,
        artifact_path=model.artifact_path,
        artifact_sha256=model.artifact_sha256,
        metrics=model.metrics,
        training_curve=model.training_curve,
        environment=model.environment,
        started_at=model.started_at,
        finished_at=model.finished_at,
        tainted_by=[asdict(source) for source in tainted_by],
    )


def list_models(sessions: sessionmaker[Session], name: str | None = None) -> pd.DataFrame:
    """One row per version: reference, architecture, status, ``tainted`` (True when it
    or an ancestor was trained on a retracted source), training set,
    parent, test-split errors, finish time."""
    with sessions.begin() as session:
        models = queries.list_versions(session, name)
        tainted = tainted_models(session)
        parents = {m.id: m.label for m in models}
        missing = {m.parent_id for m in models if m.parent_id and m.parent_id not in parents}
        for parent_id in missing:
            parents[parent_id] = queries.version_by_id(session, parent_id).label

    def test_metric(model: ModelVersionRef, key: str) -> float | None:
        return model.metrics.get("test", {}).get(key)

    def status(model: ModelVersionRef) -> str:
        from atlas2d.provenance import process_gone

        if model.status == "training" and process_gone(model.environment):
            return "training (process gone: killed?)"
        return model.status

    return pd.DataFrame(
        [
            {
                "model": m.label,
                "architecture": m.architecture,
                "status": status(m),
                "tainted": m.id in tainted,
                "training_set": m.training_set,
                "parent": parents.get(m.parent_id) if m.parent_id else None,
                "test_energy_mae_mev_per_atom": test_metric(m, "energy_mae_mev_per_atom"),
                "test_force_mae_mev_per_a": test_metric(m, "force_mae_mev_per_a"),
                "finished_at": None if m.finished_at is None else f"{m.finished_at:%Y-%m-%d %H:%M}",
            }
            for m in models
        ],
        columns=[
            "model",
            "architecture",
            "status",
            "tainted",
            "training_set",
            "parent",
            "test_energy_mae_mev_per_atom",
            "test_force_mae_mev_per_a",
            "finished_at",
        ],
    )


def load_calculator(
    ref: str,
    device: str = "cpu",
    sessions: sessionmaker[Session] | None = None,
    artifacts_dir: Path | None = None,
) -> Any:
    """An ASE calculator (stress in eV/Å³, ASE sign) of a ready version, sha256 checked.

    Args:
        sessions, artifacts_dir: default to the configured database and
            ``$ATLAS2D_HOME/artifacts``.
    """
    from atlas2d.config import get_settings

    if sessions is None:
        from atlas2d.db.session import make_engine, make_sessions, resolve_database_url

        sessions = make_sessions(make_engine(resolve_database_url(get_settings())))
    directory = artifacts_dir or get_settings().artifacts_dir
    return load_force_field(sessions, ref, directory, device).calculator()
