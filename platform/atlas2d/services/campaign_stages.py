"""The stages of one active-learning iteration, each idempotent so that a killed run
resumes at its stage without duplicates.

generate → relax → select → label → measure → retrain → done. Energies eV/atom; the
figures stored in ``al_iterations.metrics`` carry their unit in their name.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.config import get_settings
from atlas2d.errors import AlreadyExists, InvalidInput
from atlas2d.mlff.labeller import LabelSettings
from atlas2d.mlff.relax import RelaxSettings
from atlas2d.mlff.training import M3GNetSize, MACESize, TrainOptions
from atlas2d.queries import al_campaigns as queries
from atlas2d.queries import candidate_pools as pool_queries
from atlas2d.queries import frames as frame_queries
from atlas2d.queries import model_versions as model_queries
from atlas2d.queries import relaxations as relaxation_queries
from atlas2d.queries import stability as stability_queries
from atlas2d.queries import training_sets as trainset_queries
from atlas2d.queries.al_campaigns import CampaignRow, IterationRow
from atlas2d.queries.candidate_pools import CandidateStructure
from atlas2d.queries.model_versions import ModelVersionRef
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.generate import (
    GenerateRequest,
    candidate_atoms,
    generate,
    import_pool,
    pool_structures,
)
from atlas2d.services.label import LabelRequest, StartStructure, label
from atlas2d.services.models import resolve
from atlas2d.services.relax import RelaxRequest, relax
from atlas2d.services.stability import update_hull
from atlas2d.services.training import TrainRequest, train_model
from atlas2d.services.trainsets import create_training_set
from atlas2d.vocabulary import AL_STAGES, DEFAULT_LABEL_CHUNK_SIZE, DFT, AlStage, counted

WAIT = "wait"
"""What the label stage returns while VASP labels are pending."""


@dataclass(frozen=True)
class StageContext:
    """What every stage needs: the database, the campaign and how to run."""

    sessions: sessionmaker[Session]
    campaign: CampaignRow
    artifacts_dir: Path
    workers: int = 0
    scheduler: str | None = None
    accept_partial_iteration: int | None = None
    """The id of the iteration that waited for VASP labels when the run started and
    goes on with those it has (``al run --accept-partial``)."""
    say: Callable[[str], None] = lambda line: None

    @property
    def parameters(self) -> dict[str, Any]:
        return self.campaign.parameters


@dataclass
class IterationOutcome:
    """How ``run_iteration`` ended: finished, or waiting for VASP labels."""

    waiting: bool = False
    pending_labels: int = 0
    labels_dir: str | None = None


def run_iteration(context: StageContext, iteration: IterationRow) -> IterationOutcome:
    """Run the iteration from its recorded stage to ``done`` (or to a wait for labels).

    A stage that raises leaves the iteration ``failed`` at that stage with the error;
    a rerun retries the stage.
    """
    stage: AlStage = iteration.stage  # type: ignore[assignment]
    while stage != "done":
        started = time.perf_counter()
        _mark(context, iteration.id, stage, "running", {"started": _now()})
        try:
            result = STAGES[stage](context, _reload(context, iteration.id))
        except BaseException as err:
            reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            with context.sessions.begin() as session:
                queries.update_iteration(session, iteration.id, status="failed", error=reason)
                queries.set_campaign_status(session, context.campaign.id, "failed")
            raise
        if result == WAIT:
            with context.sessions.begin() as session:
                queries.update_iteration(session, iteration.id, status="waiting")
            pending = int(_candidates(context, iteration.id).label_status.eq("pending").sum())
            return IterationOutcome(True, pending, _labels_dir(context, iteration.index))
        following: AlStage = AL_STAGES[AL_STAGES.index(stage) + 1]
        times = {"finished": _now(), "seconds": round(time.perf_counter() - started, 3)}
        _mark(context, iteration.id, stage, "running", times, following)
        stage = following
    return IterationOutcome()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _mark(
    context: StageContext,
    iteration_id: int,
    stage: str,
    status: str,
    times: dict[str, Any],
    next_stage: str | None = None,
) -> None:
    """Record a stage's start (or its end and the next stage) in one transaction."""
    with context.sessions.begin() as session:
        current = queries.iteration_by_id(session, iteration_id)
        merged = {**current.stage_times.get(stage, {}), **times}
        queries.merge_iteration_json(session, iteration_id, "stage_times", {stage: merged})
        queries.update_iteration(
            session, iteration_id, stage=next_stage or stage, status=status, error=None
        )
        if next_stage == "done":  # in the same transaction: never done yet running
            queries.finish_iteration(session, iteration_id)


