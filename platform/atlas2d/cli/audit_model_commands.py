"""``atlas2d audit model``: a model version's lineage and integrity, with a verdict."""

from __future__ import annotations

import sys
from dataclasses import asdict
from enum import Enum
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from atlas2d.cli.output import console, print_json
from atlas2d.vocabulary import DEFAULT_DEVICE, Device

if TYPE_CHECKING:
    from atlas2d.queries.activities import ActivityRecord
    from atlas2d.queries.audits import SourceContribution
    from atlas2d.services.audit_model import ModelAudit, ReproduceCheck, VersionAudit


class AuditFormat(str, Enum):
    table = "table"
    json = "json"
    prov_json = "prov-json"


PASS, FAIL = "[green]✓[/green]", "[red]✗[/red]"

ENVIRONMENT_PACKAGES = ("atlas2d", "torch", "matgl", "mace-torch")
"""The packages the table names (JSON has every one the run recorded)."""


def model(
    ref: str = typer.Argument(..., metavar="REF", help="NAME (latest ready) or NAME:VERSION."),
    format: AuditFormat = typer.Option(
        AuditFormat.table,
        "--format",
        help="table or json: the audit and its verdict; prov-json: the lineage as a W3C "
        "PROV-JSON document (entities, activities, agents and their relations; no checks run).",
    ),
    reproduce: int = typer.Option(
        0,
        "--reproduce",
        metavar="N",
        help="Predict N frames that have stored predictions again with the model file and "
        "compare (catches a swapped model file or non-determinism).",
    ),
    seed: int = typer.Option(0, help="Seed of the choice of the --reproduce frames."),
    device: Device = typer.Option(DEFAULT_DEVICE, help="Where --reproduce runs the model."),
    keys: bool = typer.Option(
        False, "--keys", help="Name what was made with the model, not only count it."
    ),
) -> None:
    """Audit a model version: its parent chain to the root (each training set verified
    afresh, its source files, the model file re-hashed, environment, activity), its
    metrics recomputed from the stored predictions, optionally predictions reproduced, and
    what was made with it. Prints the verdict; exit code 1 when it fails. With
    ``--format prov-json``, writes the lineage as a W3C PROV document instead."""
    from atlas2d.cli.context import connect
    from atlas2d.config import get_settings
    from atlas2d.services.audit_model import audit_model

    if format is AuditFormat.prov_json:
        from atlas2d.services.prov_export import lineage_json

        sys.stdout.write(lineage_json(connect().sessions, ref) + "\n")
        return
    audit = audit_model(
        connect().sessions,
        ref,
        get_settings().artifacts_dir,
        reproduce=reproduce,
        seed=seed,
        device=device,
        keys=keys,
    )
    if format is AuditFormat.json:
        print_json(audit_json(audit))
    else:
        print_audit(audit)
    if audit.reasons:
        raise typer.Exit(code=1)


def audit_json(audit: ModelAudit) -> dict[str, Any]:
    """The audit as JSON values: every field, the verdict and the derived checks."""
    document = {"verdict": audit.verdict, "tainted": audit.tainted, **asdict(audit)}
    for version, entry in zip(audit.lineage, document["lineage"], strict=True):
        entry["artifact"]["ok"] = version.artifact.ok
    if audit.reproduce is not None:
        document["reproduce"].update(
            ok=audit.reproduce.ok,
            largest_energy_mev_per_atom=audit.reproduce.largest_energy_mev_per_atom,
            largest_force_mev_per_a=audit.reproduce.largest_force_mev_per_a,
            out_of_tolerance_frame_ids=[d.frame_id for d in audit.reproduce.out_of_tolerance],
        )
    return document


def _print(line: str) -> None:
    console.print(line, highlight=False)


def _mark(ok: bool) -> str:
    return PASS if ok else FAIL


def _activity_line(activity_id: int | None, activity: ActivityRecord | None) -> str:
    if activity_id is None:
        return "not recorded (made before the activity log, or outside the atlas2d CLI)"
    if activity is None:
        return f"#{activity_id} (deleted)"
    finished = f" → {activity.finished_at:%Y-%m-%d %H:%M:%S}" if activity.finished_at else ""
    return escape(
        f"#{activity.id} {activity.command} by {activity.os_user}@{activity.host}, "
        f"{activity.started_at:%Y-%m-%d %H:%M:%S %Z}{finished}, {activity.status}"
        + (f": {activity.error}" if activity.error else "")
    )


def _environment_line(environment: dict[str, Any]) -> str:
    git = environment.get("git") or {}
    commit = f"{git['commit'][:12]}{' (dirty)' if git.get('dirty') else ''}" if git else "none"
    packages = environment.get("packages") or {}
    named = ", ".join(
        f"{name} {packages.get(name) or '—'}" for name in ENVIRONMENT_PACKAGES if name in packages
    )
    return escape(
        f"git {commit}, device {environment.get('device')}, seed {environment.get('seed')}, "
        f"python {environment.get('python')}, {named}"
    )


