"""``atlas2d trainset …``: create, list, show, verify and export training sets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from atlas2d.cli.context import writes
from atlas2d.cli.output import OutputFormat, console, print_frame, print_json
from atlas2d.vocabulary import (
    DEFAULT_ECUT_EV_PER_ATOM,
    DEFAULT_GROUP_BY,
    DEFAULT_ISOLATED_CUTOFF_A,
    DEFAULT_MAX_ENERGY_PER_ATOM_EV,
    DEFAULT_MAX_FORCE_EV_PER_A,
    DEFAULT_MAX_SITES,
    DEFAULT_MAX_STRESS_KBAR,
    DEFAULT_MIN_ENERGY_PER_ATOM_EV,
    DEFAULT_OUTLIER_SCOPE,
    DEFAULT_RULE,
    DEFAULT_SPLIT_PERCENT,
    DFT,
    OUTLIER_FILTERS,
    SPLITS,
    ExportFormat,
    GroupBy,
    Method,
    OutlierScope,
    Rule,
    counted,
)

if TYPE_CHECKING:
    from atlas2d.services.trainsets import TrainingSetSummary

app = typer.Typer(
    help="Training sets: select frames by a rule, filter outliers, split, export.",
    no_args_is_help=True,
)

DEFAULT_SPLIT = ":".join(f"{percent:g}" for percent in DEFAULT_SPLIT_PERCENT)
"""The default split as ``--split`` takes it: ``90:5:5``."""


def _summary_lines(summary: TrainingSetSummary) -> None:
    from rich.table import Table

    splits = Table("split", "frames", "materials", title=f"training set {summary.name}")
    for split in SPLITS:
        counts = summary.split_counts[split]
        splits.add_row(split, f"{counts['frames']:,}", f"{counts['materials']:,}")
    console.print(splits)
    scope = summary.parameters["outlier_scope"]
    filters = Table("", "frames", "materials", title=f"outlier filters (scope {scope})")
    rows = [
        ("kept by the rule", "rule_kept"),
        *((f"flagged: {f}", f) for f in OUTLIER_FILTERS),
        ("removed", "removed"),
    ]
    for label, key in rows:
        counts = summary.filter_counts[key]
        filters.add_row(label, f"{counts['frames']:,}", f"{counts['materials']:,}")
    console.print(filters)
    _retracted_line(summary.retracted)
    if summary.content_hash is None:
        console.print("dry run: nothing stored")
    else:
        console.print(f"content hash: {summary.content_hash}")


def _retracted_line(retracted: dict[str, Any] | None) -> None:
    """Say what the selection did with relaxations of retracted sources (nothing when it
    met none, or for a set made before retraction existed)."""
    if not retracted or not retracted["relaxations"]:
        return
    sources = "; ".join(
        f"{escape(s['path'])} (sha256 {s['sha256'][:12]}: {escape(s['reason'])})"
        for s in retracted["sources"]
    )
    amount = (
        f"{counted(retracted['relaxations'], 'relaxation')} "
        f"({counted(retracted['frames'], 'frame')}) from "
        f"{counted(len(retracted['sources']), 'retracted source')}"
    )
    if retracted["left_out"]:
        console.print(
            f"[yellow]left out {amount}:[/yellow] {sources}. --include-retracted keeps them.",
            highlight=False,
        )
    else:
        console.print(
            f"[yellow]kept {amount} (--include-retracted):[/yellow] {sources}.", highlight=False
        )


@app.command()
@writes("trainset create")
def create(
    name: str = typer.Argument(..., help="A new, unique name."),
    rule: Rule = typer.Option(DEFAULT_RULE, help="ecut (thesis), wang (steps 0, N/3, N-1) or all."),
    ecut: float = typer.Option(
        DEFAULT_ECUT_EV_PER_ATOM, help="eV/atom: keep step i when |e_i - e_(i+1)| > ecut."
    ),
    include_final: bool = typer.Option(
        False, "--include-final", help="Also keep every relaxation's last step."
    ),
    max_sites: int = typer.Option(DEFAULT_MAX_SITES, help="Drop structures with more sites."),
    min_energy_per_atom: float = typer.Option(
        DEFAULT_MIN_ENERGY_PER_ATOM_EV, help="eV/atom; drop below."
    ),
    max_energy_per_atom: float = typer.Option(
        DEFAULT_MAX_ENERGY_PER_ATOM_EV, help="eV/atom; drop above."
    ),
    max_force: float = typer.Option(
        DEFAULT_MAX_FORCE_EV_PER_A, help="eV/Å; drop a structure with a larger force norm."
    ),
    max_stress_kbar: float = typer.Option(
        DEFAULT_MAX_STRESS_KBAR, help="kBar; drop a structure with a larger |stress component|."
    ),
    isolated_cutoff: float = typer.Option(
        DEFAULT_ISOLATED_CUTOFF_A,
        help="Å; drop structures with an atom without a neighbour this close.",
    ),
    outlier_scope: OutlierScope = typer.Option(
        DEFAULT_OUTLIER_SCOPE,
        help="material: drop a material with any outlier; frame: only the outlier.",
    ),
    split: str = typer.Option(DEFAULT_SPLIT, help="train:val:test percentages."),
    seed: int = typer.Option(0, help="Random seed of the split."),
    group_by: GroupBy = typer.Option(DEFAULT_GROUP_BY, help="Keep each group in one split."),
    dimensionality: int | None = typer.Option(
        None, help="Only materials of this dimensionality (2 = layers)."
    ),
    chemsys: list[str] = typer.Option(
        [], help="Only these chemical systems (repeatable), e.g. Mo-S."
    ),
    source: list[str] = typer.Option(
        [], help="Only relaxations from these sources (path or id; repeatable)."
    ),
    method: Method = typer.Option(DFT, help="Relaxation method that enters."),
    include_retracted: bool = typer.Option(
        False,
        "--include-retracted",
        help="Also take relaxations of retracted sources (`audit source --retract`), "
        "left out by default.",
    ),
    keep_splits_from: str | None = typer.Option(
        None,
        "--keep-splits-from",
        metavar="NAME",
        help="Materials of training set NAME keep their split; new materials are split "
        "with --split and --seed.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show the counts per split and filter; store nothing."
    ),
) -> None:
    """Create an immutable training set from the stored relaxations."""
    from atlas2d.analysis.splits import parse_ratios
    from atlas2d.cli.context import connect
    from atlas2d.errors import InvalidInput
    from atlas2d.queries.materials import normalise_chemsys
    from atlas2d.queries.training_sets import SelectionParameters
    from atlas2d.services.trainsets import create_training_set, preview_training_set

    try:
        ratios = parse_ratios(split)
    except ValueError as err:
        raise InvalidInput(str(err)) from err
    params = SelectionParameters(
        rule=rule,
        ecut=ecut,
        include_final=include_final,
        max_sites=max_sites,
        min_energy_per_atom=min_energy_per_atom,
        max_energy_per_atom=max_energy_per_atom,
        max_force=max_force,
        max_stress_kbar=max_stress_kbar,
        isolated_cutoff=isolated_cutoff,
        outlier_scope=outlier_scope,
        split=ratios,
        seed=seed,
        group_by=group_by,
        method=method,
        dimensionality=dimensionality,
        chemsys=tuple(normalise_chemsys(c) or "" for c in chemsys),
        sources=tuple(source),
        include_retracted=include_retracted,
        keep_splits_from=keep_splits_from,
    )
    make = preview_training_set if dry_run else create_training_set
    _summary_lines(make(connect().sessions, name, params))


@app.command("list")
def list_command(format: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
    """List training sets."""
    from atlas2d.cli.context import connect
    from atlas2d.services.trainsets import list_training_sets

    print_frame(list_training_sets(connect().sessions), format, title="training sets")


@app.command()
def show(
    name: str = typer.Argument(...),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Show a training set: parameters, counts per split and per filter, hash."""
    from dataclasses import asdict

    from atlas2d.cli.context import connect
    from atlas2d.services.trainsets import show_training_set

    summary = show_training_set(connect().sessions, name)
    if format is OutputFormat.json:
        print_json(asdict(summary))
        return
    console.print(
        f"[bold]{summary.name}[/bold]  rule {summary.rule}  created {summary.created_at:%Y-%m-%d %H:%M}"
    )
    console.print(f"parameters: {summary.parameters}")
    console.print(f"relaxation watermark: {summary.relaxation_watermark}")
    _summary_lines(summary)