def _reload(context: StageContext, iteration_id: int) -> IterationRow:
    with context.sessions.begin() as session:
        return queries.iteration_by_id(session, iteration_id)


def _candidates(context: StageContext, iteration_id: int) -> Any:
    with context.sessions.begin() as session:
        return queries.candidates(session, iteration_id)


def _labels_dir(context: StageContext, index: int) -> str:
    return str(Path(context.parameters["labels_dir"]) / f"iter{index}")


def _screening(context: StageContext, iteration: IterationRow) -> ModelVersionRef:
    with context.sessions.begin() as session:
        return model_queries.version_by_id(session, iteration.screening_model_id)


def _pool_name(context: StageContext, iteration: IterationRow) -> str:
    assert iteration.pool_id is not None, "the generate stage sets the pool"
    with context.sessions.begin() as session:
        return pool_queries.pool_name(session, iteration.pool_id)


@dataclass(frozen=True)
class Member:
    """A candidate of the iteration and the pool it starts from."""

    pool: str
    candidate: CandidateStructure


def _members(context: StageContext, iteration: IterationRow) -> list[Member]:
    """The iteration's candidates: its pool and, for a campaign that generates, the
    earlier iterations' candidates that were never labelled (the new model screens
    them again), less every material a label was stored for."""
    with context.sessions.begin() as session:
        labelled = queries.labelled_before(session, context.campaign.id, iteration.index)
        pools = queries.campaign_pools(session, context.campaign.id, iteration.index)
    found: dict[int, Member] = {}
    for pool in pools:  # earlier pools first: a material takes its latest pool
        for candidate in pool_structures(context.sessions, pool):
            if candidate.material_id not in labelled:
                found[candidate.material_id] = Member(pool, candidate)
    return sorted(found.values(), key=lambda m: m.candidate.material_key)


def _by_pool(members: list[Member]) -> dict[str, tuple[str, ...]]:
    """{pool: material keys} in a stable order."""
    grouped: dict[str, list[str]] = {}
    for member in members:
        grouped.setdefault(member.pool, []).append(member.candidate.material_key)
    return {pool: tuple(sorted(keys)) for pool, keys in sorted(grouped.items())}


# --- generate ---------------------------------------------------------------------------


def _generate(context: StageContext, iteration: IterationRow) -> None:
    """A new pool from the current DFT hull, or the campaign's pool or file."""
    p = context.parameters
    name = context.campaign.name
    kind, _, argument = p["generator"].partition(":")
    if kind in ("substitute", "decorate"):
        pool = f"{name}-iter{iteration.index}"
        update_hull(context.sessions, DFT)  # the prototypes: layers on the current hull
        report = generate(
            context.sessions,
            GenerateRequest(
                pool=pool,
                generator=kind,  # type: ignore[arg-type]
                chemsys=tuple(p["chemsys"]),
                formulas=tuple(p["formulas"]),
                materials=tuple(p["materials"]),
                max_ehull_ev=p["prototype_max_ehull_ev"],
                energy=DFT,
                threshold=p["substitution_threshold"],
                max_candidates=p["max_candidates"],
                partial=p["partial"],
                min_distance_factor=p["min_distance_factor"],
                elements=tuple(p["elements"]),
            ),
        )
        context.say(
            f"      pool {pool}: {counted(report.counts['stored'], 'new candidate')} from "
            f"{report.counts['generated']:,} generated"
        )
    elif kind == "pool":
        pool = argument
    else:
        pool = f"{name}-file"
        import_pool(context.sessions, pool, Path(argument))
    with context.sessions.begin() as session:
        pool_row = pool_queries.pool_row(session, pool)
        assert pool_row is not None  # made or found above
        pool_id = pool_row.id
        queries.update_iteration(session, iteration.id, pool_id=pool_id)
    members = _members(context, _reload(context, iteration.id))
    carried = sum(m.pool != pool for m in members)
    with context.sessions.begin() as session:
        queries.merge_iteration_json(
            session, iteration.id, "counts", {"candidates": len(members), "carried_over": carried}
        )
    again = f" ({carried} not labelled before, screened again)" if carried else ""
    context.say(f"      {counted(len(members), 'candidate')} to screen{again}")


