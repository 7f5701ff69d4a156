"""A live ``atlas2d serve``: the installed command in a subprocess on a free port, over a
database with the demo dataset and its DFT hull, read through the reader login."""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine, make_url, text

from tests.support.entry_point import atlas2d_script, user_environment

DEMO_DATA = Path(__file__).resolve().parents[2] / "platform" / "atlas2d" / "demo" / "data"


@dataclass
class ServedDatabase:
    """A committed database and the URLs of its owner and of the reader login."""

    owner_url: str
    reader_url: str
    engine: Engine
    home: Path

    def counts(self) -> dict[str, int]:
        """Rows per table of the tables a write through the API could touch."""
        with self.engine.connect() as connection:
            return {
                table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("materials", "relaxations", "frames", "energy_entries", "stability")
            }


def demo_database(admin: Engine, url: str, home: Path) -> ServedDatabase:
    """Ingest the demo dataset into the migrated database at ``url``, compute its DFT
    hull, and make the reader login (as the embedded server has it)."""
    from atlas2d.db.embedded import CREATE_READER_LOGIN, EMBEDDED_READER_LOGIN
    from atlas2d.db.session import make_engine, make_sessions
    from atlas2d.io.readers import ReadOptions
    from atlas2d.services.ingest import ingest_paths
    from atlas2d.services.stability import update_hull

    engine = make_engine(url)
    sessions = make_sessions(engine)
    ingest_paths(sessions, sorted(DEMO_DATA.glob("*.json.xz")), ReadOptions())
    update_hull(sessions)
    password = secrets.token_hex(16)
    with admin.connect() as connection:
        connection.execute(text(CREATE_READER_LOGIN))
        connection.execute(text(f"ALTER ROLE {EMBEDDED_READER_LOGIN} PASSWORD '{password}'"))
    reader_url = (
        make_url(url)
        .set(username=EMBEDDED_READER_LOGIN, password=password)
        .render_as_string(hide_password=False)
    )
    return ServedDatabase(url, reader_url, engine, home)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(database: ServedDatabase, *options: str) -> Iterator[str]:
    """``atlas2d serve`` on a free port over ``database``; yields its base URL
    (``http://127.0.0.1:PORT``) once it answers, and stops it afterwards."""
    port = free_port()
    env = user_environment(
        ATLAS2D_HOME=str(database.home),
        ATLAS2D_DATABASE_URL=database.owner_url,
        ATLAS2D_READER_DATABASE_URL=database.reader_url,
    )
    process = subprocess.Popen(
        [atlas2d_script(), "serve", "--port", str(port), *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/versions", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                out, err = (
                    process.communicate(timeout=5) if process.poll() is not None else ("", "")
                )
                raise RuntimeError(f"atlas2d serve did not start: {out}{err}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
