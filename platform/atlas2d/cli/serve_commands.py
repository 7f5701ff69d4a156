"""``atlas2d serve``: the OPTIMADE API and the web pages, read-only."""

from __future__ import annotations

import typer

from atlas2d.vocabulary import SQL_TIMEOUT_MAX_S


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port to listen on."),
    timeout: float = typer.Option(
        10.0,
        "--timeout",
        min=0.001,
        max=SQL_TIMEOUT_MAX_S,
        help="Seconds one request's SQL statement may run before it is stopped.",
    ),
) -> None:
    """Serve the database read-only: the OPTIMADE API under /v1 and the web pages at /.

    Every request reads in a READ ONLY transaction as a login that can only read: the
    embedded server's atlas2d_sql, or ATLAS2D_READER_DATABASE_URL with an external
    server. Ctrl-C stops it.
    """
    import uvicorn

    from atlas2d.cli.context import connect_reader
    from atlas2d.cli.output import console
    from atlas2d.queries.user_sql import login_name
    from atlas2d.serve.app import create_app
    from atlas2d.serve.database import ReadOnlyDatabase

    reader = connect_reader()
    with reader.sessions() as session:
        login = login_name(session)
    app = create_app(ReadOnlyDatabase(reader.sessions, round(timeout * 1000), login))
    console.print(
        f"serving http://{host}:{port}/ read-only as {login} (OPTIMADE at /v1); Ctrl-C stops",
        highlight=False,
        soft_wrap=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