# --- relax ------------------------------------------------------------------------------


def _relax(context: StageContext, iteration: IterationRow) -> None:
    """Relax every candidate with the screening model (and the committee's)."""
    p = context.parameters
    members = _members(context, iteration)
    models = [_screening(context, iteration).label]
    if p["committee"]:
        models.append(p["committee"])
    for model in models:
        for pool, keys in _by_pool(members).items():
            request = RelaxRequest(
                model=model,
                pool=pool,
                pool_members=keys,
                settings=RelaxSettings(fmax=p["relax_fmax_ev_per_a"], max_steps=p["relax_steps"]),
                engine=p["engine"],
                chunk_size=p["chunk_size"],
            )
            report = relax(
                context.sessions,
                request,
                context.artifacts_dir,
                context.workers,
                context.scheduler,
            )
            context.say(
                f"      {model}: {report.relaxed} relaxed ({report.converged} converged), "
                f"{report.already_done} already done, {report.wall_time_s:.1f} s"
            )


# --- select -----------------------------------------------------------------------------


def _ml_relaxations(
    session: Session, model_version_id: int, material_ids: list[int]
) -> dict[int, int]:
    """{material id: the model's relaxation its hull uses} (``queries.stability``)."""
    found = stability_queries.ml_energies(session, model_version_id, material_ids)
    return dict(zip(found.material_id.astype(int), found.relaxation_id.astype(int), strict=True))


def _model_hull(context: StageContext, model: str, material_ids: list[int]) -> None:
    """Bring the model's hull up to date when it relaxed any of the candidates."""
    with context.sessions.begin() as session:
        ref = resolve(session, model)
        relaxed = _ml_relaxations(session, ref.id, material_ids)
    if relaxed:
        update_hull(context.sessions, model)


def _select(context: StageContext, iteration: IterationRow) -> None:
    """Filter by ML e_above_hull, draw the control group, rank and take the budget; store
    every candidate's decision and reason in one transaction."""
    with context.sessions.begin() as session:
        if queries.candidate_count(session, iteration.id):
            return  # decided already (a rerun)
    p = context.parameters
    members = [m.candidate for m in _members(context, iteration)]
    if not members:
        return
    ids = [c.material_id for c in members]
    screening = _screening(context, iteration)
    _model_hull(context, screening.label, ids)
    if p["committee"]:
        _model_hull(context, p["committee"], ids)
    with context.sessions.begin() as session:
        relaxed = _ml_relaxations(session, screening.id, ids)
        ehull = stability_queries.stability_values(session, screening.label, ids)
        committee_relaxed: dict[int, int] = {}
        committee_ehull: dict[int, float] = {}
        if p["committee"]:
            committee = resolve(session, p["committee"])
            committee_relaxed = _ml_relaxations(session, committee.id, ids)
            committee_ehull = stability_queries.stability_values(session, committee.label, ids)
        rows = decide(
            members,
            relaxed,
            ehull,
            committee_relaxed,
            committee_ehull,
            threshold=p["threshold_ev"],
            budget=p["budget"],
            control=p["control"],
            selection=p["selection"],
            seed=(p["seed"], iteration.index),
        )
        for row in rows:
            row["iteration_id"] = iteration.id
        queries.insert_candidates(session, rows)
    selected = sum(r["decision"] == "selected" for r in rows)
    control = sum(r["in_control"] for r in rows)
    both = sum(r["in_control"] and r["decision"] == "selected" for r in rows)
    context.say(
        f"      {sum(r['passed'] for r in rows)} of {len(rows)} within "
        f"{p['threshold_ev'] * 1000:.0f} meV/atom of the hull; {selected} selected, "
        f"{control} control" + (f" ({both} of them selected too)" if both else "")
    )


