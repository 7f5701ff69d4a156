"""``atlas2d serve``: the OPTIMADE API and the web pages, read-only."""

from __future__ import annotations

import errno
import socket

import typer

from atlas2d.errors import CannotListen
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

    # Bound before anything else, so that a port in use is told in one line (uvicorn
    # would log its own error after our start-up line) and nothing else can take it.
    with listening_socket(host, port) as listener:
        reader = connect_reader()
        with reader.sessions() as session:
            login = login_name(session)
        app = create_app(ReadOnlyDatabase(reader.sessions, round(timeout * 1000), login))
        console.print(
            f"serving http://{host}:{port}/ read-only as {login} (OPTIMADE at /v1); Ctrl-C stops",
            highlight=False,
            soft_wrap=True,
        )
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        try:
            uvicorn.Server(config).run(sockets=[listener])
        except KeyboardInterrupt:
            # uvicorn shut down gracefully, then re-raised Ctrl-C; a server that only
            # reads has nothing half-done to report (as uvicorn.run, quiet, exit 0).
            return


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` for uvicorn to listen on.

    Raises:
        CannotListen: the host is no address of this machine, the port is in use, or
            it is a privileged port; one line saying what to do.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as err:
        raise CannotListen(
            f"--host {host!r} names no address ({err.strerror}); give one of this machine's "
            "addresses, such as 127.0.0.1."
        ) from err
    listener = socket.socket(family, kind, proto)
    # As uvicorn does: a restarted server may take the port over from the last one's
    # connections in TIME_WAIT, but never from a program still listening on it.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as err:
        listener.close()
        if err.errno == errno.EADDRINUSE:
            reason = "another program listens on it; choose another port with --port"
        elif err.errno == errno.EACCES:
            reason = "ports below 1024 need privileges; choose one above 1023 with --port"
        elif err.errno == errno.EADDRNOTAVAIL:
            reason = f"{host} is no address of this machine; give one, such as 127.0.0.1"
        else:
            reason = err.strerror or str(err)
        raise CannotListen(f"Cannot listen on {host} port {port}: {reason}.") from err
    return listener
