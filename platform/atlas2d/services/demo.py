"""The main job end to end on the bundled dataset: ingest → training sets → train M3GNet
and MACE → fine-tune M3GNet to the alloys → relax the test split with each model →
evaluate against the reference → convex hulls for the reference and each model →
stable list, comparison table → an active-learning campaign screened by the M3GNet
model (generate → relax → hull filter → label → fine-tune) → a report folder.

The reference is the bundled dataset's labeller (CHGNet, standing in for DFT; see
``atlas2d.demo.make_dataset``). Every stage reuses what a previous run stored: files
already ingested, training sets and ready model versions by name, relaxations by their
request key, hull runs by their watermarks; a second run only re-reads and reports.

Each step is logged in the activity log as the command it stands for (``ingest``,
``trainset create``, ``train``, ``relax``, ``evaluate``, ``hull update``, ``al create``,
``al run``) with its main parameters and ``"via": "demo"``, so that the rows it wrote
carry that activity as if the command had been run. A training set or model the demo
reuses was not made again: no activity. The database is never wiped, so the log of an
earlier run, and what its activities made, stays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.reports import comparison_table, markdown_table
from atlas2d.errors import InvalidInput, NotFound
from atlas2d.io.readers import ReadOptions
from atlas2d.mlff.relax import RelaxSettings
from atlas2d.mlff.training import M3GNetSize, MACESize, TrainOptions
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services import models as registry
from atlas2d.services.activities import CommandRun, recording
from atlas2d.services.alloy_compare import AlloyComparison
from atlas2d.services.demo_alloys import compare_alloy_systems, relax_alloy_layers
from atlas2d.services.evaluate import RelaxationEvaluation, evaluate_relaxations
from atlas2d.services.evaluate_stability import StabilityEvaluation, evaluate_stability
from atlas2d.services.ingest import ingest_paths
from atlas2d.services.relax import RelaxRequest, relax
from atlas2d.services.stability import HullUpdate, stable_list, update_hull
from atlas2d.services.training import TrainRequest, train_model
from atlas2d.services.trainsets import create_training_set, show_training_set
from atlas2d.vocabulary import FIRE_FMAX_EV_PER_A, FIRE_MAX_STEPS, LABEL_MAX_STEPS, Engine, counted

DATA_DIR = Path(__file__).resolve().parent.parent / "demo" / "data"
TRAINING_SET = "demo"
ALLOY_SET = "demo-alloys"
ALLOY_SYSTEMS = ("Mo-S-W", "Mo-Nb-S", "S-Ta-Ti")
"""The thesis's transition-metal-disulfide alloys that the bundled data holds."""
CAMPAIGN_PROTOTYPES = ("Mo-S", "S-W", "Mo-Se", "Se-W", "Nb-S", "S-Ti")
"""Chemical systems whose hull layers seed the campaign's substitutions."""
CAMPAIGN_ELEMENTS = ("Mo", "W", "Nb", "Ta", "Ti", "V", "S", "Se", "Te")
"""The only elements the campaign's candidates may contain."""


@dataclass(frozen=True)
class DemoCampaign:
    """The active-learning campaign the demo runs with its M3GNet model."""

    iterations: int
    max_candidates: int
    budget: int
    control: int
    epochs: int
    label_steps: int


@dataclass(frozen=True)
class DemoModel:
    """One model the demo trains: from scratch on the main set, or fine-tuned."""

    name: str
    options: TrainOptions
    training_set: str = TRAINING_SET
    parent: str | None = None


@dataclass(frozen=True)
class DemoPlan:
    """What the demo does; ``quick`` trains shorter and caps relaxation steps."""

    quick: bool
    models: tuple[DemoModel, ...]
    relax_settings: RelaxSettings
    campaign: DemoCampaign
    alloy_systems: tuple[str, ...] = ALLOY_SYSTEMS
    """The systems whose formation energies the demo compares (``alloys compare``)."""
    engine: Engine = "batched"


