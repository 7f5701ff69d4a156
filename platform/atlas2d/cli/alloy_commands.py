"""``atlas2d alloys …``: formation energies of substitutional MX2 alloys."""

from __future__ import annotations

from pathlib import Path

import typer

from atlas2d.cli.context import writes
from atlas2d.cli.output import OutputFormat, console, error_console, print_frame
from atlas2d.vocabulary import (
    DEFAULT_ALLOY_MAX_SITES,
    DEFAULT_CE_CUTOFFS_A,
    DEFAULT_CE_FIT_METHOD,
    DFT,
    counted,
)

app = typer.Typer(
    help="Substitutional MX2 alloys (e.g. Mo-W-S): formation energies per metal site from "
    "DFT, models and cluster expansions.",
    no_args_is_help=True,
)

SYSTEM_HELP = "Two metals and one chalcogen, in any order: Mo-W-S (= Mo-S-W)."


@app.command("formation")
@writes("alloys formation")
def formation(
    system: str = typer.Option(..., "--system", help=SYSTEM_HELP),
    energy: str = typer.Option(
        DFT,
        "--energy",
        help="dft, a model (NAME or NAME:VERSION) that relaxed the alloys and end members, "
        "or a cluster expansion (atlas2d alloys fit-ce).",
    ),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Compute, store and print formation energies per metal site (A = the alphabetically
    first metal, x = its fraction of the metal sites)."""
    from atlas2d.cli.context import connect
    from atlas2d.config import get_settings
    from atlas2d.services.alloy_formation import compute_formation_energies

    table = compute_formation_energies(
        connect().sessions, system, energy, get_settings().artifacts_dir
    )
    print_frame(table, format, title=f"{counted(len(table), 'layer')} of {system} ({energy})")


@app.command("enumerate")
@writes("alloys enumerate")
def enumerate_(
    system: str = typer.Option(..., "--system", help=SYSTEM_HELP),
    prototype: str = typer.Option(
        ..., "--prototype", help="2H or 1T: the lattice (from its lowest-energy DFT end member)."
    ),
    max_sites: int = typer.Option(
        DEFAULT_ALLOY_MAX_SITES, "--max-sites", help="Metal sites per supercell at most."
    ),
    pool: str | None = typer.Option(
        None, "--pool", help="Pool name (default alloys-SYSTEM-PROTOTYPE-MAXSITES)."
    ),
) -> None:
    """Store the symmetry-distinct alloy configurations (icet) as new materials in a pool;
    label them with `atlas2d label --pool`, relax them with `atlas2d relax --pool`."""
    from atlas2d.cli.context import connect
    from atlas2d.services.alloy_enumeration import enumerate_system

    report = enumerate_system(connect().sessions, system, prototype, max_sites, pool)
    counts = report.counts
    state = "exists already; nothing new" if report.already_done else "stored"
    console.print(
        f"pool {report.pool} ({state}): lattice of {report.parent_key}, "
        f"{counted(counts['generated'], 'configuration')} up to {max_sites} metal sites, "
        f"{counts['duplicate_of_stored']} already stored, {counts['stored']} new materials",
        highlight=False,
    )


@app.command("fit-ce")
@writes("alloys fit-ce")
def fit_ce(
    system: str = typer.Option(..., "--system", help=SYSTEM_HELP),
    trainset: str = typer.Option(
        ..., "--trainset", help="Training set whose TRAIN split is fitted (val/test never)."
    ),
    name: str = typer.Option(..., "--name", help="Model name; a new version is registered."),
    cutoffs: list[float] = typer.Option(
        list(DEFAULT_CE_CUTOFFS_A),
        "--cutoffs",
        help="Cutoffs in Å, pairs first (repeat: --cutoffs 10 --cutoffs 6.5).",
    ),
    fit_method: str = typer.Option(
        DEFAULT_CE_FIT_METHOD, "--fit-method", help="lasso, ardr or least-squares."
    ),
    prototype: str | None = typer.Option(
        None, "--prototype", help="2H or 1T (default: the prototype most train alloys have)."
    ),
    seed: int = typer.Option(42, "--seed", help="Seed of the cross-validation folds."),
) -> None:
    """Fit a cluster expansion (icet) of DFT formation energies per metal site on the train
    split, with k-fold cross-validation, and register it as a model version."""
    from atlas2d.cli.context import connect
    from atlas2d.config import get_settings
    from atlas2d.services.cluster_expansion import FitRequest, fit_cluster_expansion

    request = FitRequest(system, trainset, name, tuple(cutoffs), fit_method, prototype, seed)
    details = fit_cluster_expansion(connect().sessions, request, get_settings().artifacts_dir)
    cv = details.metrics["cross_validation"]
    console.print(
        f"{details.ref} is ready: {details.hyperparameters['prototype']} lattice, "
        f"{cv['n_structures']} train structures, {cv['n_nonzero_parameters']} of "
        f"{cv['n_parameters']} parameters non-zero, CV RMSE "
        f"{cv['cv_rmse_mev_per_site']:.2f} meV/site ({cv['n_splits']}-fold)",
        highlight=False,
    )


@app.command("compare")
@writes("alloys compare")
def compare(
    system: list[str] = typer.Option(..., "--system", help=SYSTEM_HELP + " Repeatable."),
    trainset: str = typer.Option(..., "--trainset", help="Training set whose splits to use."),
    report: Path | None = typer.Option(
        None, "--report", help="Folder for alloys.md and a parity plot per system."
    ),
    energy: list[str] = typer.Option(
        [],
        "--energy",
        help="Compare only these models or cluster expansions (NAME[:VERSION]); "
        "repeatable. Default: every one with stored formation energies.",
    ),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Formation energies of every model and cluster expansion against DFT: MAE and RMSE
    per system and split, ground states; stored as evaluations of kind alloy."""
    from atlas2d.cli.context import connect
    from atlas2d.services.alloy_compare import compare_alloys

    result = compare_alloys(connect().sessions, list(system), trainset, report, energy)
    print_frame(result.errors, format, title=f"Formation energies against DFT ({trainset} splits)")
    if format is OutputFormat.table:
        print_frame(result.ground_states, format, title="Ground states (lower hull of E_F vs x)")
    for label, fitted_on in result.left_out.items():
        error_console.print(
            f"left out {label}: fitted on training set {fitted_on!r}, not {trainset!r}",
            highlight=False,
            soft_wrap=True,
        )
    if result.report is not None:
        console.print(f"report: {result.report}", highlight=False)
