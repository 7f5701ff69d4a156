"""``atlas2d audit``: where a model, a material or a source file came from and what it
fed. Each subcommand lives in its own module."""

from __future__ import annotations

import typer

from atlas2d.cli import audit_material_commands, audit_model_commands, audit_source_commands

app = typer.Typer(
    help="Provenance audits: a model's lineage and integrity, a material's history, a "
    "source file's downstream impact (and its retraction).",
    no_args_is_help=True,
)
app.command("model")(audit_model_commands.model)
app.command("material")(audit_material_commands.material)
app.command("source")(audit_source_commands.source)
