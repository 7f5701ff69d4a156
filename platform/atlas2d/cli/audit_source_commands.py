"""``atlas2d audit source``: one file's downstream impact, and its retraction."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from atlas2d.cli.audit_output import (
    ReportFormat,
    listing_json,
    listing_line,
    print_section,
)
from atlas2d.cli.output import console, print_json
from atlas2d.vocabulary import counted

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from atlas2d.queries.audits_source import Listing
    from atlas2d.queries.sources import SourceRow
    from atlas2d.services.audit_source import SourceAudit


def source(
    reference: str = typer.Argument(
        ...,
        metavar="PATH|SHA256",
        help="The path it was ingested under, a file whose content was ingested, or its "
        "sha256 (or first 8+ hex characters).",
    ),
    keys: bool = typer.Option(
        False,
        "--keys",
        help="List every affected material key and relaxation id (default: counts and "
        "the first few).",
    ),
    retract: bool = typer.Option(
        False,
        "--retract",
        help="Mark the source retracted (needs --reason): nothing is deleted; new training "
        "sets leave it out; models trained on it, and their descendants, are tainted.",
    ),
    reason: str | None = typer.Option(
        None, "--reason", metavar="TEXT", help="Why it is retracted (with --retract)."
    ),
    unretract: bool = typer.Option(
        False, "--unretract", help="Undo a retraction: its data enter new training sets again."
    ),
    format: ReportFormat = typer.Option(ReportFormat.table, "--format"),
) -> None:
    """The downstream impact of one ingested file, and its retraction.

    Lists the training sets holding its frames, the models trained on them and their
    descendants, and the ML relaxations, stability rows and campaign decisions those
    models produced. --retract and --unretract are logged as activities; a plain audit
    writes nothing.
    """
    from atlas2d.cli.context import connect
    from atlas2d.services.audit_source import DEFAULT_LISTED, audit_source

    _check_options(retract, reason, unretract)
    sessions = connect().sessions
    change = None
    if retract or unretract:
        change = _change(sessions, reference, reason if retract else None)
        if change is None:
            return
        reference = change["sha256"]  # the source just changed, whatever else matches
    audit = audit_source(sessions, reference, None if keys else DEFAULT_LISTED)
    if format is ReportFormat.json:
        print_json({**_document(audit), **({"change": change} if change else {})})
        return
    if change is not None:
        _print_change(change, audit)
    _print_audit(audit)


def _check_options(retract: bool, reason: str | None, unretract: bool) -> None:
    """Refuse contradictory or incomplete options before anything is read or written."""
    if retract and unretract:
        raise typer.BadParameter(
            "cannot be used with --unretract; give one of them.", param_hint="'--retract'"
        )
    if retract and (reason is None or not reason.strip()):
        raise typer.BadParameter(
            "needs --reason TEXT saying what is wrong with the file.", param_hint="'--retract'"
        )
    if reason is not None and not retract:
        raise typer.BadParameter("goes only with --retract.", param_hint="'--reason'")


def _change(
    sessions: sessionmaker[Session], reference: str, reason: str | None
) -> dict[str, Any] | None:
    """Retract (``reason`` given) or restore the source, logged as one activity.
    Returns what changed, or None when the source already was in that state (said,
    nothing written, no activity)."""
    from atlas2d.services.activities import CommandRun, recording
    from atlas2d.services.audit_source import (
        RETRACT_COMMAND,
        UNRETRACT_COMMAND,
        resolve_source,
        retract_source,
        unretract_source,
    )

    found = resolve_source(sessions, reference)
    if (found.retracted_at is not None) == (reason is not None):
        state = (
            f"was already retracted {_retraction(found)}"
            if reason is not None
            else "is not retracted"
        )
        console.print(
            f"source {escape(found.path)} (sha256 {found.sha256[:12]}) {state}; nothing changed.",
            highlight=False,
        )
        return None
    command = RETRACT_COMMAND if reason is not None else UNRETRACT_COMMAND
    arguments = {"source": reference, "source_id": found.id, "sha256": found.sha256}
    if reason is not None:
        arguments["reason"] = reason
    with recording(sessions, CommandRun(command, arguments)) as activity_id:
        if reason is not None:
            outcome = retract_source(sessions, found.id, reason)
        else:
            outcome = unretract_source(sessions, found.id)
    return {
        "action": "retract" if reason is not None else "unretract",
        "changed": outcome.changed,
        "activity_id": activity_id,
        "sha256": found.sha256,
    }


def _retraction(source: SourceRow) -> str:
    """``on 2026-12-01 10:00 UTC: REASON`` (escaped)."""
    assert source.retracted_at is not None
    reason = escape(source.retraction_reason or "")
    return f"on {source.retracted_at:%Y-%m-%d %H:%M %Z}: {reason}"


def _print_change(change: dict[str, Any], audit: SourceAudit) -> None:
    source = audit.source
    if change["action"] == "retract":
        console.print(
            f"[red]retracted[/red] {escape(source.path)} (sha256 {source.sha256[:12]}); "
            f"activity {change['activity_id']}. Now tainted: "
            f"{counted(len(audit.models), 'model version')} trained on "
            f"{counted(len(audit.training_sets), 'training set')} holding its frames; new "
            "training sets leave it out.",
            highlight=False,
        )
    else:
        console.print(
            f"[green]restored[/green] {escape(source.path)} (sha256 {source.sha256[:12]}); "
            f"activity {change['activity_id']}. New training sets take it again.",
            highlight=False,
        )


def _print_audit(audit: SourceAudit) -> None:
    s = audit.source
    console.print(
        f"[bold]source {s.id}[/bold]  {escape(s.path)}  format {s.format}  parser {s.parser}",
        highlight=False,
    )
    console.print(f"sha256 {s.sha256}", highlight=False)
    activity = f" (activity {s.activity_id})" if s.activity_id is not None else ""
    console.print(
        f"ingested {s.created_at:%Y-%m-%d %H:%M}{activity}: "
        f"{counted(s.n_materials, 'material')}, {counted(s.n_relaxations, 'relaxation')}, "
        f"{counted(s.n_frames, 'frame')}, {counted(s.n_entries, 'energy entry', 'energy entries')}",
        highlight=False,
    )
    if s.retracted_at is not None:
        console.print(f"[red]RETRACTED[/red] {_retraction(s)}", highlight=False)
    _print_keys("materials", audit.materials)
    print_section(
        audit.training_sets.drop(columns="training_set_id"),
        f"training sets holding its frames ({len(audit.training_sets)}; frames of this source)",
        "no training set holds its frames",
    )
    tainted = " — all tainted: the source is retracted" if s.retracted_at is not None else ""
    print_section(
        audit.models.drop(columns="model_version_id"),
        f"model versions trained on them, directly or through an ancestor "
        f"({len(audit.models)}){tainted}",
        "no model version was trained on those sets",
    )
    print_section(
        audit.ml_relaxations,
        "ML relaxations by those models",
        "those models ran no ML relaxation",
    )
    if audit.ml_relaxation_ids.count:
        _print_keys("ML relaxation ids", audit.ml_relaxation_ids)
        _print_keys("relaxed materials", audit.ml_relaxed_materials)
    print_section(
        audit.stability,
        "stability rows from those models' energies (per energy source)",
        "no stability row comes from those models",
    )
    if audit.stability_materials.count:
        _print_keys("their materials", audit.stability_materials)
    print_section(
        audit.campaign_decisions,
        "active-learning decisions those models took part in (screening or committee)",
        "those models took part in no active-learning decision",
    )
    if audit.campaign_candidates.count:
        _print_keys("candidates", audit.campaign_candidates)
    if not audit.retractions.empty:
        print_section(audit.retractions, "retraction history", "")


def _print_keys(label: str, listing: Listing) -> None:
    """One line: the count and the first keys or ids (``--keys`` lists them all)."""
    console.print(listing_line(label, listing, "--keys"), highlight=False)


def _document(audit: SourceAudit) -> dict[str, Any]:
    """The whole audit as one JSON document (sha256 and times in full)."""
    return {
        "source": asdict(audit.source),
        "retracted": audit.retracted,
        "materials": listing_json(audit.materials),
        "training_sets": audit.training_sets,
        "models": audit.models.assign(tainted=audit.retracted),
        "ml_relaxations": {
            "per_model": audit.ml_relaxations,
            "ids": listing_json(audit.ml_relaxation_ids),
            "materials": listing_json(audit.ml_relaxed_materials),
        },
        "stability": {
            "per_energy_source": audit.stability,
            "materials": listing_json(audit.stability_materials),
        },
        "campaign_decisions": {
            "counts": audit.campaign_decisions,
            "candidates": listing_json(audit.campaign_candidates),
        },
        "retractions": audit.retractions,
    }
