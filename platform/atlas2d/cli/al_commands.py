"""``atlas2d al``: active-learning campaigns (create, show, list, run, status, report)."""

from __future__ import annotations

from pathlib import Path

import typer

from atlas2d.cli.context import writes
from atlas2d.cli.output import OutputFormat, console, print_frame, print_json
from atlas2d.vocabulary import (
    DEFAULT_AL_BUDGET,
    DEFAULT_AL_MAX_CANDIDATES,
    DEFAULT_AL_STABLE_THRESHOLD_EV,
    DEFAULT_AL_THRESHOLD_EV,
    DEFAULT_PROTOTYPE_MAX_EHULL_EV,
    DEFAULT_SUBSTITUTION_THRESHOLD,
    FIRE_FMAX_EV_PER_A,
    FIRE_MAX_STEPS,
    LABEL_FMAX_EV_PER_A,
    LABEL_MAX_STEPS,
    AlSelection,
    Engine,
    Labeller,
    Retrain,
    Rule,
    counted,
)

app = typer.Typer(
    no_args_is_help=True,
    help="Active-learning campaigns: generate → ML-relax → hull filter → label → retrain.",
)


def _split(values: list[str]) -> tuple[str, ...]:
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@app.command()
@writes("al create")
def create(
    name: str = typer.Argument(..., help="Campaign name (prefixes its pools, sets and models)."),
    model: str = typer.Option(..., "--model", help="The model that screens iteration 1."),
    generator: str = typer.Option(
        "substitute",
        "--generator",
        help="substitute or decorate (a new pool from the DFT hull each iteration), "
        "pool:NAME or file:PATH (the same candidates, less those labelled).",
    ),
    chemsys: list[str] = typer.Option([], help="substitute: prototypes of these systems."),
    formula: list[str] = typer.Option([], help="substitute: prototypes of these formulas."),
    material: list[str] = typer.Option(
        [], "--material", help="Prototype keys (decorate: required)."
    ),
    elements: list[str] = typer.Option(
        [], "--elements", help="substitute: only these elements; decorate: put these."
    ),
    max_candidates: int = typer.Option(
        DEFAULT_AL_MAX_CANDIDATES, help="Candidates generated per iteration at most."
    ),
    substitution_threshold: float = typer.Option(
        DEFAULT_SUBSTITUTION_THRESHOLD, help="Smallest substitution probability kept."
    ),
    max_ehull: float = typer.Option(
        DEFAULT_PROTOTYPE_MAX_EHULL_EV,
        "--max-ehull",
        help="Prototypes at most this far above the DFT hull (eV/atom).",
    ),
    partial: bool = typer.Option(False, "--partial", help="Also Janus (one-orbit) layers."),
    threshold: float = typer.Option(
        DEFAULT_AL_THRESHOLD_EV, help="Keep candidates with ML e_above_hull ≤ this (eV/atom)."
    ),
    budget: int = typer.Option(DEFAULT_AL_BUDGET, help="Labels per iteration."),
    control: int = typer.Option(
        0, help="Extra labels drawn at random from every relaxed candidate (the baseline)."
    ),
    selection: AlSelection = typer.Option(
        "lowest-ehull", help="Rank passing candidates by lowest-ehull or uncertainty."
    ),
    committee: str | None = typer.Option(
        None, help="A second model; uncertainty ranks by the two models' disagreement."
    ),
    labeller: Labeller = typer.Option(
        "reference", help="reference (CHGNet, in-process) or vasp (input folders)."
    ),
    labels_dir: Path | None = typer.Option(
        None, help="vasp: where the folders go [$ATLAS2D_HOME/campaigns/NAME]."
    ),
    label_fmax: float = typer.Option(LABEL_FMAX_EV_PER_A, help="Reference labeller fmax (eV/Å)."),
    label_steps: int = typer.Option(LABEL_MAX_STEPS, help="Reference labeller steps at most."),
    relax_fmax: float = typer.Option(FIRE_FMAX_EV_PER_A, help="ML relaxation fmax (eV/Å)."),
    relax_steps: int = typer.Option(FIRE_MAX_STEPS, help="ML relaxation steps at most."),
    engine: Engine = typer.Option("batched", help="ML relaxation engine: ase or batched."),
    chunk_size: int | None = typer.Option(
        None, help="Structures relaxed or labelled per transaction (a kill loses one chunk)."
    ),
    retrain: Retrain = typer.Option("finetune", help="finetune the screening model, or scratch."),
    rule: Rule | None = typer.Option(None, help="Training-set rule [the starting model's]."),
    ecut: float | None = typer.Option(None, help="ecut rule, eV/atom [the starting model's]."),
    epochs: int = typer.Option(20, help="Retraining: maximum epochs."),
    batch_size: int = typer.Option(16, help="Retraining: structures per step."),
    lr: float | None = typer.Option(None, help="Retraining: learning rate [framework's]."),
    freeze: int = typer.Option(0, help="finetune: keep the first N layers fixed."),
    max_time: float | None = typer.Option(None, help="Retraining: seconds at most."),
    train_seed: int = typer.Option(0, help="Retraining: seed."),
    stable_threshold: float = typer.Option(
        DEFAULT_AL_STABLE_THRESHOLD_EV, help="A hit: DFT e_above_hull ≤ this (eV/atom)."
    ),
    seed: int = typer.Option(0, help="Seed of the control draw."),
) -> None:
    """Create a campaign; every parameter is validated and stored (`al show NAME`)."""
    from atlas2d.cli.context import connect
    from atlas2d.config import get_settings
    from atlas2d.queries.materials import normalise_chemsys
    from atlas2d.services.campaigns import CampaignRequest, TrainSettings, create_campaign

    request = CampaignRequest(
        name=name,
        model=model,
        generator=generator,
        chemsys=tuple(normalise_chemsys(c) or "" for c in chemsys),
        formulas=tuple(formula),
        materials=tuple(material),
        elements=_split(elements),
        max_candidates=max_candidates,
        substitution_threshold=substitution_threshold,
        prototype_max_ehull_ev=max_ehull,
        partial=partial,
        threshold_ev=threshold,
        budget=budget,
        control=control,
        selection=selection,
        committee=committee,
        labeller=labeller,
        labels_dir=None if labels_dir is None else str(labels_dir),
        label_fmax_ev_per_a=label_fmax,
        label_steps=label_steps,
        relax_fmax_ev_per_a=relax_fmax,
        relax_steps=relax_steps,
        engine=engine,
        chunk_size=chunk_size,
        retrain=retrain,
        train=TrainSettings(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=train_seed,
            freeze=freeze,
            max_time_s=max_time,
        ),
        rule=rule,
        ecut=ecut,
        stable_threshold_ev=stable_threshold,
        seed=seed,
    )
    row = create_campaign(connect().sessions, request, get_settings().home)
    console.print(
        f"campaign {row.name}: {row.status}, screening with {row.parameters['model']}; "
        f"`atlas2d al run {row.name} --iterations N`",
        highlight=False,
    )


