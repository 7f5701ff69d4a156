"""The demo's alloy comparison (``services.demo`` runs it as two stages):

1. each alloy model pair (the universal model and the one fine-tuned on the alloys)
   relaxes every layer of the demo's alloy systems and of their end members that the
   bundled dataset holds (``atlas2d relax --chemsys … --dimensionality 2 --source …``),
   before the convex hulls are built, so that the models' hulls have them too;
2. formation energies from DFT, a cluster expansion per system fitted on the train
   split of the alloy training set, and both models (``atlas2d alloys fit-ce`` and
   ``alloys formation``), then ``atlas2d alloys compare`` on the alloy set's splits,
   with its report in ``REPORT/alloys``.

Each step is logged as the command it stands for, as the rest of the demo is. A cluster
expansion that is ready under its name is reused, as the demo's models are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.alloys import parse_system
from atlas2d.errors import InvalidInput, NotFound
from atlas2d.io.files import content_sha256
from atlas2d.mlff.relax import RelaxSettings
from atlas2d.queries.materials import MaterialFilter
from atlas2d.queries.model_versions import ModelVersionRef
from atlas2d.queries.sources import source_id_by_sha256
from atlas2d.services import models as registry
from atlas2d.services.activities import CommandRun, recording
from atlas2d.services.alloy_compare import AlloyComparison, compare_alloys
from atlas2d.services.alloy_formation import compute_formation_energies
from atlas2d.services.relax import RelaxRequest, relax
from atlas2d.vocabulary import DFT, Engine

Say = Callable[[str], None]


def _as_command(
    sessions: sessionmaker[Session], command: str, **arguments: Any
) -> AbstractContextManager[int]:
    return recording(sessions, CommandRun(command, {**arguments, "via": "demo"}))


def alloy_chemsys(systems: Sequence[str]) -> tuple[str, ...]:
    """The chemical systems of the alloys and of their end members, sorted:
    ``("Mo-S-W",)`` → ``("Mo-S", "Mo-S-W", "S-W")``."""
    found: set[str] = set()
    for text in systems:
        system = parse_system(text)
        found.update((system.chemsys, *system.end_member_chemsys()))
    return tuple(sorted(found))


def _demo_source_ids(
    sessions: sessionmaker[Session], data_files: Sequence[Path]
) -> tuple[str, ...]:
    """The stored sources of the bundled files (matched by content, wherever they were
    ingested from), as ``--source`` takes them."""
    hashes = [content_sha256(path) for path in data_files]
    with sessions.begin() as session:
        ids = [source_id_by_sha256(session, sha256) for sha256 in hashes]
    return tuple(str(i) for i in ids if i is not None)


def relax_alloy_layers(
    sessions: sessionmaker[Session],
    artifacts_dir: Path,
    models: Sequence[str],
    systems: Sequence[str],
    data_files: Sequence[Path],
    settings: RelaxSettings,
    engine: Engine,
    say: Say,
) -> None:
    """Relax the bundled dataset's layers of ``systems`` and of their end members with
    each of ``models`` (the same settings as the test splits, so those are reused)."""
    selection = MaterialFilter(
        chemsys=alloy_chemsys(systems),
        dimensionality=2,
        sources=_demo_source_ids(sessions, data_files),
    )
    for model in models:
        request = RelaxRequest(model, materials=selection, settings=settings, engine=engine)
        with _as_command(
            sessions,
            "relax",
            model=model,
            chemsys=list(selection.chemsys),
            dimensionality=2,
            source=list(selection.sources),
            fmax=settings.fmax,
            steps=settings.max_steps,
            engine=engine,
        ):
            report = relax(sessions, request, artifacts_dir)
        say(
            f"      {model}: {report.relaxed} relaxed ({report.converged} converged), "
            f"{report.already_done} already done, {report.wall_time_s:.1f} s"
        )


def _ensure_expansion(
    sessions: sessionmaker[Session],
    artifacts_dir: Path,
    name: str,
    system: str,
    training_set: str,
    say: Say,
) -> str:
    from atlas2d.services.cluster_expansion import FitRequest, fit_cluster_expansion

    with sessions.begin() as session:
        try:
            found: ModelVersionRef | None = registry.resolve(session, name)
        except NotFound:  # not fitted yet
            found = None
    if found is not None:
        if found.training_set != training_set:
            raise InvalidInput(
                f"Cluster expansion {found.label} was fitted on training set "
                f"{found.training_set!r}, not the demo's {training_set!r}; run the demo on "
                "a fresh database (another ATLAS2D_HOME)."
            )
        say(f"      {found.label} is ready: reused")
        return found.label
    request = FitRequest(system, training_set, name)
    with _as_command(
        sessions,
        "alloys fit-ce",
        system=system,
        trainset=training_set,
        name=name,
        cutoffs=list(request.cutoffs_a),
        fit_method=request.fit_method,
        seed=request.seed,
    ):
        details = fit_cluster_expansion(sessions, request, artifacts_dir)
    cv = details.metrics["cross_validation"]
    say(
        f"      {details.ref}: {cv['n_structures']} train structures, CV RMSE "
        f"{cv['cv_rmse_mev_per_site']:.2f} meV/site"
    )
    return details.ref


def compare_alloy_systems(
    sessions: sessionmaker[Session],
    artifacts_dir: Path,
    report_dir: Path,
    prefix: str,
    models: Sequence[str],
    systems: Sequence[str],
    training_set: str,
    say: Say,
) -> AlloyComparison:
    """Formation energies from DFT, a cluster expansion per system (``PREFIX-ce-SYSTEM``,
    fitted on the train split of ``training_set``) and ``models``, compared on the set's
    splits; the report goes to ``report_dir``."""
    labels = [parse_system(s).label for s in systems]
    sources: list[str] = []
    for label in labels:
        expansion = _ensure_expansion(
            sessions, artifacts_dir, f"{prefix}-ce-{label}", label, training_set, say
        )
        layers = []
        for energy in (DFT, expansion, *models):
            with _as_command(sessions, "alloys formation", system=label, energy=energy):
                table = compute_formation_energies(sessions, label, energy, artifacts_dir)
            layers.append(f"{energy} {len(table)}")
            if energy not in sources:
                sources.append(energy)
        say(f"      {label}: formation energies of layers: {', '.join(layers)}")
    with _as_command(
        sessions,
        "alloys compare",
        system=labels,
        trainset=training_set,
        energy=sources,
        report=report_dir,
    ):
        return compare_alloys(sessions, labels, training_set, report_dir, sources)