def _source_line(source: SourceContribution) -> str:
    if source.source_id is None:
        return f"{source.frames:,} frames from relaxations without a source row (deleted?)"
    versions = ", ".join(f"{k} {v}" for k, v in (source.versions or {}).items())
    retracted = (
        f" [red]RETRACTED {source.retracted_at:%Y-%m-%d}: {escape(source.retraction_reason or '')}[/red]"
        if source.retracted_at
        else ""
    )
    return (
        f"{escape(source.path or '')}  sha256 {(source.sha256 or '')[:16]}…  "
        f"{escape(f'{source.parser} ({versions})')}  {source.frames:,} frames{retracted}"
    )


def _print_version(version: VersionAudit, verified_above: bool) -> None:
    parent = f"  ← fine-tuned from {version.parent}" if version.parent else "  (root)"
    _print(
        f"[bold]{version.model}[/bold]  {version.architecture}  {version.status}{escape(parent)}"
    )
    _print(f"    activity       {_activity_line(version.activity_id, version.activity)}")
    _print(f"    environment    {_environment_line(version.environment)}")
    check = version.training_set
    if verified_above:
        _print(f"  {_mark(check.reproduced)} training set {check.name}: as above")
    else:
        frames = sum(source.frames for source in check.sources)
        verdict = "reproduces" if check.reproduced else "does NOT reproduce"
        _print(
            f"  {_mark(check.reproduced)} training set {escape(check.name)}: {verdict} "
            f"(stored hash {check.stored_hash[:16]}…, recomputed "
            f"{check.recomputed_hash[:16]}…; {frames:,} frames' digests recomputed)"
        )
        for kind, difference in check.differences.items():
            if difference["count"]:
                _print(
                    f"        {difference['count']:,} {kind} frames: ids "
                    f"{', '.join(str(i) for i in difference['first'])}"
                )
        for source in check.sources:
            _print(f"    source         {_source_line(source)}")
    artifact = version.artifact
    problem = artifact.problem(version.model)
    if problem is None:
        _print(
            f"  {PASS} model file     {escape(artifact.path or '')}  sha256 "
            f"{(artifact.registered_sha256 or '')[:16]}… matches the registry ({artifact.where})"
        )
    else:
        _print(f"  {FAIL} model file     {escape(problem)}")
    if version.retracted_sources:
        _print(f"  {FAIL} tainted: trained on retracted data")


def _print_metrics(audit: ModelAudit) -> None:
    from rich.table import Table

    if not audit.metrics:
        _print(f"\nmetrics: {audit.model} has no registered per-split metrics")
        return
    table = Table(
        "split",
        "metric",
        "registry",
        "recomputed",
        "check",
        title=f"metrics of {audit.model}: registry vs recomputed from the stored predictions "
        f"(relative tolerance {audit.metric_relative_tolerance:g})",
    )
    for metric in audit.metrics:
        table.add_row(
            metric.split,
            metric.metric,
            "" if metric.registered is None else f"{metric.registered:.6g}",
            "" if metric.recomputed is None else f"{metric.recomputed:.6g}",
            _mark(metric.ok),
        )
    console.print(table)


def _print_reproduce(check: ReproduceCheck) -> None:
    if check.skipped is not None:
        _print(f"{FAIL} reproduce: not run: {escape(check.skipped)}")
        return
    _print(
        f"{_mark(check.ok)} reproduce: {len(check.frames)} frames (of {check.requested} asked, "
        f"seed {check.seed}, {check.device}): largest |ΔE| "
        f"{check.largest_energy_mev_per_atom:.3g} meV/atom (tolerance "
        f"{check.energy_tolerance_mev_per_atom:g}), largest |ΔF| "
        f"{check.largest_force_mev_per_a:.3g} meV/Å (tolerance "
        f"{check.force_tolerance_mev_per_a:g})"
    )


def _print_downstream(audit: ModelAudit) -> None:
    from rich.table import Table

    table = Table("made with it", "rows", title=f"downstream of {audit.model}")
    if audit.downstream_keys is not None:
        table.add_column("keys", overflow="fold")
    for kind, count in audit.downstream_counts.items():
        cells = [kind.replace("_", " "), f"{count:,}"]
        if audit.downstream_keys is not None:
            cells.append(escape(", ".join(audit.downstream_keys.get(kind, []))))
        table.add_row(*cells)
    console.print(table)


def print_audit(audit: ModelAudit) -> None:
    """The audit for people: the lineage with one line per check, metrics, reproduce,
    downstream, then the verdict and one line per reason."""
    _print(f"[bold]audit of {audit.model}[/bold]: lineage, model first, to the root")
    seen: set[int] = set()
    for version in audit.lineage:
        _print_version(version, version.training_set.training_set_id in seen)
        seen.add(version.training_set.training_set_id)
    _print_metrics(audit)
    if audit.reproduce is not None:
        _print_reproduce(audit.reproduce)
    _print_downstream(audit)
    if not audit.reasons:
        _print("verdict: [green]pass[/green]")
        return
    _print("verdict: [red]fail[/red]")
    for reason in audit.reasons:
        _print(f"- {escape(reason)}")
