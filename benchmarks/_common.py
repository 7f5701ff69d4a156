"""Shared benchmark plumbing: a fresh database, timing, machine description."""

from __future__ import annotations

import atexit
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from atlas2d.db.embedded import embedded_url
from atlas2d.db.migrate import upgrade
from atlas2d.db.session import make_engine


def fresh_database(workdir: Path) -> tuple[str, Engine]:
    """A new, migrated database: on ``ATLAS2D_BENCH_DATABASE_URL``'s server if set,
    else on an embedded PostgreSQL under ``workdir``."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin_url = os.environ.get("ATLAS2D_BENCH_DATABASE_URL")
    if admin_url:
        admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_engine(admin_url).url.set(database=name).render_as_string(hide_password=False)
    else:
        url = embedded_url(workdir / "pgdata", name)
        # Stopped however the benchmark ends (an exception, Ctrl-C, sys.exit): a run
        # that died at a subprocess step once left its server running.
        atexit.register(stop_embedded_servers, workdir)
    engine = make_engine(url)
    upgrade(engine)
    return url, engine


def stop_embedded_servers(folder: Path) -> None:
    """Stop the embedded PostgreSQL a benchmark started under ``folder``."""
    from atlas2d.db.embedded import stop_embedded

    stop_embedded(folder / "pgdata")


def workdir() -> Path:
    """A scratch folder (short path: PostgreSQL's socket path has a length limit)."""
    return Path(tempfile.mkdtemp(prefix="a2db_", dir="/tmp"))


@contextmanager
def timer() -> Iterator[list[float]]:
    """``with timer() as t: ...`` then ``t[0]`` is the elapsed wall time in s."""
    elapsed: list[float] = [0.0]
    start = time.perf_counter()
    yield elapsed
    elapsed[0] = time.perf_counter() - start


def machine() -> str:
    """One line describing this machine."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def ingest_synthetic(sessions, relaxations: int, steps: int, batch: int = 5000) -> int:  # type: ignore[no-untyped-def]
    """Ingest ``relaxations`` seeded synthetic layers of 3–20 atoms × ``steps`` steps
    through the service path, ``batch`` relaxations per source; returns frames written.
    (The caller puts the repository root on ``sys.path``: the data is test support.)"""
    from tests.support.synthetic import synthetic_trajectories

    from atlas2d.io.records import ParsedFile
    from atlas2d.services.ingest import ingest_parsed

    frames = 0
    for start in range(0, relaxations, batch):
        trajectories = synthetic_trajectories(
            min(batch, relaxations - start), steps, (3, 20), seed=start, key_prefix=f"b{start}"
        )
        frames += ingest_parsed(
            sessions,
            ParsedFile(f"batch-{start}", "records", "", "benchmark", trajectories=trajectories),
        ).frames
    return frames
