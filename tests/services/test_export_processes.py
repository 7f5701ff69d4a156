"""A MACE export written by several processes (``services.trainset_export``): the same
bytes as one process writes, one clear error when a stored frame cannot be written or
the set's frames change under it, and nothing left behind (no part file, no process,
no statement) when it fails or is interrupted."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.session import make_engine, make_sessions
from atlas2d.errors import InvalidInput, WorkerDied
from atlas2d.io import exporters
from atlas2d.io.records import ParsedFile
from atlas2d.queries import training_sets
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services import trainset_export
from atlas2d.services.ingest import ingest_parsed
from atlas2d.services.trainset_export import export_training_set
from atlas2d.services.trainsets import create_training_set
from tests.conftest import _drop_database, _migrated_database
from tests.support.entry_point import atlas2d_script, user_environment
from tests.support.synthetic import synthetic_trajectories

SPLIT_FILES = ["test.xyz", "train.xyz", "val.xyz"]


@pytest.fixture(scope="module")
def committed(database_server: Engine) -> Iterator[sessionmaker[Session]]:
    """A database of its own whose rows are committed (other processes must see them):
    a set "par" of 30 relaxations, rule all, 60:20:20."""
    url = _migrated_database(database_server, "atlas2d_export")
    engine = make_engine(url)
    sessions = make_sessions(engine)
    trajectories = synthetic_trajectories(30, (3, 8), (4, 9), seed=11, key_prefix="par")
    ingest_parsed(sessions, ParsedFile("par", "records", "", "test", trajectories=trajectories))
    create_training_set(
        sessions, "par", SelectionParameters(rule="all", split=(60.0, 20.0, 20.0), seed=2)
    )
    yield sessions
    engine.dispose()
    _drop_database(database_server, url)


@pytest.fixture
def in_parts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Any set goes to the processes, 7 frames a part; returns the pools started."""
    monkeypatch.setattr(trainset_export, "PARALLEL_MIN_FRAMES", 1)
    monkeypatch.setattr(trainset_export, "FRAMES_PER_PART", 7)
    started: list[int] = []
    start_pool = trainset_export._start_pool

    def counted(url: str, processes: int) -> Any:
        started.append(processes)
        return start_pool(url, processes)

    monkeypatch.setattr(trainset_export, "_start_pool", counted)
    return started


def _statements(sessions: sessionmaker[Session]) -> int:
    """Other connections of this database running the export's COPY."""
    with sessions.begin() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND query LIKE 'COPY (%'"
                    " AND state = 'active'"
                )
            ).scalar_one()
        )


def _nothing_left(out: Path, sessions: sessionmaker[Session]) -> None:
    assert multiprocessing.active_children() == []
    assert sorted(p.name for p in out.iterdir()) == []  # no split file, part or folder
    deadline = time.monotonic() + 10
    while _statements(sessions) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _statements(sessions) == 0


def test_processes_write_the_bytes_one_process_writes(
    committed: sessionmaker[Session], in_parts: list[int], tmp_path: Path
) -> None:
    alone = export_training_set(committed, "par", "mace", tmp_path / "alone", processes=1)
    assert in_parts == []
    parts = export_training_set(committed, "par", "mace", tmp_path / "parts", processes=2)
    assert in_parts == [2]
    assert {split: n for split, (_, n) in parts.items()} == {
        split: n for split, (_, n) in alone.items()
    }
    assert sum(n for _, n in parts.values()) > 3 * 7  # several parts in every split
    for split, (path, _) in parts.items():
        assert path.read_bytes() == alone[split][0].read_bytes(), split
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == SPLIT_FILES
    assert multiprocessing.active_children() == []


def test_a_frame_that_cannot_be_written_is_the_same_error_and_leaves_nothing(
    committed: sessionmaker[Session], in_parts: list[int], tmp_path: Path
) -> None:
    with committed.begin() as session:
        frame_id, cell = session.execute(
            text(
                "SELECT f.id, f.cell FROM frames f JOIN training_set_frames t ON t.frame_id = f.id"
                " WHERE t.split = 'train' ORDER BY f.id DESC LIMIT 1"
            )
        ).one()
        # The last part's frame: a 1-D cell passes the table's check but is no 3×3 matrix.
        session.execute(
            text("UPDATE frames SET cell = :cell WHERE id = :id"),
            {"cell": np.ravel(cell).tolist(), "id": frame_id},
        )
    try:
        errors = []
        for processes in (1, 2):
            out = tmp_path / f"p{processes}"
            with pytest.raises(InvalidInput, match="not 3×3") as error:
                export_training_set(committed, "par", "mace", out, processes=processes)
            errors.append(str(error.value))
            assert not (out / "train.xyz").exists()
        assert errors[0] == errors[1]
        assert in_parts == [2]
        for leftover in (tmp_path / "p2").iterdir():  # the splits before train, if any
            assert leftover.name in SPLIT_FILES and leftover.name != "train.xyz"
        assert multiprocessing.active_children() == []
    finally:
        with committed.begin() as session:
            session.execute(
                text("UPDATE frames SET cell = :cell WHERE id = :id"),
                {"cell": cell, "id": frame_id},
            )


