"""The ``atlas2d`` command. Heavy imports happen inside commands so ``--help`` is instant."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from atlas2d.cli import (
    activity_commands,
    al_commands,
    alloy_commands,
    audit_commands,
    db_commands,
    demo_commands,
    generate_commands,
    ingest_commands,
    label_commands,
    model_commands,
    query_commands,
    relax_commands,
    serve_commands,
    stability_commands,
    trainset_commands,
)
from atlas2d.errors import Atlas2dError, InvalidInput

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
typer_app.add_typer(generate_commands.app, name="generate")
typer_app.add_typer(stability_commands.hull_app, name="hull")
typer_app.command()(stability_commands.stable)
typer_app.add_typer(al_commands.app, name="al")
typer_app.add_typer(alloy_commands.app, name="alloys")
typer_app.add_typer(audit_commands.app, name="audit")
typer_app.add_typer(activity_commands.app, name="activity")
typer_app.command()(serve_commands.serve)
typer_app.command()(demo_commands.demo)


class _Options:
    """Options of the ``atlas2d`` group, set by its callback before a command runs."""

    verbose = False


@typer_app.callback()
def _global_options(
    ctx: typer.Context,
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Show other libraries' output (Lightning, matgl, mace), kept in a log file "
        "otherwise; on an error, print the full traceback before the one-line message.",
    ),
) -> None:
    from atlas2d.mlff import chatter

    show = verbose or chatter.verbose()
    _Options.verbose = show
    log = _command_log(ctx.invoked_subcommand or "atlas2d")
    if log is not None:  # until the command ends: worker processes inherit the choice
        ctx.with_resource(chatter.for_command(log, show))


def _command_log(command: str) -> Path | None:
    """``$ATLAS2D_HOME/logs/COMMAND.log``, where other libraries' output goes (None when
    the settings are invalid: the command reports that itself when it reads them)."""
    from pydantic import ValidationError

    from atlas2d.config import get_settings
    from atlas2d.mlff.chatter import LOGS_FOLDER

    try:
        home = get_settings().home
    except ValidationError:
        return None
    return home / LOGS_FOLDER / f"{command}.log"


def app() -> None:
    """Entry point: run the CLI and exit with an honest code.

    0: success. 1: an error, told in one red line (``Atlas2dError``, a database that
    cannot be reached, a connection lost mid-command, a missing privilege) or what the
    command signals (``trainset verify`` not reproducing, ``ingest --skip-bad`` with
    rejected files). 2: a usage error (unknown option, missing argument). A traceback
    only with ``--verbose``, or for a bug (an error atlas2d does not know).
    """
    from atlas2d.cli.output import error_console
    from atlas2d.threads import configured_threads

    try:
        configured_threads()
    except ValueError as err:
        error_console.print(
            f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True
        )
        sys.exit(1)
    try:
        result = typer_app(standalone_mode=False)
    except BrokenPipeError:
        _closed_pipe()
    except SystemExit:
        # Typer answers a closed pipe (EPIPE) by wrapping stdout and exiting with 1.
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            _closed_pipe()
        raise
    except Exception as err:
        sys.exit(_exit_code(err))
    # Without standalone mode click *returns* the code of `typer.Exit` (and 0 for --help)
    # instead of exiting with it; every command itself returns None.
    code = result if isinstance(result, int) else 0
    if code == INTERRUPTED:  # Typer's answer to Ctrl-C (and to SIGTERM, see cli.context)
        error_console.print(
            "[red]interrupted:[/red] stopped before the end; what it had committed stays, "
            "the statement running was cancelled on the server.",
            highlight=False,
            soft_wrap=True,
        )
    sys.exit(code)


INTERRUPTED = 130
"""Exit code of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report)."""


def _closed_pipe() -> None:
    """The reader of our output went away (``atlas2d … | head``): stop quietly with 0,
    as Unix tools do. Python would report the failed flush of stdout at exit, so stdout
    points at /dev/null from here on."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.__stdout__.fileno())  # type: ignore[union-attr]
    sys.exit(0)


def _exit_code(err: Exception) -> int:
    """Report ``err`` on stderr and return the exit code; re-raise a bug."""
    import traceback

    from atlas2d.cli.output import error_console

    usage_errors = _click_exceptions()
    if isinstance(err, usage_errors):
        code = int(getattr(err, "exit_code", 1))
        if type(err).__name__ == "NoArgsIsHelpError":  # `atlas2d db`: its help, not an error
            err.show()  # type: ignore[attr-defined]
            return code
        context = getattr(err, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        # click lays choices out on several lines; one line is easier to read in a log.
        message = " ".join(err.format_message().split())  # type: ignore[attr-defined]
        error_console.print(
            f"[red]error:[/red] {escape(message + hint)}", highlight=False, soft_wrap=True
        )
        return code
    if isinstance(err, typer.Abort):
        error_console.print("[red]Aborted.[/red]")
        return 1
    explained = (
        err
        if isinstance(err, Atlas2dError)
        else _settings_error(err) or _file_error(err) or _database_error(err)
    )
    if explained is None:
        raise err
    if _Options.verbose:
        traceback.print_exception(err)
    error_console.print(
        f"[red]error:[/red] {escape(str(explained))}", highlight=False, soft_wrap=True
    )
    return 1


def _settings_error(err: Exception) -> InvalidInput | None:
    """An ``ATLAS2D_*`` variable pydantic refused, as one line naming it, or None."""
    from pydantic import ValidationError

    if not isinstance(err, ValidationError):
        return None
    problems = [
        f"ATLAS2D_{'_'.join(map(str, problem['loc'])).upper()}={problem.get('input')!r}: "
        f"{problem['msg']}"
        for problem in err.errors()
    ]
    return InvalidInput("; ".join(problems) + ". Fix or unset the variable.")


def _file_error(err: Exception) -> InvalidInput | None:
    """A file the command could not read or write (a bad output path, a missing
    permission) as one line naming it, or None."""
    if not isinstance(err, OSError) or err.filename is None:
        return None
    return InvalidInput(
        f"{err.filename}: {err.strerror or type(err).__name__}; choose another path or fix "
        "its permissions."
    )


def _database_error(err: Exception) -> Atlas2dError | None:
    """A driver error turned into one line (connection lost, missing privilege), or None."""
    from sqlalchemy.engine import make_url

    from atlas2d.config import get_settings
    from atlas2d.db.session import explain_database_error

    try:
        configured = get_settings().database_url
        role = make_url(configured).username if configured else None
    except Exception:  # a bad setting or URL failed earlier; do not hide that error
        role = None
    return explain_database_error(err, role)


def _click_exceptions() -> tuple[type[Exception], ...]:
    """Usage-error base classes: Typer's own (it vendors click) and click's, if present."""
    found: list[type[Exception]] = []
    if hasattr(typer, "TyperException"):
        found.append(typer.TyperException)
    try:
        import click
    except ImportError:
        pass
    else:
        found.append(click.ClickException)
    return tuple(found)


if __name__ == "__main__":
    app()