def demo_plan(quick: bool = False) -> DemoPlan:
    """The demo's models and settings, sized so the whole run fits its budget on two CPU
    cores (full ≈ 8 min, quick ≈ 2 min). Every model trains a fixed number of epochs
    with a seed, so the same machine class gives the same figures whatever else it is
    doing; ``max_time_s`` is only a safety net, far above what the epochs take."""
    prefix = "demo-quick" if quick else "demo"
    m3gnet = TrainOptions(
        architecture="m3gnet",
        batch_size=16,
        epochs=12 if quick else 40,
        seed=0,
        max_time_s=600.0 if quick else 1800.0,
        m3gnet=M3GNetSize(cutoff=5.0, threebody_cutoff=4.0, units=32, nblocks=2, max_n=3, max_l=3),
    )
    # MACE's default loss weights (energy 1, forces 100) leave the energy ~200 meV/atom
    # off after 30 epochs on this data; energy 100 / forces 10 reached 16 meV/atom.
    mace = TrainOptions(
        architecture="mace",
        batch_size=16,
        epochs=5 if quick else 30,
        seed=0,
        energy_weight=100.0,
        force_weight=10.0,
        max_time_s=300.0 if quick else 900.0,
        mace=MACESize(
            r_max=5.0, max_l=0, channels=16, num_interactions=2, correlation=2, max_ell=2
        ),
    )
    fine_tune = replace(m3gnet, lr=2e-4, freeze=1, epochs=20 if quick else 60)
    return DemoPlan(
        quick=quick,
        models=(
            DemoModel(f"{prefix}-m3gnet", m3gnet),
            DemoModel(f"{prefix}-mace", mace),
            DemoModel(f"{prefix}-m3gnet-alloys", fine_tune, ALLOY_SET, f"{prefix}-m3gnet"),
        ),
        relax_settings=RelaxSettings(
            fmax=FIRE_FMAX_EV_PER_A, max_steps=300 if quick else FIRE_MAX_STEPS
        ),
        campaign=(
            DemoCampaign(1, 16, 4, 2, 10, 200)
            if quick
            else DemoCampaign(2, 40, 8, 4, 20, LABEL_MAX_STEPS)
        ),
        alloy_systems=ALLOY_SYSTEMS[:1] if quick else ALLOY_SYSTEMS,
    )


@dataclass
class DemoResult:
    """What the demo produced (all figures read back from stored rows)."""

    comparison: pd.DataFrame
    stable: pd.DataFrame
    report_dir: Path
    evaluations: list[RelaxationEvaluation] = field(default_factory=list)
    stability: list[StabilityEvaluation] = field(default_factory=list)
    hulls: list[HullUpdate] = field(default_factory=list)
    campaign: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The campaign's ``al_iteration_summary`` rows."""
    alloys: AlloyComparison | None = None
    """``alloys compare`` of the alloy systems (the CE's and both models' rows)."""
    stage_seconds: dict[str, float] = field(default_factory=dict)


class _Stages:
    """Numbered progress lines with each stage's wall time."""

    def __init__(self, total: int, say: Callable[[str], None]) -> None:
        self.total, self.say, self.done = total, say, 0
        self.seconds: dict[str, float] = {}

    def run(self, title: str, work: Callable[[], Any]) -> Any:
        self.done += 1
        self.say(f"[{self.done}/{self.total}] {title} …")
        started = time.perf_counter()
        result = work()
        self.seconds[title] = time.perf_counter() - started
        self.say(f"      done in {self.seconds[title]:.1f} s")
        return result


def _as_command(
    sessions: sessionmaker[Session], command: str, **arguments: Any
) -> AbstractContextManager[int]:
    """Log the block as an activity of ``command`` (the path without ``atlas2d``) run by
    the demo with ``arguments``."""
    return recording(sessions, CommandRun(command, {**arguments, "via": "demo"}))


