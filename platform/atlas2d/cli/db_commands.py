"""``atlas2d db …``: schema upgrades, status, URL, and stopping the embedded server."""

from __future__ import annotations

import typer

from atlas2d.cli.output import console

app = typer.Typer(
    help="The database: upgrade its schema, see its state, get its URL.", no_args_is_help=True
)


@app.command()
def upgrade() -> None:
    """Migrate the database schema to the newest revision (Alembic)."""
    from atlas2d.cli.context import connect
    from atlas2d.db.migrate import upgrade as run_upgrade

    database = connect(check_schema=False)
    before, after = run_upgrade(database.engine)
    if before == after:
        console.print(f"Schema already at the newest revision {after}.")
    else:
        console.print(f"Schema upgraded from {before or 'an empty database'} to {after}.")


@app.command()
def status() -> None:
    """Show the database URL (password hidden), schema revision and rows per table."""
    from rich.table import Table
    from sqlalchemy import inspect, text

    from atlas2d.cli.context import connect
    from atlas2d.db.migrate import current_revision, head_revision
    from atlas2d.db.session import redacted_url

    database = connect(check_schema=False)
    with database.engine.connect() as connection:
        revision = current_revision(connection)
        tables = sorted(t for t in inspect(connection).get_table_names() if t != "alembic_version")
        counts = {
            t: connection.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables
        }
    head = head_revision()
    console.print(f"URL: {redacted_url(database.url)}")
    state = "up to date" if revision == head else "behind: run `atlas2d db upgrade`"
    console.print(f"Schema revision: {revision or 'none'} (code: {head}, {state})")
    table = Table("table", "rows")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    console.print(table)


@app.command()
def url(show_password: bool = typer.Option(False, help="Print the password too.")) -> None:
    """Print the database URL (for psql, notebooks or other tools)."""
    from atlas2d.config import get_settings
    from atlas2d.db.session import redacted_url, resolve_database_url

    value = resolve_database_url(get_settings())
    typer.echo(value if show_password else redacted_url(value))


@app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL server (it starts again on the next command).

    It is stopped even when a process that used it was killed (``kill -9``) and left a
    stale handle; other running atlas2d commands lose their connection (their open
    transaction is rolled back).
    """
    from atlas2d.config import get_settings
    from atlas2d.db.embedded import stop_embedded

    settings = get_settings()
    if settings.database_url:
        console.print("ATLAS2D_DATABASE_URL is set: there is no embedded server to stop.")
        return
    report = stop_embedded(settings.pgdata_dir)
    stale = report.stale_handles
    stale_text = f"{stale} stale handle{'s' if stale != 1 else ''} of killed processes"
    if report.stopped_pid is None:
        removed = f" ({stale_text} removed)" if stale else ""
        console.print(f"The embedded PostgreSQL was not running{removed}.")
        return
    despite = f" despite {stale_text} (removed)" if stale else ""
    console.print(f"Embedded PostgreSQL stopped (postmaster pid {report.stopped_pid}){despite}.")
    if report.live_handles:
        console.print(
            f"{report.live_handles} other running process(es) were using it: their open "
            "transactions were rolled back; run them again."
        )