@app.command()
def verify(name: str = typer.Argument(...)) -> None:
    """Re-run the selection on the data under the stored watermark and check the hash."""
    from atlas2d.cli.context import connect
    from atlas2d.services.trainsets import verify_training_set

    report = verify_training_set(connect().sessions, name)
    for content in report.retracted:
        console.print(
            f"[yellow]{escape(name)} holds {counted(content.relaxations, 'relaxation')} "
            f"({counted(content.frames, 'frame')}: {content.train_frames:,} train, "
            f"{content.val_frames:,} val, {content.test_frames:,} test) of retracted source "
            f"{escape(content.path)}[/yellow] (sha256 {content.sha256[:12]}, retracted "
            f"{content.retracted_at:%Y-%m-%d %H:%M}: {escape(content.reason)})",
            highlight=False,
        )
    if report.reproduced:
        console.print(f"{name}: reproduced, content hash {report.stored_hash}")
        return
    console.print(f"[red]{name}: does NOT reproduce[/red]")
    console.print(f"stored hash     {report.stored_hash}\nrecomputed hash {report.recomputed_hash}")
    labels = {
        "deleted": "selected frames deleted from the database",
        "changed": "selected frames whose content changed",
        "dropped": "frames the selection no longer picks",
        "added": "frames the selection now picks",
        "moved": "frames now in another split",
    }
    for key, label in labels.items():
        difference = report.differences[key]
        if difference["count"]:
            console.print(f"- {difference['count']} {label}: frame ids {difference['first']}")
    raise typer.Exit(code=1)


@app.command()
def export(
    name: str = typer.Argument(...),
    format: ExportFormat = typer.Option(
        ..., "--format", help="mace (extxyz, REF_* keys), matgl (dataset folder) or extxyz."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder to write one file or dataset per split into."
    ),
    processes: int = typer.Option(
        0,
        "--processes",
        help="Processes that write a large MACE export (0: one per CPU, at most 8; 1: this one).",
    ),
) -> None:
    """Export a training set, one file (or dataset folder) per split, streaming from the database."""
    from atlas2d.cli.context import connect, sigterm_interrupts
    from atlas2d.errors import InvalidInput
    from atlas2d.services.trainset_export import export_training_set

    # Refuse before anything is read or created: `mkdir` would fail half-way otherwise.
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == out else f"is inside {existing}, which is a file"
        raise InvalidInput(
            f"--out {out} {where}; give a folder (it is created if missing). Nothing was exported."
        )
    if processes < 0:
        raise InvalidInput(f"--processes {processes}: give 0 (one per CPU) or more.")
    # SIGTERM (a job scheduler's stop) as Ctrl-C: the worker processes, their statements
    # and every partial file go, and the exit code says it was interrupted.
    with sigterm_interrupts():
        written = export_training_set(connect().sessions, name, format, out, processes or None)
    for split, (path, count) in written.items():
        console.print(f"{split}: {counted(count, 'frame')} → {path}")