def _data_files(data_dir: Path) -> list[Path]:
    files = sorted(data_dir.glob("*.json.xz"))
    if not files:
        raise NotFound(f"No demo dataset (*.json.xz) in {data_dir}; reinstall atlas2d.")
    return files


def _ensure_training_set(
    sessions: sessionmaker[Session], name: str, params: SelectionParameters
) -> str:
    try:
        summary = show_training_set(sessions, name)
        verb = "reused"
        if summary.parameters != params.to_json():
            raise InvalidInput(
                f"Training set {name!r} exists with other parameters than this demo's; run the "
                "demo with another ATLAS2D_HOME (or database) to start afresh."
            )
    except NotFound:
        with _as_command(sessions, "trainset create", name=name, **params.to_json()):
            summary = create_training_set(sessions, name, params)
        verb = "created"
    counts = ", ".join(
        f"{s} {counted(c['frames'], 'frame')}/{counted(c['materials'], 'material')}"
        for s, c in summary.split_counts.items()
    )
    content_hash = summary.content_hash or ""  # stored sets always have one
    return f"training set {name} {verb}: {counts} (hash {content_hash[:12]})"


def _budget(options: TrainOptions) -> str:
    """How long a demo model trains."""
    return f"{options.epochs} epochs"


def _ready_version(sessions: sessionmaker[Session], name: str) -> str | None:
    with sessions.begin() as session:
        try:
            return registry.resolve(session, name).label
        except NotFound:
            return None


def _ensure_model(
    sessions: sessionmaker[Session],
    model: DemoModel,
    artifacts_dir: Path,
    say: Callable[[str], None],
) -> str:
    existing = _ready_version(sessions, model.name)
    if existing is not None:
        say(f"      {existing} is ready: reused")
        return existing
    with _as_command(
        sessions,
        "train",
        name=model.name,
        arch=model.options.architecture,
        trainset=model.training_set,
        parent=model.parent,
        **model.options.hyperparameters(fine_tuning=model.parent is not None),
    ):
        details = train_model(
            sessions,
            TrainRequest(model.name, model.training_set, model.options, model.parent),
            artifacts_dir,
            progress=lambda line: say(f"      · {line}"),
        )
    test = details.metrics.get("test", {})
    say(
        f"      {details.ref}: test energy MAE {test.get('energy_mae_mev_per_atom', float('nan')):.1f}"
        f" meV/atom, force MAE {test.get('force_mae_mev_per_a', float('nan')):.0f} meV/Å"
    )
    return details.ref


def _describe(update: HullUpdate) -> str:
    if update.hull_run is None:
        return f"{update.energy_source}: no new energies"
    return (
        f"{update.energy_source}: hull run {update.hull_run}, "
        f"{counted(update.chemsys_recomputed, 'chemical system')}, "
        f"{counted(update.materials_written, 'material')}, {update.stable} on or below the hull"
    )


