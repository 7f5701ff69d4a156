"""Concurrent writers against a real PostgreSQL: ingests that share rows never deadlock,
and a training set cut while an ingest is in flight reproduces.

The ``sessions`` fixture runs a test inside one rolled-back transaction, which cannot show
two transactions meeting; these tests use a committed database of their own, one
connection per writer (threads), and force the dangerous interleaving with a gate: a
transaction held open until the other writers are seen waiting on a lock (``pg_locks``,
``pg_stat_activity``), so the outcome never depends on timing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.session import make_engine, make_sessions
from atlas2d.io.readers import ReadOptions, read_file
from atlas2d.io.records import Trajectory
from atlas2d.queries import energy_entries as entries_queries
from atlas2d.queries import frames as frames_queries
from atlas2d.queries.materials import StoredMaterial, upsert_materials
from atlas2d.queries.row_encoding import build_blocks, material_rows
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.ingest import INGESTED, FileResult, ingest_file
from atlas2d.services.trainsets import create_training_set, verify_training_set
from tests.conftest import _drop_database, _migrated_database
from tests.io.test_alexandria import _entry
from tests.support.synthetic import alexandria_document, synthetic_trajectories

WRITES = {"frames": (frames_queries, "copy_frames"), "entries": (entries_queries, "insert_entries")}
"""The writes of an ingest a test can pause after (module, function)."""

GUARD_S = 30.0
"""How long a test waits for a writer to reach a lock before it gives up: a guard against
a hang, never a measured time (a healthy run needs milliseconds)."""


@dataclass
class Database:
    """A committed database of one test, its sessions, and an AUTOCOMMIT monitor."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    monitor: Engine

    def scalar(self, sql: str) -> Any:
        with self.monitor.connect() as connection:
            return connection.execute(text(sql)).scalar_one()

    def lock_waiters(self) -> int:
        """Backends of this database now waiting for a heavyweight lock."""
        return int(
            self.scalar(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )


@pytest.fixture
def database(database_server: Engine) -> Iterator[Database]:
    """A fresh migrated database whose transactions really commit; dropped afterwards."""
    url = _migrated_database(database_server, "atlas2d_concurrency")
    engine = make_engine(url)
    monitor = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    yield Database(url, engine, make_sessions(engine), monitor)
    engine.dispose()
    monitor.dispose()
    _drop_database(database_server, url)  # WITH (FORCE): ends a writer left waiting


def _write(path: Path, trajectories: list[Trajectory]) -> Path:
    """An Alexandria file holding the trajectories in this order (keys in file order)."""
    path.write_text(json.dumps(alexandria_document(trajectories)))
    return path


def _trajectories(keys: list[str], seed: int) -> list[Trajectory]:
    """One small synthetic MoS2 trajectory per key (a key keeps its formula in every
    file); the seed makes the content distinct."""
    trajectories = synthetic_trajectories(len(keys), 4, 3, seed=seed)
    for trajectory, key in zip(trajectories, keys, strict=True):
        trajectory.material_key = key
        trajectory.species = np.array([42, 16, 16])
        trajectory.record = f"mat_id {key}"
    return trajectories


def _wait_for(condition: Callable[[], bool], what: str, *running: Future[Any]) -> bool:
    """Poll until ``condition`` holds (True) or one of ``running`` has finished (False)."""
    deadline = time.monotonic() + GUARD_S
    while not condition():
        if any(future.done() for future in running):
            return False
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)
    return True


def _ingest(database: Database, path: Path) -> Callable[[], FileResult]:
    return lambda: ingest_file(database.sessions, path, ReadOptions())


def _material_counts(database: Database) -> tuple[int, int]:
    """(material rows, distinct material keys)."""
    with database.monitor.connect() as connection:
        return tuple(  # type: ignore[return-value]
            connection.execute(text("SELECT count(*), count(DISTINCT key) FROM materials")).one()
        )


def _named(name: str, work: Callable[[], FileResult]) -> Callable[[], FileResult]:
    """``work`` run under a thread name that ``_pause_after`` recognises."""

    def run() -> FileResult:
        threading.current_thread().name = name
        return work()

    return run


def _pause_after(
    monkeypatch: pytest.MonkeyPatch, write: str, thread_name: str
) -> tuple[threading.Event, threading.Event]:
    """Make the ingest running in thread ``thread_name`` stop after one of its writes
    (``"frames"``: the COPY of its frames; ``"entries"``: its hull entries), before it
    commits: returns (paused, resume) events."""
    paused, resume = threading.Event(), threading.Event()
    module, name = WRITES[write]
    original = getattr(module, name)

    def write_then_wait(*args: Any) -> Any:
        written = original(*args)
        if threading.current_thread().name == thread_name:
            paused.set()
            assert resume.wait(GUARD_S), "the test never resumed the paused ingest"
        return written

    monkeypatch.setattr(module, name, write_then_wait)
    return paused, resume


# --- finding 2: ingests that share material keys in opposite orders ---------------------