@app.command()
def show(
    name: str = typer.Argument(...),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Show a campaign's parameters (defaults included)."""
    from atlas2d.cli.context import connect
    from atlas2d.services.campaigns import campaign_status

    campaign = campaign_status(connect().sessions, name).campaign
    if format is OutputFormat.json:
        print_json({"name": campaign.name, "status": campaign.status, **campaign.parameters})
        return
    import pandas as pd

    rows = [{"parameter": k, "value": v} for k, v in sorted(campaign.parameters.items())]
    print_frame(pd.DataFrame(rows), format, title=f"campaign {campaign.name} ({campaign.status})")


@app.command("list")
def list_command(format: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
    """List campaigns with their status and completed iterations."""
    from atlas2d.cli.context import connect
    from atlas2d.services.campaigns import list_campaigns

    print_frame(list_campaigns(connect().sessions), format, title="active-learning campaigns")


@app.command()
@writes("al run")
def run(
    name: str = typer.Argument(...),
    iterations: int = typer.Option(
        1, "--iterations", help="Completed iterations wanted in total (a rerun resumes)."
    ),
    workers: int = typer.Option(0, help="Dask worker processes for the relaxations."),
    scheduler: str | None = typer.Option(None, help="Address of a running Dask scheduler."),
    accept_partial: bool = typer.Option(
        False, "--accept-partial", help="vasp: go on with the labels ingested so far."
    ),
) -> None:
    """Run the campaign to N completed iterations; resumes where a run stopped."""
    from atlas2d.cli.context import connect
    from atlas2d.config import get_settings
    from atlas2d.services.campaigns import run_campaign

    report = run_campaign(
        connect().sessions,
        name,
        iterations,
        get_settings().artifacts_dir,
        workers=workers,
        scheduler=scheduler,
        accept_partial=accept_partial,
        say=lambda line: console.print(line, highlight=False),
    )
    if report.waiting is not None:
        console.print(
            f"iteration {report.waiting} waits for "
            f"{counted(report.pending_labels, 'VASP label')}: run the "
            f"folders in {report.labels_dir}, `atlas2d ingest {report.labels_dir}`, then "
            f"`atlas2d al run {name}` again (or add --accept-partial)",
            highlight=False,
        )
        return
    finished = ", ".join(map(str, report.finished))
    plural = "s" if len(report.finished) > 1 else ""
    done = f"finished iteration{plural} {finished}; " if report.finished else "nothing to do; "
    console.print(
        f"{name}: {done}{report.completed} completed; `atlas2d al status {name}`",
        highlight=False,
    )
    if report.unfinished is not None:
        console.print(
            f"iteration {report.unfinished} is unfinished; `atlas2d al run {name} --iterations "
            f"{report.unfinished}` finishes it",
            highlight=False,
        )


@app.command()
def status(
    name: str = typer.Argument(...),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Each iteration's stage, counts and figures, and the labels still pending."""
    from atlas2d.analysis.campaign_plots import campaign_table
    from atlas2d.cli.context import connect
    from atlas2d.services.campaigns import campaign_status

    state = campaign_status(connect().sessions, name)
    if format is not OutputFormat.table:
        if format is OutputFormat.json:
            print_json(
                {
                    "campaign": state.campaign.name,
                    "status": state.campaign.status,
                    "iterations": state.summary,
                    "pending_labels": state.pending,
                }
            )
        else:
            print_frame(state.summary, format)
        return
    console.print(
        f"[bold]{state.campaign.name}[/bold]  {state.campaign.status}  "
        f"{sum(r.stage == 'done' for r in state.iterations)} of {len(state.iterations)} "
        "iterations done",
        highlight=False,
    )
    if not state.summary.empty:
        print_frame(campaign_table(state.summary), format, title="iterations")
    for row in state.iterations:
        if row.error:
            console.print(f"iteration {row.index} failed at {row.stage}: {row.error}", markup=False)
    if not state.pending.empty:
        print_frame(state.pending, format, title="waiting for labels")


@app.command()
def report(
    name: str = typer.Argument(...),
    out: Path = typer.Option(..., "--out", help="Folder for summary.md, the plots and CSVs."),
) -> None:
    """Write the per-iteration table, the plots and each iteration's candidates."""
    from atlas2d.cli.context import connect
    from atlas2d.services.campaigns import write_campaign_report

    path = write_campaign_report(connect().sessions, name, out)
    console.print(f"report: {path}", highlight=False)