def _write_summary(result: DemoResult, plan: DemoPlan) -> Path:
    from atlas2d.analysis import plots

    out = result.report_dir
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for s in result.stability:
        # The materials of the model's rows in the table above, so that the plot shows
        # what the table's E_hull MAE was computed on.
        evaluated = {
            key
            for e in result.evaluations
            if e.model == s.model
            for key in e.per_material["material_key"]
        }
        data = s.per_material[s.per_material["material_key"].isin(evaluated)]
        if data.empty:
            continue
        name = f"stability_{s.model.replace(':', '_v')}.png"
        errors = (data["ml_e_above_hull"] - data["dft_hull_distance"]).abs()
        plots.parity_plot(
            data["dft_hull_distance"],
            data["ml_e_above_hull"],
            out / name,
            f"{s.model}: e_above_hull (eV/atom)\n{len(data)} materials, as in the table",
            "eV/atom",
            1000 * float(errors.mean()),
            zero_lines=True,
            mae_unit="meV/atom",
        )
        figures.append(f"![{s.model} stability]({name})")
    model_links = "\n".join(
        f"- [{e.model} on {e.training_set}/{e.split}]"
        f"({e.model.replace(':', '_v')}_{e.training_set}/report.md): parity plots, element maps"
        for e in result.evaluations
    )
    hulls = "\n".join(f"- {_describe(h)}" for h in result.hulls)
    campaign = ""
    if not result.campaign.empty:
        from atlas2d.analysis.campaign_plots import campaign_table, plot_campaign

        plot_campaign(result.campaign, out / "campaign.png")
        name = result.campaign.campaign.iloc[0]
        campaign = f"""## Active learning: campaign `{name}`

Screened by {result.campaign.screening_model.iloc[0]}: candidates generated by
substitution from the reference hull, relaxed with the model, kept within 600 meV/atom of
its hull, the lowest {plan.campaign.budget} labelled by the reference plus
{plan.campaign.control} drawn at random (the control), the model fine-tuned on all
reference data, and the next iteration screened by the new model (`atlas2d al report
{name} --out DIR` for every candidate).

{markdown_table(campaign_table(result.campaign))}

![campaign](campaign.png)
"""
    alloys = ""
    if result.alloys is not None:
        alloys = f"""## Alloys: formation energies against the reference

E_F per metal site (per atom = E_F / 3) of the alloys of {", ".join(plan.alloy_systems)}
in the splits of `{ALLOY_SET}`: a cluster expansion per system fitted on its train split
only, the universal model and the one fine-tuned on `{ALLOY_SET}`, both relaxing every
alloy and end member themselves ([report with plots](alloys/alloys.md)).

{markdown_table(result.alloys.errors)}

Ground states (lower convex hull of E_F against x):

{markdown_table(result.alloys.ground_states)}
"""
    stages = "\n".join(f"- {k}: {v:.1f} s" for k, v in result.stage_seconds.items())
    text = f"""# atlas2d demo{" (quick)" if plan.quick else ""}

Reference energies: the bundled dataset's labeller (CHGNet, a stand-in for DFT).
Relaxations: FIRE, fmax {plan.relax_settings.fmax} eV/Å, at most
{plan.relax_settings.max_steps} steps, in-plane cell for layers, engine {plan.engine};
materials: the test split of training set `{TRAINING_SET}`, and for the fine-tuned
model and its parent the test split of `{ALLOY_SET}` (the alloys), which
`{TRAINING_SET}` keeps as test: no model is scored on what it or its parent trained on.

## Models against the reference

{markdown_table(result.comparison)}

E: energy per atom after relaxation; area ×100 as the thesis shows it; E_hull: energy
above the reference hull of the other materials (Matbench Discovery's convention);
F1 and DAF (discovery acceleration factor) classify e_above_hull ≤ 0 as stable.

{model_links}

{" ".join(figures)}

{campaign}
{alloys}
## Stable 2D compounds by the reference ({len(result.stable)})

{markdown_table(result.stable)}

## Convex hulls

{hulls}

## Stages

{stages}
"""
    path = out / "summary.md"
    path.write_text(text, encoding="utf-8")
    return path


