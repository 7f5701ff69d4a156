"""``atlas2d demo``: the whole platform on the bundled dataset, on this machine."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from atlas2d.cli.output import OutputFormat, console, print_frame


def demo(
    quick: bool = typer.Option(
        False, "--quick", help="Shorter training and relaxations (about 5 minutes)."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Report folder [$ATLAS2D_HOME/demo-report]."
    ),
) -> None:
    """Ingest the bundled 2D dataset, make training sets, train M3GNet and MACE, fine-tune,
    relax the test split, evaluate, build convex hulls, list stable compounds, compare
    alloy formation energies of the models and a cluster expansion. Each step
    is logged as the command it stands for (`atlas2d activity list`)."""
    from atlas2d.cli.context import connect, sigterm_interrupts
    from atlas2d.config import get_settings
    from atlas2d.db.session import redacted_url
    from atlas2d.services.demo import run_demo

    settings = get_settings()
    report_dir = report or settings.home / ("demo-report-quick" if quick else "demo-report")
    started = time.perf_counter()
    database = connect()
    console.print(f"atlas2d demo{' --quick' if quick else ''} on {redacted_url(database.url)}")
    with sigterm_interrupts():  # the step's activity is closed as interrupted
        result = run_demo(
            database.sessions,
            settings.artifacts_dir,
            report_dir,
            quick,
            say=lambda line: console.print(line, highlight=False),
        )
    print_frame(
        result.stable.head(25),
        OutputFormat.table,
        title=f"stable 2D compounds by the reference: {len(result.stable)} "
        f"(first 25; `atlas2d stable --dimensionality 2` lists all)",
    )
    print_frame(
        result.comparison,
        OutputFormat.table,
        title="models against the reference (relaxed test splits; stability vs the reference hull)",
    )
    if not result.campaign.empty:
        from atlas2d.analysis.campaign_plots import campaign_table

        print_frame(
            campaign_table(result.campaign),
            OutputFormat.table,
            title=f"active learning: campaign {result.campaign.campaign.iloc[0]}",
        )
    if result.alloys is not None:
        print_frame(
            result.alloys.errors,
            OutputFormat.table,
            title="alloys: formation energies against the reference (demo-alloys splits)",
        )
        print_frame(
            result.alloys.ground_states,
            OutputFormat.table,
            title="alloys: ground states (lower hull of E_F vs x)",
        )
    console.print(
        f"report: {report_dir / 'summary.md'}\n"
        f"demo finished in {time.perf_counter() - started:.0f} s",
        highlight=False,
    )
