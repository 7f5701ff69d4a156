"""Active-learning campaigns: create, show, list, run to N iterations, status.

A campaign grows the database the way the thesis describes: generate candidates, relax
them with the current model, drop those more than ``threshold`` above the model's hull,
label the best ``budget`` of the rest (plus a random control group), measure how well
the model chose, retrain on all DFT data, and screen the next iteration with the new
model. Every parameter is stored with the campaign; every iteration stores its stages,
decisions and figures (``al_iterations``, ``al_candidates``, ``al_iteration_summary``).

``run_campaign`` is resumable: each stage is idempotent (``campaign_stages``), the
iteration row records the stage in progress, and a rerun continues there. One run per
campaign at a time (a session-level advisory lock).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import AlreadyExists, CampaignBusy, InvalidInput, NotFound
from atlas2d.queries import al_campaigns as queries
from atlas2d.queries import candidate_pools as pool_queries
from atlas2d.queries import training_sets as trainset_queries
from atlas2d.queries.al_campaigns import CampaignRow, IterationRow
from atlas2d.queries.model_versions import version_by_id
from atlas2d.services import campaign_stages as stages
from atlas2d.services.campaign_stages import StageContext
from atlas2d.services.models import resolve
from atlas2d.vocabulary import (
    AL_SELECTIONS,
    DEFAULT_AL_BUDGET,
    DEFAULT_AL_MAX_CANDIDATES,
    DEFAULT_AL_STABLE_THRESHOLD_EV,
    DEFAULT_AL_THRESHOLD_EV,
    DEFAULT_MIN_DISTANCE_FACTOR,
    DEFAULT_PROTOTYPE_MAX_EHULL_EV,
    DEFAULT_SUBSTITUTION_THRESHOLD,
    ENGINES,
    FIRE_FMAX_EV_PER_A,
    FIRE_MAX_STEPS,
    LABEL_FMAX_EV_PER_A,
    LABEL_MAX_STEPS,
    LABELLERS,
    RETRAIN_MODES,
    RULES,
    AlSelection,
    Engine,
    Labeller,
    Retrain,
    or_list,
)

CAMPAIGN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
"""Campaign names: they prefix pools, training sets and models (``NAME-iterK``)."""


@dataclass(frozen=True)
class TrainSettings:
    """How each iteration retrains (the options of ``atlas2d train``; sizes come from
    the campaign's starting model when training from scratch)."""

    epochs: int = 20
    batch_size: int = 16
    lr: float | None = None
    seed: int = 0
    freeze: int = 0
    energy_weight: float | None = None
    force_weight: float | None = None
    stress_weight: float | None = None
    max_time_s: float | None = None


@dataclass(frozen=True)
class CampaignRequest:
    """A campaign's every parameter (see ``atlas2d al create --help``).

    Energies and thresholds are eV/atom, forces eV/Å.

    Attributes:
        generator: ``substitute`` or ``decorate`` (a new pool from the current DFT
            hull each iteration), ``pool:NAME`` or ``file:PATH`` (the same candidates
            every iteration, less those already labelled).
        chemsys, formulas, materials, elements, max_candidates, substitution_threshold,
            prototype_max_ehull_ev, partial: the generator's options (``atlas2d generate``).
        threshold_ev: keep candidates with ML e_above_hull ≤ this.
        budget: candidates labelled per iteration; control: extra random labels drawn
            from every relaxed candidate (seeded by ``seed`` and the iteration).
        selection: ``lowest-ehull`` or ``uncertainty`` (needs ``committee``).
        committee: a second model that relaxes every candidate too.
        labeller: ``reference`` (CHGNet) or ``vasp`` (input folders under
            ``labels_dir``).
        retrain: ``finetune`` the screening model or train from ``scratch``.
        rule, ecut: the training-set rule (None: the starting model's training set's).
        stable_threshold_ev: a label is a hit when its DFT e_above_hull ≤ this.
        chunk_size: structures relaxed or labelled per transaction (None: the
            engine's default); a killed run loses at most one chunk.
    """

    name: str
    model: str
    generator: str = "substitute"
    chemsys: tuple[str, ...] = ()
    formulas: tuple[str, ...] = ()
    materials: tuple[str, ...] = ()
    elements: tuple[str, ...] = ()
    max_candidates: int = DEFAULT_AL_MAX_CANDIDATES
    substitution_threshold: float = DEFAULT_SUBSTITUTION_THRESHOLD
    prototype_max_ehull_ev: float = DEFAULT_PROTOTYPE_MAX_EHULL_EV
    partial: bool = False
    min_distance_factor: float = DEFAULT_MIN_DISTANCE_FACTOR
    threshold_ev: float = DEFAULT_AL_THRESHOLD_EV
    budget: int = DEFAULT_AL_BUDGET
    control: int = 0
    selection: AlSelection = "lowest-ehull"
    committee: str | None = None
    labeller: Labeller = "reference"
    labels_dir: str | None = None
    label_fmax_ev_per_a: float = LABEL_FMAX_EV_PER_A
    label_steps: int = LABEL_MAX_STEPS
    relax_fmax_ev_per_a: float = FIRE_FMAX_EV_PER_A
    relax_steps: int = FIRE_MAX_STEPS
    engine: Engine = "batched"
    chunk_size: int | None = None
    retrain: Retrain = "finetune"
    train: TrainSettings = field(default_factory=TrainSettings)
    rule: str | None = None
    ecut: float | None = None
    stable_threshold_ev: float = DEFAULT_AL_STABLE_THRESHOLD_EV
    seed: int = 0


def _check(request: CampaignRequest) -> None:
    problems = []
    if not CAMPAIGN_NAME.match(request.name):
        problems.append(
            f"name {request.name!r} must be letters, digits, '.', '_' or '-' (at most 48, "
            "starting with a letter or digit)"
        )
    kind, _, argument = request.generator.partition(":")
    if kind not in ("substitute", "decorate", "pool", "file") or (
        kind in ("pool", "file") and not argument
    ):
        problems.append(
            f"--generator {request.generator!r} is not substitute, decorate, pool:NAME or file:PATH"
        )
    if kind == "decorate" and not (request.materials and request.elements):
        problems.append("--generator decorate needs prototypes (--material) and --elements")
    numbers = {
        "--threshold": request.threshold_ev,
        "--stable-threshold": request.stable_threshold_ev,
        "--max-ehull": request.prototype_max_ehull_ev,
        "--substitution-threshold": request.substitution_threshold,
        "--label-fmax": request.label_fmax_ev_per_a,
        "--relax-fmax": request.relax_fmax_ev_per_a,
    }
    problems += [
        f"{flag} {value} must be a finite number"
        for flag, value in numbers.items()
        if not math.isfinite(value)
    ]
    if request.threshold_ev < 0:
        problems.append(f"--threshold {request.threshold_ev} must be ≥ 0 eV/atom")
    if request.budget < 1:
        problems.append(f"--budget {request.budget} must be at least 1")
    if request.control < 0:
        problems.append(f"--control {request.control} must be ≥ 0")
    if request.max_candidates < 1:
        problems.append(f"--max-candidates {request.max_candidates} must be at least 1")
    if request.selection not in AL_SELECTIONS:
        problems.append(f"--selection {request.selection!r} is not {or_list(AL_SELECTIONS)}")
    if request.selection == "uncertainty" and request.committee is None:
        problems.append("--selection uncertainty ranks by committee disagreement: give --committee")
    if request.labeller not in LABELLERS:
        problems.append(f"--labeller {request.labeller!r} is not {or_list(LABELLERS)}")
    if request.retrain not in RETRAIN_MODES:
        problems.append(f"--retrain {request.retrain!r} is not {or_list(RETRAIN_MODES)}")
    if request.engine not in ENGINES:
        problems.append(f"--engine {request.engine!r} is not {or_list(ENGINES)}")
    if request.rule is not None and request.rule not in RULES:
        problems.append(f"--rule {request.rule!r} is not {or_list(RULES)}")
    if request.label_fmax_ev_per_a <= 0 or request.relax_fmax_ev_per_a <= 0:
        problems.append("--label-fmax and --relax-fmax must be > 0 eV/Å")
    if request.label_steps < 1 or request.relax_steps < 1:
        problems.append("--label-steps and --relax-steps must be at least 1")
    if request.chunk_size is not None and request.chunk_size < 1:
        problems.append(f"--chunk-size {request.chunk_size} must be at least 1")
    if request.train.epochs < 1 or request.train.batch_size < 1:
        problems.append("--epochs and --batch-size must be at least 1")
    if problems:
        raise InvalidInput("Invalid campaign: " + "; ".join(problems) + ". Nothing was written.")


def _parameters(
    session: Session, request: CampaignRequest, home: Path
) -> tuple[int, dict[str, Any]]:
    """The starting model's id and the campaign's parameters as stored: models as
    ``NAME:VERSION``, the training-set selection in full, paths absolute."""
    model = resolve(session, request.model)
    committee = None if request.committee is None else resolve(session, request.committee)
    if committee is not None and committee.id == model.id:
        raise InvalidInput("--committee must be another model than --model. Nothing was written.")
    base_set = trainset_queries.training_set_row(session, model.training_set)
    assert base_set is not None  # a model's training set cannot be deleted
    selection = dict(base_set.parameters)
    if request.rule is not None:
        selection["rule"] = request.rule
    if request.ecut is not None:
        selection["ecut"] = request.ecut
    # Retraining takes all DFT data: the campaign's labels are in no chemsys or source
    # the starting set may have been cut to. The rule, filters and split stay.
    selection |= {"chemsys": [], "sources": [], "keep_splits_from": None}
    # A base set made before retraction existed records no choice: retraining leaves
    # retracted sources out, as `trainset create` does.
    selection.setdefault("include_retracted", False)
    kind, _, argument = request.generator.partition(":")
    if kind == "pool" and pool_queries.pool_row(session, argument) is None:
        raise NotFound(f"No pool is named {argument!r}; `atlas2d generate list`.")
    generator = request.generator
    if kind == "file":
        path = Path(argument).expanduser().resolve()
        if not path.is_file():
            raise InvalidInput(f"--generator file:{argument}: no such file. Nothing was written.")
        generator = f"file:{path}"
    values = asdict(request)
    del values["name"]
    values |= {
        "model": model.label,
        "committee": None if committee is None else committee.label,
        "generator": generator,
        "labels_dir": str(
            Path(request.labels_dir).expanduser().resolve()
            if request.labels_dir
            else home / "campaigns" / request.name
        ),
        "base_training_set": base_set.name,
        "training_set": selection,
        "architecture": model.architecture,
    }
    for name in ("chemsys", "formulas", "materials", "elements"):
        values[name] = sorted(set(values[name]))
    return model.id, values


def create_campaign(
    sessions: sessionmaker[Session], request: CampaignRequest, home: Path
) -> CampaignRow:
    """Validate and store a campaign. The same request again finds the stored campaign;
    the same name with other parameters is refused.

    Args:
        home: ``$ATLAS2D_HOME`` (the default folder of VASP inputs).

    Raises:
        InvalidInput: a bad parameter. NotFound: an unknown model or pool.
        AlreadyExists: the name is taken with other parameters.
    """
    _check(request)
    try:
        with sessions.begin() as session:
            model_id, parameters = _parameters(session, request, home)
            existing = queries.campaign_row(session, request.name)
            if existing is not None:
                if existing.parameters != parameters:
                    changed = sorted(
                        k
                        for k in parameters.keys() | existing.parameters.keys()
                        if parameters.get(k) != existing.parameters.get(k)
                    )
                    raise AlreadyExists(
                        f"Campaign {request.name!r} exists with other parameters "
                        f"({', '.join(changed)}); choose another name, or see it with "
                        f"`atlas2d al show {request.name}`."
                    )
                return existing
            queries.insert_campaign(session, request.name, model_id, parameters)
            row = queries.campaign_row(session, request.name)
    except IntegrityError as err:
        raise AlreadyExists(f"Campaign {request.name!r} was created meanwhile.") from err
    assert row is not None
    return row


def _campaign(session: Session, name: str) -> CampaignRow:
    row = queries.campaign_row(session, name)
    if row is None:
        raise NotFound(f"No campaign is named {name!r}; `atlas2d al list` shows them.")
    return row


@dataclass
class CampaignStatus:
    """A campaign, its iterations, their summary rows and the labels still pending."""

    campaign: CampaignRow
    iterations: list[IterationRow]
    summary: pd.DataFrame
    pending: pd.DataFrame
    """material_key, formula, iteration of every candidate waiting for a label."""


def campaign_status(sessions: sessionmaker[Session], name: str) -> CampaignStatus:
    """Where a campaign stands. Raises NotFound."""
    with sessions.begin() as session:
        campaign = _campaign(session, name)
        rows = queries.iterations(session, campaign.id)
        waiting = queries.pending_labels(session, campaign.id)
        return CampaignStatus(campaign, rows, queries.summary(session, name), waiting)


def list_campaigns(sessions: sessionmaker[Session]) -> pd.DataFrame:
    with sessions.begin() as session:
        return queries.list_campaigns(session)


def iteration_candidates(sessions: sessionmaker[Session], name: str, index: int) -> pd.DataFrame:
    """Every candidate of one iteration with its decision and label. Raises NotFound."""
    with sessions.begin() as session:
        campaign = _campaign(session, name)
        for row in queries.iterations(session, campaign.id):
            if row.index == index:
                return queries.candidates(session, row.id)
    raise NotFound(f"Campaign {name!r} has no iteration {index}; `atlas2d al status {name}`.")


@dataclass
class RunReport:
    """What ``al run`` did: iterations finished now, and whether it waits for labels."""

    campaign: str
    finished: list[int] = field(default_factory=list)
    completed: int = 0
    """Iterations completed in total."""
    waiting: int | None = None
    """The iteration waiting for VASP labels, if any."""
    unfinished: int | None = None
    """An iteration beyond the ``--iterations`` asked for, left where it stopped."""
    pending_labels: int = 0
    labels_dir: str | None = None


def run_campaign(
    sessions: sessionmaker[Session],
    name: str,
    iterations: int,
    artifacts_dir: Path,
    workers: int = 0,
    scheduler: str | None = None,
    accept_partial: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> RunReport:
    """Bring the campaign to ``iterations`` completed iterations in total.

    Resumes an unfinished iteration at its stage. Stops early, returning with
    ``waiting`` set, when an iteration waits for VASP labels (``accept_partial``:
    continue with the labels there are).

    Raises:
        NotFound: no such campaign. CampaignBusy: another run holds it.
        InvalidInput: ``iterations`` < 1. Any stage error, after recording it on the
            iteration (status ``failed``) and the campaign.
    """
    if iterations < 1:
        raise InvalidInput(f"--iterations {iterations} must be at least 1.")
    report = RunReport(name)
    with sessions.begin() as session:
        campaign = _campaign(session, name)
    with queries.campaign_lock(sessions.kw["bind"], name) as taken:
        if not taken:
            raise CampaignBusy(
                f"Another `atlas2d al run {name}` is running; wait for it or stop it first."
            )
        _run(
            sessions,
            campaign,
            iterations,
            artifacts_dir,
            workers,
            scheduler,
            accept_partial,
            say,
            report,
        )
    return report


def _run(
    sessions: sessionmaker[Session],
    campaign: CampaignRow,
    target: int,
    artifacts_dir: Path,
    workers: int,
    scheduler: str | None,
    accept_partial: bool,
    say: Callable[[str], None],
    report: RunReport,
) -> None:
    with sessions.begin() as session:
        rows = queries.iterations(session, campaign.id)
    # The iteration whose labels --accept-partial gives up on: the one at its label
    # stage when this run starts (waiting, or stopped there).
    waiting = next((row for row in rows if row.stage == "label"), None)
    if accept_partial and waiting is None:
        say("no iteration waits for labels: --accept-partial changes nothing")
    context = StageContext(
        sessions,
        campaign,
        artifacts_dir,
        workers,
        scheduler,
        waiting.id if accept_partial and waiting is not None else None,
        say,
    )
    while True:
        with sessions.begin() as session:
            rows = queries.iterations(session, campaign.id)
            completed = sum(row.stage == "done" for row in rows)
            report.completed = completed
            current = next((row for row in rows if row.stage != "done"), None)
            if completed >= target:
                if current is not None:
                    report.unfinished = current.index
                elif _campaign(session, campaign.name).status != "done":
                    queries.set_campaign_status(session, campaign.id, "done")
                return
            if current is None:
                screening = campaign.model_version_id
                if rows:
                    last = rows[-1]
                    screening = last.produced_model_id or last.screening_model_id
                current = queries.insert_iteration(session, campaign.id, len(rows) + 1, screening)
            queries.set_campaign_status(session, campaign.id, "running")
            model = version_by_id(session, current.screening_model_id)
        say(f"iteration {current.index}: screening with {model.label}, stage {current.stage}")
        outcome = stages.run_iteration(context, current)
        if outcome.waiting:
            with sessions.begin() as session:
                queries.set_campaign_status(session, campaign.id, "waiting")
            report.waiting = current.index
            report.pending_labels = outcome.pending_labels
            report.labels_dir = outcome.labels_dir
            return
        report.finished.append(current.index)


def write_campaign_report(sessions: sessionmaker[Session], name: str, out: Path) -> Path:
    """Write a campaign's report folder: ``summary.md`` (parameters and the
    per-iteration table), ``summary.csv`` (the ``al_iteration_summary`` rows),
    ``campaign.png`` (hit rate against the control, prospective MAE, cumulative
    DFT-stable materials, test MAE) and ``candidates_iterK.csv`` per iteration.

    Returns:
        The path of ``summary.md``. Raises NotFound; OSError for an unwritable ``out``.
    """
    import json

    from atlas2d.analysis.campaign_plots import campaign_table, plot_campaign
    from atlas2d.analysis.reports import markdown_table

    status = campaign_status(sessions, name)
    out.mkdir(parents=True, exist_ok=True)
    status.summary.to_csv(out / "summary.csv", index=False)
    plot_campaign(status.summary, out / "campaign.png")
    for row in status.iterations:
        iteration_candidates(sessions, name, row.index).drop(
            columns=["iteration_id", "material_id"]
        ).to_csv(out / f"candidates_iter{row.index}.csv", index=False)
    campaign = status.campaign
    lines = [
        f"# Active-learning campaign {campaign.name}",
        "",
        f"Status **{campaign.status}**, created {campaign.created_at:%Y-%m-%d %H:%M %Z}, "
        f"starting model {campaign.parameters['model']}.",
        "",
        markdown_table(campaign_table(status.summary)) if not status.summary.empty else "",
        "",
        "![campaign](campaign.png)",
        "",
        "Hit rate: labelled selected candidates with DFT e_above_hull ≤ "
        f"{campaign.parameters['stable_threshold_ev'] * 1000:.0f} meV/atom, over those labelled; "
        "the control group is drawn at random from every screened candidate. Prospective "
        "errors: the screening model's ML-relaxed energy and e_above_hull against the new "
        "DFT labels, before retraining.",
        "",
        "## Parameters",
        "",
        "```json",
        json.dumps(campaign.parameters, indent=2, sort_keys=True),
        "```",
        "",
    ]
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path
