"""``atlas2d audit material``: everything about one material."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from atlas2d.cli.audit_output import ReportFormat, print_section
from atlas2d.cli.output import console, print_json

if TYPE_CHECKING:
    from atlas2d.services.audit_material import MaterialAudit


def material(
    key: str = typer.Argument(..., help="Material key, e.g. an Alexandria mat_id."),
    format: ReportFormat = typer.Option(ReportFormat.table, "--format"),
) -> None:
    """Everything about one material, from its source files to the models trained on it.

    Lists its sources, DFT and ML relaxations, stability per energy source, the training
    sets holding it (and its split in each), and the models trained on it, directly or
    through an ancestor (and its split there).
    """
    from atlas2d.cli.context import connect
    from atlas2d.services.audit_material import audit_material

    audit = audit_material(connect().sessions, key)
    if format is ReportFormat.json:
        print_json(_document(audit))
        return
    _print_audit(audit)


def _print_audit(audit: MaterialAudit) -> None:
    m = audit.material
    console.print(
        f"[bold]{escape(m.key)}[/bold]  {m.formula}  chemsys {m.chemsys}  "
        f"dimensionality {m.dimensionality}  space group {m.spacegroup_number}  "
        f"prototype {escape(m.prototype or '-')}  stored {m.created_at:%Y-%m-%d %H:%M}",
        highlight=False,
    )
    print_section(audit.sources, "sources", "no source file (made by atlas2d itself)")
    print_section(
        audit.dft_relaxations.drop(columns="model"), "DFT relaxations", "no DFT relaxation"
    )
    print_section(
        audit.ml_relaxations.drop(columns="source_id"), "ML relaxations", "no ML relaxation"
    )
    print_section(
        audit.stability, "stability per energy source", "no stability row (no hull run covers it)"
    )
    print_section(
        audit.training_sets,
        "training sets holding it (split: where it is)",
        "no training set holds it",
    )
    print_section(
        audit.models.drop(columns="model_version_id"),
        "model versions trained on it, directly or through an ancestor (split: where it was)",
        "no model version was trained on it",
    )
    if not audit.campaign_decisions.empty:
        print_section(audit.campaign_decisions, "active-learning decisions about it", "")


def _document(audit: MaterialAudit) -> dict[str, Any]:
    """The whole audit as one JSON document."""
    return {
        "material": asdict(audit.material),
        "sources": audit.sources,
        "dft_relaxations": audit.dft_relaxations.drop(columns="model"),
        "ml_relaxations": audit.ml_relaxations.drop(columns="source_id"),
        "stability": audit.stability,
        "training_sets": audit.training_sets,
        "models": audit.models,
        "campaign_decisions": audit.campaign_decisions,
    }