def test_ingests_with_reversed_material_keys_both_succeed(
    database: Database, tmp_path: Path
) -> None:
    """File one holds materials a, gate, b; file two b, gate, a. A third transaction has
    inserted ``gate`` and stays open until both ingests wait on it, so that each has
    written one of a and b before it needs the other's: locked in file order, one of
    them dies with DeadlockDetected when the gate commits."""
    first = _write(tmp_path / "first.json", _trajectories(["a", "gate", "b"], seed=1))
    second = _write(tmp_path / "second.json", _trajectories(["b", "gate", "a"], seed=2))
    parsed = read_file(first, ReadOptions())
    gate_row = next(
        row
        for row in material_rows(parsed, build_blocks(parsed.trajectories, parsed.path), [])
        if row["key"] == "gate"
    )
    with ThreadPoolExecutor(2) as pool, database.sessions.begin() as gate:
        upsert_materials(gate, [gate_row])
        one = pool.submit(_ingest(database, first))
        assert _wait_for(lambda: database.lock_waiters() == 1, "ingest one to wait", one)
        two = pool.submit(_ingest(database, second))
        assert _wait_for(lambda: database.lock_waiters() == 2, "ingest two to wait", one, two)
    # The gate has committed: both ingests run on.
    results = [one.result(GUARD_S), two.result(GUARD_S)]
    assert [r.status for r in results] == [INGESTED, INGESTED]
    assert sum(r.relaxations for r in results) == 6
    assert _material_counts(database) == (3, 3)


def test_reversed_ingests_run_concurrently_many_times_all_succeed(
    database: Database, tmp_path: Path
) -> None:
    """No gate: twenty rounds of two ingests started together on 30 shared keys in
    opposite orders (new keys in the first round, stored ones afterwards)."""
    keys = [f"shared-{i:02d}" for i in range(30)]
    rounds = 20
    start = threading.Barrier(2)

    def started(path: Path) -> Callable[[], FileResult]:
        def run() -> FileResult:
            start.wait(GUARD_S)
            return ingest_file(database.sessions, path, ReadOptions())

        return run

    with ThreadPoolExecutor(2) as pool:
        for round_ in range(rounds):
            forward = _write(tmp_path / f"{round_}-f.json", _trajectories(keys, seed=2 * round_))
            backward = _write(
                tmp_path / f"{round_}-b.json", _trajectories(keys[::-1], seed=2 * round_ + 1)
            )
            futures = [pool.submit(started(forward)), pool.submit(started(backward))]
            assert [f.result(GUARD_S).status for f in futures] == [INGESTED, INGESTED]
    assert _material_counts(database) == (30, 30)
    assert database.scalar("SELECT count(*) FROM relaxations") == 2 * rounds * len(keys)


def _shared_files(kind: str, keys: list[str], directory: Path) -> list[Path]:
    """(stored, gate, first, second) files of ``kind`` rows for ``keys``: ``stored`` has
    other content for the same materials; ``first`` and ``second`` hold the same rows in
    opposite orders; ``gate`` holds the middle one alone."""
    if kind == "trajectories":
        old: list[Any] = _trajectories(keys, seed=0)
        rows: list[Any] = _trajectories(keys, seed=5)
        content = alexandria_document
    else:
        old = [{**_entry(key), "energy": -20.0} for key in keys]
        rows = [_entry(key) for key in keys]

        def content(entries: list[Any]) -> dict[str, Any]:
            return {"entries": entries}

    paths = []
    for name, part in (
        ("stored", old),
        ("gate", [rows[1]]),
        ("first", rows),
        ("second", rows[::-1]),
    ):
        paths.append(directory / f"{name}.json")
        paths[-1].write_text(json.dumps(content(part)))
    return paths


@pytest.mark.parametrize(
    ("kind", "write", "table"),
    [
        ("trajectories", "frames", "relaxations"),
        ("entries", "entries", "energy_entries"),
    ],
)
def test_files_sharing_rows_in_reversed_order_both_succeed(
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    write: str,
    table: str,
) -> None:
    """Materials already stored; two files hold the same three trajectories (or hull
    entries) in opposite orders, and the middle one is being ingested from a third file,
    paused before its commit. Each ingest must wait for it with one of the others
    already written."""
    keys = ["a", "gate", "b"]
    stored, gate, first, second = _shared_files(kind, keys, tmp_path)
    ingest_file(database.sessions, stored, ReadOptions())
    before = database.scalar(f"SELECT count(*) FROM {table}")
    paused, resume = _pause_after(monkeypatch, write, "gate")
    with ThreadPoolExecutor(3) as pool:
        held = pool.submit(_named("gate", _ingest(database, gate)))
        assert paused.wait(GUARD_S)
        one = pool.submit(_ingest(database, first))
        assert _wait_for(lambda: database.lock_waiters() == 1, "ingest one to wait", one)
        two = pool.submit(_ingest(database, second))
        assert _wait_for(lambda: database.lock_waiters() == 2, "ingest two to wait", one, two)
        resume.set()
        results = [held.result(GUARD_S), one.result(GUARD_S), two.result(GUARD_S)]
    assert [r.status for r in results] == [INGESTED] * 3
    assert database.scalar(f"SELECT count(*) FROM {table}") == before + 3  # each row once
    assert _material_counts(database) == (3, 3)