def _run_campaign(
    sessions: sessionmaker[Session],
    artifacts_dir: Path,
    plan: DemoPlan,
    screening: str,
    say: Callable[[str], None],
) -> pd.DataFrame:
    """Create (or find) the demo's campaign and run it; its summary rows."""
    from atlas2d.services.campaigns import (
        CampaignRequest,
        TrainSettings,
        campaign_status,
        create_campaign,
        run_campaign,
    )

    campaign = plan.campaign
    name = f"{'demo-quick' if plan.quick else 'demo'}-al"
    request = CampaignRequest(
        name=name,
        model=screening,
        generator="substitute",
        chemsys=CAMPAIGN_PROTOTYPES,
        elements=CAMPAIGN_ELEMENTS,
        partial=True,
        max_candidates=campaign.max_candidates,
        budget=campaign.budget,
        control=campaign.control,
        label_steps=campaign.label_steps,
        relax_fmax_ev_per_a=plan.relax_settings.fmax,
        relax_steps=plan.relax_settings.max_steps,
        engine=plan.engine,
        train=TrainSettings(epochs=campaign.epochs, batch_size=16, seed=0),
    )
    with _as_command(sessions, "al create", **asdict(request)):
        create_campaign(sessions, request, artifacts_dir.parent)
    with _as_command(sessions, "al run", name=name, iterations=campaign.iterations):
        report = run_campaign(
            sessions,
            name,
            campaign.iterations,
            artifacts_dir,
            say=lambda line: say(f"      {line.strip()}"),
        )
    if not report.finished:
        plural = "" if report.completed == 1 else "s"
        say(f"      {name}: {report.completed} iteration{plural} already done")
    return campaign_status(sessions, name).summary