def decide(
    members: list[CandidateStructure],
    relaxed: dict[int, int],
    ehull: dict[int, float],
    committee_relaxed: dict[int, int],
    committee_ehull: dict[int, float],
    threshold: float,
    budget: int,
    control: int,
    selection: str,
    seed: tuple[int, int],
) -> list[dict[str, Any]]:
    """Every candidate's decision and reason (``al_candidates`` rows without the
    iteration id).

    The policy ranks the candidates that pass the filter (lowest ML e_above_hull first,
    or with ``uncertainty`` the largest committee disagreement first) and the budget
    takes the best. The control group is drawn independently, uniformly
    (``numpy.random.default_rng(seed)``) from every candidate with an ML e_above_hull,
    whatever its value: an unbiased sample. A candidate in both is labelled once,
    decided ``selected`` with ``in_control`` set, and counts in both groups.

    Args:
        relaxed, committee_relaxed: {material id: the model's relaxation id}.
        ehull, committee_ehull: {material id: e_above_hull eV/atom}.
        threshold: eV/atom.
    """
    scored = [c.material_id for c in members if c.material_id in ehull]
    drawn = np.random.default_rng(list(seed)).permutation(len(scored))[:control]
    controls = {scored[i] for i in drawn}

    def disagreement(material_id: int) -> float | None:
        if material_id in ehull and material_id in committee_ehull:
            return abs(ehull[material_id] - committee_ehull[material_id])
        return None

    passing = [m for m in scored if ehull[m] <= threshold]
    if selection == "uncertainty":

        def by_disagreement(m: int) -> tuple[bool, float, float]:
            spread = disagreement(m)
            return (spread is None, -(spread or 0.0), ehull[m])

        passing.sort(key=by_disagreement)
        policy = "largest committee disagreement"
    else:
        passing.sort(key=lambda m: ehull[m])
        policy = "lowest ML e_above_hull"
    rank = {m: r for r, m in enumerate(passing, start=1)}
    rows = []
    for c in members:
        m = c.material_id
        row: dict[str, Any] = {
            "material_id": m,
            "ml_relaxation_id": relaxed.get(m),
            "ml_e_above_hull": ehull.get(m),
            "committee_relaxation_id": committee_relaxed.get(m),
            "committee_e_above_hull": committee_ehull.get(m),
            "disagreement": disagreement(m),
            "passed": m in rank,
            "in_control": m in controls,
            "rank": rank.get(m),
            "label_status": None,
        }
        drawn_too = f"; also drawn for the control from the {len(scored)} screened"
        if m not in relaxed:
            decision, reason = "filtered", "no ML relaxation (it diverged or was skipped)"
        elif m not in ehull:
            decision, reason = "filtered", "no ML e_above_hull (no DFT elemental reference)"
        elif m in rank and rank[m] <= budget:
            decision = "selected"
            reason = (
                f"rank {rank[m]} of {len(passing)} passing by {policy}, within the budget {budget}"
            )
            reason += drawn_too if m in controls else ""
        elif m in controls:
            decision = "control"
            reason = f"control: drawn at random from the {len(scored)} screened candidates"
        elif m in rank:
            decision = "not_selected"
            reason = (
                f"rank {rank[m]} of {len(passing)} passing by {policy}, beyond the budget {budget}"
            )
        else:
            decision = "filtered"
            reason = (
                f"ML e_above_hull {ehull[m] * 1000:.0f} meV/atom is above the threshold "
                f"{threshold * 1000:.0f} meV/atom"
            )
        row["decision"], row["reason"] = decision, reason
        if decision in ("selected", "control"):
            row["label_status"] = "pending"
        rows.append(row)
    return rows


# --- label ------------------------------------------------------------------------------


def _starts(
    context: StageContext, iteration: IterationRow, chosen: Any
) -> list[tuple[str, str, Atoms, str]]:
    """(material key, formula, structure, start) of each candidate to label: the
    screening model's relaxed structure (``ml:<relaxation id>``), as the thesis's DFT
    starts from the force field's pre-relaxation, else the generated one."""
    members = {
        m.candidate.material_key: m.candidate
        for m in _members(context, iteration)
        if m.candidate.material_key in set(chosen.material_key)
    }
    relaxation_of = {
        key: int(r)
        for key, r in zip(chosen.material_key, chosen.ml_relaxation_id, strict=True)
        if r == r and r is not None  # not NaN
    }
    with context.sessions.begin() as session:
        relaxed = frame_queries.final_structures(session, list(relaxation_of.values()))
    starts = []
    for key in sorted(members):
        candidate = members[key]
        relaxation = relaxation_of.get(key)
        if relaxation is not None and relaxation in relaxed:
            starts.append((key, candidate.formula, relaxed[relaxation], f"ml:{relaxation}"))
        else:
            starts.append((key, candidate.formula, candidate_atoms(candidate), f"generated:{key}"))
    return starts


