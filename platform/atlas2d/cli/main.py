"""The ``atlas2d`` command. Heavy imports happen inside commands so ``--help`` is instant."""

from __future__ import annotations

import sys

import typer

from atlas2d.cli import (
    db_commands,
    demo_commands,
    ingest_commands,
    label_commands,
    model_commands,
    query_commands,
    relax_commands,
    stability_commands,
    trainset_commands,
)
from atlas2d.errors import Atlas2dError

typer_app = typer.Typer(
    help="atlas2d: a PostgreSQL database of 2D materials and machine-learned force fields.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
typer_app.add_typer(db_commands.app, name="db")
typer_app.command()(ingest_commands.ingest)
typer_app.command()(query_commands.sql)
typer_app.add_typer(query_commands.materials_app, name="materials")
typer_app.add_typer(trainset_commands.app, name="trainset")
typer_app.command()(model_commands.train)
typer_app.command()(model_commands.predict)
typer_app.add_typer(model_commands.models_app, name="models")
typer_app.command()(relax_commands.relax)
typer_app.command()(relax_commands.evaluate)
typer_app.command()(label_commands.label)
typer_app.add_typer(stability_commands.hull_app, name="hull")
typer_app.command()(stability_commands.stable)
typer_app.command()(demo_commands.demo)


def app() -> None:
    """Entry point: run the CLI; an ``Atlas2dError`` becomes one red line and exit code 1."""
    from atlas2d.cli.output import error_console
    from atlas2d.threads import configured_threads

    try:
        configured_threads()
    except ValueError as err:
        error_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        sys.exit(1)
    try:
        typer_app(standalone_mode=False)
    except Atlas2dError as err:
        error_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as err:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    app()