def run_demo(
    sessions: sessionmaker[Session],
    artifacts_dir: Path,
    report_dir: Path,
    quick: bool = False,
    say: Callable[[str], None] = print,
    data_dir: Path = DATA_DIR,
) -> DemoResult:
    """Run the whole demo (see the module docstring); returns what it measured.

    Args:
        data_dir: the dataset's Alexandria files (default: the bundled ones).
    """
    plan = demo_plan(quick)

    def ingest() -> None:
        files = _data_files(data_dir)
        with _as_command(sessions, "ingest", paths=files, format="auto"):
            summary = ingest_paths(sessions, files, ReadOptions())
        say(
            f"      files: {len(summary.with_status('ingested'))} ingested, "
            f"{len(summary.with_status('already present'))} already present | "
            f"relaxations {summary.count('relaxations')}, frames {summary.count('frames')}, "
            f"energy entries {summary.count('entries')}"
        )

    # Each model on the main test split; the fine-tuned one and its parent on the alloys'.
    jobs = [(m.name, TRAINING_SET) for m in plan.models if m.parent is None]
    jobs += [(n, ALLOY_SET) for m in plan.models if m.parent for n in (m.parent, m.name)]
    stages = _Stages(2 + len(plan.models) + len(jobs) + 5, say)
    stages.run("ingest the bundled dataset", ingest)
    alloy_set = SelectionParameters(
        rule="ecut", ecut=0.01, split=(60.0, 20.0, 20.0), seed=42, chemsys=ALLOY_SYSTEMS
    )
    # The main set, which the fine-tuned model's parent trains on, keeps the alloys'
    # splits: split on its own it put every alloy test material in its train split, and
    # `evaluate` refuses to score a model on what it or its parent trained on.
    main_set = replace(alloy_set, split=(90.0, 5.0, 5.0), chemsys=(), keep_splits_from=ALLOY_SET)

    def training_sets() -> None:
        for name, params in ((ALLOY_SET, alloy_set), (TRAINING_SET, main_set)):
            say("      " + _ensure_training_set(sessions, name, params))

    stages.run(
        "training sets (ecut 0.01 eV/atom, alloys 60:20:20; all 90:5:5 keeping the alloys' splits)",
        training_sets,
    )
    refs: dict[str, str] = {}
    for model in plan.models:
        how = f"fine-tune {model.parent} on {model.training_set}" if model.parent else "train"

        def train(model: DemoModel = model) -> str:
            return _ensure_model(sessions, model, artifacts_dir, say)

        title = f"{how}: {model.name} ({model.options.architecture}, {_budget(model.options)})"
        refs[model.name] = stages.run(title, train)
    evaluations = []
    for name, training_set in jobs:
        request = RelaxRequest(
            refs[name], training_set, "test", settings=plan.relax_settings, engine=plan.engine
        )

        def relax_and_evaluate(request: RelaxRequest = request) -> RelaxationEvaluation:
            # The options of `atlas2d relax` and `atlas2d evaluate` this step stands for.
            options = {
                "model": request.model,
                "trainset": request.training_set,
                "split": request.split,
                "fmax": request.settings.fmax,
                "steps": request.settings.max_steps,
            }
            with _as_command(sessions, "relax", **options, engine=request.engine):
                report = relax(sessions, request, artifacts_dir)
            say(
                f"      {report.relaxed} relaxed ({report.converged} converged), "
                f"{report.already_done} already done, {report.wall_time_s:.1f} s"
            )
            folder = report_dir / f"{request.model.replace(':', '_v')}_{request.training_set}"
            with _as_command(sessions, "evaluate", **options, report=folder):
                evaluation = evaluate_relaxations(
                    sessions, request.model, request.training_set, "test", request, folder
                )
            m = evaluation.metrics
            say(
                f"      energy MAE {m['energy_mae_mev_per_atom']:.1f} meV/atom, area MAE "
                f"×100 {m['area_mae_x100']:.2f} Å²/atom, converged {m['convergence_rate']:.0%}"
            )
            return evaluation

        evaluations.append(
            stages.run(
                f"relax and evaluate: {refs[name]} on {training_set}/test", relax_and_evaluate
            )
        )

    # The alloy comparison's models: the universal one and the one fine-tuned on alloys.
    alloy_models = [refs[n] for m in plan.models if m.parent for n in (m.parent, m.name)]
    systems = ", ".join(plan.alloy_systems)
    stages.run(
        f"relax the alloys of {systems} and their end members: {', '.join(alloy_models)}",
        lambda: relax_alloy_layers(
            sessions,
            artifacts_dir,
            alloy_models,
            plan.alloy_systems,
            _data_files(data_dir),
            plan.relax_settings,
            plan.engine,
            say,
        ),
    )
    hulls: list[HullUpdate] = []

    def hull_updates() -> None:
        for energy in ("dft", *refs.values()):
            with _as_command(sessions, "hull update", energy=energy):
                update = update_hull(sessions, energy)
            hulls.append(update)
            say(f"      {_describe(update)}")

    stages.run("convex hulls: reference and each model", hull_updates)

    def stability_evaluations() -> list[StabilityEvaluation]:
        evaluated = []
        for ref in refs.values():
            # The alloy comparison relaxes the models' own training alloys and end
            # members: they are left out of the stability scores.
            with _as_command(
                sessions, "evaluate", model=ref, stability=True, threshold=0.0, exclude_trained=True
            ):
                evaluated.append(evaluate_stability(sessions, ref, exclude_trained=True))
        return evaluated

    stability = stages.run("stability against the reference", stability_evaluations)
    screening = refs[f"{'demo-quick' if plan.quick else 'demo'}-m3gnet"]
    campaign = plan.campaign
    campaign_summary = stages.run(
        f"active learning: {campaign.iterations} iteration"
        f"{'s' if campaign.iterations > 1 else ''} screened by {screening} (generate → "
        "relax → hull filter → label → fine-tune)",
        lambda: _run_campaign(sessions, artifacts_dir, plan, screening, say),
    )
    alloys = stages.run(
        f"alloys: formation energies of {systems} from DFT, a cluster expansion fitted on "
        f"the train split of {ALLOY_SET}, and the two models, compared",
        lambda: compare_alloy_systems(
            sessions,
            artifacts_dir,
            report_dir / "alloys",
            "demo-quick" if plan.quick else "demo",
            alloy_models,
            plan.alloy_systems,
            ALLOY_SET,
            say,
        ),
    )
    stable = stable_list(sessions, "dft", 0.0, dimensionality=2)  # with the campaign's finds
    result = DemoResult(
        comparison_table(evaluations, stability),
        stable,
        report_dir,
        evaluations,
        stability,
        hulls,
        campaign_summary,
        alloys,
    )
    result.stage_seconds = stages.seconds
    _write_summary(result, plan)
    return result