def _label(context: StageContext, iteration: IterationRow) -> str | None:
    """Label the selected and control candidates from their ML-relaxed structures; under
    ``vasp``, write their input folders and wait until every label is ingested (or,
    for the iteration that was waiting when the run started, ``accept_partial``)."""
    p = context.parameters
    table = _candidates(context, iteration.id)
    chosen = table[table.label_status == "pending"]
    if chosen.empty:
        return None
    starts = _starts(context, iteration, chosen)
    if p["labeller"] == "reference":
        origin = f"atlas2d al run {context.campaign.name} (iteration {iteration.index})"
        report = label(
            context.sessions,
            LabelRequest(
                structures=tuple(
                    StartStructure(key, atoms, start, origin, f"candidate {key}")
                    for key, _, atoms, start in starts
                ),
                settings=LabelSettings(fmax=p["label_fmax_ev_per_a"], max_steps=p["label_steps"]),
                chunk_size=p["chunk_size"] or DEFAULT_LABEL_CHUNK_SIZE,
            ),
        )
        context.say(
            f"      {report.labelled} labelled ({report.converged} converged), "
            f"{report.already_labelled} already labelled, {report.wall_time_s:.1f} s"
        )
        material_of = dict(zip(chosen.material_key, chosen.material_id, strict=True))
        with context.sessions.begin() as session:
            # The labelled relaxation of each request, stored now or by an earlier run
            # (another campaign that labelled the same structure the same way).
            found = relaxation_queries.relaxations_by_label_key(session, list(report.keys.values()))
            labels = {
                int(material_of[key]): found[request]
                for key, request in report.keys.items()
                if request in found
            }
            queries.set_labels(
                session,
                iteration.id,
                [
                    {"material_id": m, "label_status": "labelled", "dft_relaxation_id": r}
                    for m, r in labels.items()
                ],
            )
        missing = [int(m) for m in chosen.material_id if int(m) not in labels]
        why = "the reference labeller stored no relaxation"
    else:
        _write_vasp_folders(context, iteration, starts)
        # Ingest attaches each label to its candidate (the folder's ticket).
        still = _candidates(context, iteration.id)
        missing = [int(m) for m in still[still.label_status == "pending"].material_id]
        if missing and context.accept_partial_iteration != iteration.id:
            return WAIT
        why = "not labelled when the run went on (--accept-partial)"
    if missing:
        with context.sessions.begin() as session:
            queries.set_labels(
                session,
                iteration.id,
                [{"material_id": m, "label_status": "failed", "label_error": why} for m in missing],
            )
    return None