def _material_row(key: str, **fields: Any) -> dict[str, Any]:
    return {
        "key": key,
        "formula": "MoS2",
        "chemsys": "Mo-S",
        "elements": ["Mo", "S"],
        "prototype": None,
        "spacegroup_number": None,
        "dimensionality": 2,
        "info": {},
        **fields,
    }


def test_a_stored_material_is_left_alone_unless_a_file_fills_a_gap(
    sessions: sessionmaker[Session],
) -> None:
    """Re-upserting a stored material locks and rewrites nothing (its row version, xmin,
    stays); a file that brings a missing prototype, space group or info key fills it in,
    and never overwrites what is stored."""

    def version(session: Session, key: str) -> Any:
        return session.execute(
            text(
                "SELECT xmin::text, prototype, spacegroup_number, info FROM materials"
                " WHERE key = :key"
            ),
            {"key": key},
        ).one()

    with sessions.begin() as session:
        first = upsert_materials(session, [_material_row("m1", info={"source": "one"})])
    with sessions.begin() as session:
        before = version(session, "m1")
        again = upsert_materials(session, [_material_row("m1", info={"source": "two"})])
        assert version(session, "m1") == before  # same values, same row version
        assert again["m1"] == StoredMaterial(first["m1"].id, "MoS2", inserted=False)
        filled = _material_row(
            "m1", prototype="MoS2_2H", spacegroup_number=187, info={"source": "three", "spg": 187}
        )
        upsert_materials(session, [filled])
        after = version(session, "m1")
        upsert_materials(session, [_material_row("m1", prototype="other", spacegroup_number=1)])
        assert version(session, "m1") == after
    assert first["m1"].inserted
    assert (after.prototype, after.spacegroup_number, after.info) == (
        "MoS2_2H",
        187,
        {"source": "one", "spg": 187},
    )


def test_ids_are_drawn_in_file_order(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """Rows are written in key (or content-hash) order, but ids follow the file, as a
    plain INSERT would draw them: materials, relaxations and hull entries."""
    keys = [f"k{i:03d}" for i in np.random.default_rng(0).permutation(60)]
    with sessions.begin() as session:
        stored = upsert_materials(session, [_material_row(key) for key in keys[:30]])
    ids = [stored[key].id for key in keys[:30]]
    assert ids == sorted(ids) and keys[:30] != sorted(keys[:30])
    trajectories = _trajectories(keys, seed=9)
    ingest_file(sessions, _write(tmp_path / "traj.json", trajectories), ReadOptions())
    hull = tmp_path / "hull.json"
    hull.write_text(json.dumps({"entries": [_entry(key) for key in keys]}))
    ingest_file(sessions, hull, ReadOptions())
    with sessions.begin() as session:
        for table in ("relaxations", "energy_entries"):
            in_id_order = (
                session.execute(
                    text(
                        f"SELECT m.key FROM {table} x JOIN materials m ON m.id = x.material_id"
                        " ORDER BY x.id"
                    )
                )
                .scalars()
                .all()
            )
            assert in_id_order == keys, table


# --- finding 3: a training set cut while an ingest is in flight ---------------------------


def test_a_training_set_cut_during_an_ingest_reproduces(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest A has written its relaxations (lower ids) and stops before committing;
    ingest B commits (higher ids); ``trainset create`` starts; then A commits. The set
    must be decided by what was committed when it was made, so verify reproduces it."""
    file_a = _write(tmp_path / "a.json", synthetic_trajectories(6, 5, 3, seed=3, key_prefix="a"))
    file_b = _write(tmp_path / "b.json", synthetic_trajectories(6, 5, 3, seed=4, key_prefix="b"))
    paused, resume = _pause_after(monkeypatch, "frames", "ingest-a")
    params = SelectionParameters(ecut=1e6, split=(50.0, 25.0, 25.0), seed=1)
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(_named("ingest-a", _ingest(database, file_a)))
        assert paused.wait(GUARD_S)
        assert _ingest(database, file_b)().status == INGESTED
        create = pool.submit(create_training_set, database.sessions, "wm", params)
        # The creator must wait for A (a lock it cannot get while A is in flight).
        waits = _wait_for(
            lambda: (
                database.scalar(
                    "SELECT count(*) FROM pg_locks"
                    " WHERE relation = 'relaxations'::regclass AND NOT granted"
                )
                == 1
            ),
            "trainset create to wait for ingest A",
            create,
        )
        resume.set()
        assert a.result(GUARD_S).status == INGESTED
        summary = create.result(GUARD_S)
    report = verify_training_set(database.sessions, "wm")
    assert report.reproduced, report.differences
    assert waits  # it saw A's frames: 12 relaxations, 3 fallback steps each
    assert summary.n_frames == 12 * 3