def test_frames_gone_during_the_export_are_refused(
    committed: sessionmaker[Session],
    in_parts: list[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    split_frame_ids = training_sets.split_frame_ids

    def one_more(
        session: Session, training_set_id: int, split: str
    ) -> tuple[np.ndarray, np.ndarray]:
        ids, relaxations = split_frame_ids(session, training_set_id, split)  # type: ignore[arg-type]
        # A frame listed, then deleted before it was read.
        return np.append(ids, ids[-1] + 10**9), np.append(relaxations, relaxations[-1])

    monkeypatch.setattr(training_sets, "split_frame_ids", one_more)
    with pytest.raises(InvalidInput, match=r"changed during the export .* trainset verify par"):
        export_training_set(committed, "par", "mace", tmp_path / "out", processes=2)
    _nothing_left(tmp_path / "out", committed)


def test_ctrl_c_stops_the_processes_and_their_statements(
    committed: sessionmaker[Session],
    in_parts: list[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C reaches this process while it joins the first part; the others are running.
    monkeypatch.setattr(trainset_export, "_append", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_training_set(committed, "par", "mace", tmp_path / "out", processes=2)
    _nothing_left(tmp_path / "out", committed)


def _in_a_thread(export: Any, timeout_s: float = 90) -> BaseException | None:
    """Run ``export()`` in a thread; the exception it raised (None if none). A hang
    fails the test instead of the whole run."""
    raised: list[BaseException | None] = [None]

    def run() -> None:
        try:
            export()
        except BaseException as err:
            raised[0] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), "the export hangs"
    return raised[0]


_BATCH_TEXT = exporters._mace_batch_text


def _second_batch_refused(batch: Any) -> str | None:
    """The batch writer, refusing its second batch (in each process)."""
    _second_batch_refused.calls += 1  # type: ignore[attr-defined]
    if _second_batch_refused.calls == 2:  # type: ignore[attr-defined]
        raise InvalidInput("the writer refused a batch")
    return _BATCH_TEXT(batch)


@pytest.mark.parametrize("processes", [1, 2])
def test_a_writer_that_fails_part_way_ends_the_read_and_the_export(
    committed: sessionmaker[Session],
    in_parts: list[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    processes: int,
) -> None:
    # Many small batches: the read-ahead thread waits with a full queue when it fails.
    monkeypatch.setattr(training_sets, "SPLIT_FRAMES_BATCH", 2)
    monkeypatch.setattr(_second_batch_refused, "calls", 0, raising=False)
    monkeypatch.setattr(exporters, "_mace_batch_text", _second_batch_refused)
    out = tmp_path / "out"
    raised = _in_a_thread(
        lambda: export_training_set(committed, "par", "mace", out, processes=processes)
    )
    assert isinstance(raised, InvalidInput) and "refused a batch" in str(raised)
    _nothing_left(out, committed)
    assert not [t for t in threading.enumerate() if t.name == "atlas2d-read-ahead"]


def _killed_after_the_first_part(part: Any) -> int:
    """One worker killed (as by the kernel's OOM killer; its replacement lives) after
    the parent has waited for the first part (slow) and joined it."""
    if part.path.name == "train-0000.xyz":
        time.sleep(1.5)
    elif part.path.name == "train-0003.xyz":
        joined = part.path.parent.parent / ".train.xyz.part"
        deadline = time.monotonic() + 30
        while not (joined.exists() and joined.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
    return _WRITE_PART(part)


_WRITE_PART = trainset_export._write_part


def test_a_worker_killed_is_one_clear_error_not_a_hang(
    committed: sessionmaker[Session],
    in_parts: list[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trainset_export, "_write_part", _killed_after_the_first_part)
    out = tmp_path / "out"
    raised = _in_a_thread(lambda: export_training_set(committed, "par", "mace", out, processes=2))
    assert isinstance(raised, WorkerDied), raised
    assert "ended before its part was written" in str(raised) and "--processes 1" in str(raised)
    _nothing_left(out, committed)


# --- the installed command ------------------------------------------------------------


@pytest.fixture(scope="module")
def large_set_url(database_server: Engine) -> Iterator[str]:
    """A committed database whose set "big" (55,000 frames) the command writes by
    several processes (it is above ``PARALLEL_MIN_FRAMES``)."""
    url = _migrated_database(database_server, "atlas2d_export_big")
    engine = make_engine(url)
    sessions = make_sessions(engine)
    trajectories = synthetic_trajectories(2200, 25, (3, 20), seed=5, key_prefix="big")
    ingest_parsed(sessions, ParsedFile("big", "records", "", "test", trajectories=trajectories))
    create_training_set(sessions, "big", SelectionParameters(rule="all", split=(80.0, 10.0, 10.0)))
    engine.dispose()
    assert 2200 * 25 >= trainset_export.PARALLEL_MIN_FRAMES
    yield url
    _drop_database(database_server, url)


def _processes_writing(out: Path) -> list[int]:
    """Processes whose command line names ``out``."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(out).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:  # gone meanwhile
            continue
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_command_its_processes_and_leaves_no_file(
    large_set_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    out = tmp_path / "out"
    command = [atlas2d_script(), "trainset", "export", "big", "--format", "mace", "--out", str(out)]
    run = subprocess.Popen(
        [*command, "--processes", "2"],
        env=user_environment(ATLAS2D_DATABASE_URL=large_set_url, COLUMNS="200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    # Signal once a worker has written its first part: the processes are at work.
    deadline = time.monotonic() + 120
    while not list(out.glob(".export-*/train-*.xyz")) and run.poll() is None:
        assert time.monotonic() < deadline, "no part file appeared"
        time.sleep(0.02)
    if signum == signal.SIGINT:
        os.killpg(run.pid, signum)  # Ctrl-C: the terminal signals the whole group
    else:
        os.kill(run.pid, signum)  # a job scheduler signals the command
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 130, output
    assert output.strip().splitlines() == [
        "interrupted: stopped before the end; what it had committed stays, the statement "
        "running was cancelled on the server."
    ]
    assert list(out.iterdir()) == []
    assert _processes_writing(out) == []