def _folder_name(material_key: str) -> str:
    """A folder name for a material key: the key when it is a safe name, else its safe
    characters and a short hash (keys from files may hold '/' or '..')."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", material_key).strip(".") or "material"
    if safe == material_key:
        return safe
    return f"{safe[:80]}-{hashlib.sha256(material_key.encode()).hexdigest()[:8]}"


def _write_vasp_folders(
    context: StageContext, iteration: IterationRow, starts: list[tuple[str, str, Atoms, str]]
) -> None:
    """One VASP input folder per candidate waiting for a label, written once: a folder
    with its ticket is left as it is (the user may have tuned its INCAR)."""
    from atlas2d.io.vasp_inputs import LabelTicket, read_label_ticket, write_vasp_inputs
    from atlas2d.mlff.labeller import cell_relaxation

    root = Path(_labels_dir(context, iteration.index))
    written = 0
    for key, formula, atoms, _ in starts:
        folder = root / _folder_name(key)
        ticket = LabelTicket(context.campaign.name, iteration.index, key, formula)
        found = read_label_ticket(folder)
        if found == ticket:
            continue
        if found is not None:
            raise InvalidInput(
                f"{folder}: its label ticket names {found.material_key} of campaign "
                f"{found.campaign} iteration {found.iteration}, not {key} of "
                f"{context.campaign.name} iteration {iteration.index}; give this campaign its "
                "own --labels-dir, or move that folder away."
            )
        write_vasp_inputs(atoms, folder, ticket, layer=cell_relaxation(atoms) == "in-plane")
        written += 1
    if written:
        context.say(
            f"      VASP inputs for {counted(written, 'candidate')} in {root}; run them, then "
            f"`atlas2d ingest {root}` and `atlas2d al run {context.campaign.name}` again"
        )


# --- measure ----------------------------------------------------------------------------


def _measure(context: StageContext, iteration: IterationRow) -> None:
    """Update the DFT hull and store the iteration's figures (``al_iteration_summary``)."""
    p = context.parameters
    update_hull(context.sessions, DFT)
    with context.sessions.begin() as session:
        queries.set_dft_stability(session, iteration.id)
        table = queries.candidates(session, iteration.id)
        labelled = table[table.label_status == "labelled"]
        energies = relaxation_queries.final_energies(
            session,
            [int(i) for i in labelled.ml_relaxation_id.dropna()]
            + [int(i) for i in labelled.dft_relaxation_id.dropna()],
        )
        distances = stability_queries.stability_values(
            session, DFT, [int(m) for m in labelled.material_id], "hull_distance"
        )
        hull_size = len(stability_queries.dft_stable_material_ids(session))
        metrics = iteration_metrics(labelled, energies, distances, p["stable_threshold_ev"])
        metrics["dft_hull_size"] = hull_size
        queries.merge_iteration_json(session, iteration.id, "metrics", metrics)
    context.say(
        "      hit rate "
        + _percent(metrics["hit_rate"])
        + ", control "
        + _percent(metrics["control_hit_rate"])
        + f"; {metrics['new_dft_stable']} new DFT-stable; DFT hull "
        + counted(hull_size, "material")
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def iteration_metrics(
    labelled: Any,
    energies: dict[int, float],
    distances: dict[int, float],
    stable_threshold: float,
) -> dict[str, Any]:
    """Hit rates, enrichment and the screening model's prospective errors.

    Args:
        labelled: the iteration's labelled candidates (``queries.candidates`` rows). A
            label without a DFT e_above_hull (a relaxation that did not converge is not
            placed on the hull) counts as labelled and not a hit.
        energies: {relaxation id: final energy eV/atom} of their ML and DFT relaxations.
        distances: {material id: signed DFT distance to the hull of the others, eV/atom}
            (what a model's e_above_hull estimates).
        stable_threshold: a hit has DFT e_above_hull ≤ this (eV/atom).

    Returns:
        hit_rate, control_hit_rate (fractions or None), enrichment (None when the control
        found no hit), hits, control_hits, new_dft_stable (and their keys),
        prospective_energy_mae_mev_per_atom and prospective_ehull_mae_mev_per_atom
        (meV/atom, None with no labels), n_prospective.
    """
    hit = labelled.dft_e_above_hull.notna() & (
        labelled.dft_e_above_hull.astype(float) <= stable_threshold
    )
    groups = {"selected": labelled.decision == "selected", "control": labelled.in_control}
    hits = {d: int((hit & mask).sum()) for d, mask in groups.items()}
    rates = {d: hits[d] / int(mask.sum()) if mask.any() else None for d, mask in groups.items()}
    selected, control = rates["selected"], rates["control"]
    energy_errors = [
        abs(energies[int(ml)] - energies[int(dft)])
        for ml, dft in zip(labelled.ml_relaxation_id, labelled.dft_relaxation_id, strict=True)
        if ml == ml and dft == dft and int(ml) in energies and int(dft) in energies  # not NaN
    ]
    ehull_errors = [
        abs(ml - distances[int(m)])
        for m, ml in zip(labelled.material_id, labelled.ml_e_above_hull, strict=True)
        if ml == ml and ml is not None and int(m) in distances
    ]
    stable_keys = sorted(labelled.material_key[hit])
    return {
        "hits": hits["selected"],
        "control_hits": hits["control"],
        "hit_rate": selected,
        "control_hit_rate": control,
        "enrichment": selected / control if selected is not None and control else None,
        "prospective_energy_mae_mev_per_atom": (
            float(np.mean(energy_errors)) * 1000 if energy_errors else None
        ),
        "prospective_ehull_mae_mev_per_atom": (
            float(np.mean(ehull_errors)) * 1000 if ehull_errors else None
        ),
        "n_prospective": len(energy_errors),
        "new_dft_stable": len(stable_keys),
        "new_dft_stable_keys": stable_keys,
    }


# --- retrain ----------------------------------------------------------------------------


def _previous_training_set(context: StageContext, iteration: IterationRow) -> str:
    """The set whose splits the new one keeps: the last iteration's, or the starting
    model's."""
    with context.sessions.begin() as session:
        for row in reversed(queries.iterations(session, context.campaign.id)):
            if row.index < iteration.index and row.training_set_id is not None:
                return trainset_queries.training_set_name(session, row.training_set_id)
    return str(context.parameters["base_training_set"])


def train_options(parameters: dict[str, Any], starting: ModelVersionRef) -> TrainOptions:
    """The campaign's training options; from scratch, the starting model's size."""
    settings = parameters["train"]
    sizes: dict[str, Any] = {}
    if parameters["retrain"] == "scratch":
        size_type = M3GNetSize if parameters["architecture"] == "m3gnet" else MACESize
        known = {f.name for f in fields(size_type)}
        hyper = starting.hyperparameters
        sizes[parameters["architecture"]] = size_type(
            **{k: v for k, v in hyper.items() if k in known}
        )
    return TrainOptions(
        architecture=parameters["architecture"],
        lr=settings["lr"],
        batch_size=settings["batch_size"],
        epochs=settings["epochs"],
        seed=settings["seed"],
        energy_weight=settings["energy_weight"],
        force_weight=settings["force_weight"],
        stress_weight=settings["stress_weight"],
        freeze=settings["freeze"] if parameters["retrain"] == "finetune" else 0,
        max_time_s=settings["max_time_s"],
        num_threads=get_settings().num_threads,
        **sizes,
    )


def _retrain(context: StageContext, iteration: IterationRow) -> None:
    """A new training set over all DFT data (earlier materials keep their split), and a
    model ``CAMPAIGN-iterK`` fine-tuned from the screening model or trained anew."""
    p = context.parameters
    table = _candidates(context, iteration.id)
    if not (table.label_status == "labelled").any():
        with context.sessions.begin() as session:
            queries.merge_iteration_json(
                session, iteration.id, "counts", {"retrain": "skipped: nothing was labelled"}
            )
        context.say("      nothing was labelled: the next iteration screens with the same model")
        return
    name = f"{context.campaign.name}-iter{iteration.index}"
    wanted = SelectionParameters.from_json(
        {**p["training_set"], "keep_splits_from": _previous_training_set(context, iteration)}
    )
    with context.sessions.begin() as session:
        stored = trainset_queries.training_set_row(session, name)
    if stored is None:
        summary = create_training_set(context.sessions, name, wanted)
        context.say(f"      training set {name}: {counted(summary.n_frames, 'frame')}")
    elif SelectionParameters.from_json(stored.parameters) != wanted:
        raise AlreadyExists(
            f"A training set {name} exists that campaign {context.campaign.name} did not make "
            "(other parameters); rename it, or create the campaign under another name."
        )
    with context.sessions.begin() as session:
        training_set = trainset_queries.training_set_row(session, name)
        assert training_set is not None
        versions = model_queries.versions_of(session, name)
        foreign = [v.label for v in versions if v.training_set_id != training_set.id]
        if foreign:
            raise AlreadyExists(
                f"Model {name} has versions ({', '.join(foreign)}) trained on another set than "
                f"{name}: campaign {context.campaign.name} did not make them; rename the "
                "campaign."
            )
        ready = [v for v in versions if v.status == "ready"]
        for stale in (v for v in versions if v.status in ("training", "failed")):
            # Only this run trains the campaign's models (it holds the campaign's lock):
            # a version left training (killed) or failed (interrupted or broken; the
            # iteration's error keeps why) is deleted, so that the resumed run registers
            # the same NAME:1 an uninterrupted run would.
            model_queries.delete_unfinished_version(session, stale.id)
        starting = model_queries.version_by_id(session, context.campaign.model_version_id)
    if ready:
        produced = ready[0]  # newest first
    else:
        screening = _screening(context, iteration)
        request = TrainRequest(
            name=name,
            training_set=name,
            options=train_options(p, starting),
            parent=screening.label if p["retrain"] == "finetune" else None,
        )
        details = train_model(context.sessions, request, context.artifacts_dir)
        with context.sessions.begin() as session:
            produced = resolve(session, details.ref)
        test = details.metrics.get("test", {}).get("energy_mae_mev_per_atom")
        context.say(
            f"      {details.ref}: test energy MAE "
            + ("n/a" if test is None else f"{test:.1f} meV/atom")
        )
    with context.sessions.begin() as session:
        queries.update_iteration(
            session, iteration.id, training_set_id=training_set.id, produced_model_id=produced.id
        )


STAGES: dict[str, Callable[[StageContext, IterationRow], Any]] = {
    "generate": _generate,
    "relax": _relax,
    "select": _select,
    "label": _label,
    "measure": _measure,
    "retrain": _retrain,
}
