"""The activity log end to end, through the installed ``atlas2d`` console script in a
subprocess (as a user runs it) on a database of its own (``ATLAS2D_DATABASE_URL``).

Every write command leaves one activity: who, where, which code, when, how it ended and
the rows it inserted per table, which must equal the rows that carry its ``activity_id``
(counted here from the tables themselves). A failing command leaves ``failed`` with its
one-line error; SIGTERM and Ctrl-C leave ``failed`` (interrupted) with the rows of the
chunks committed before; ``kill -9`` leaves ``running``, which ``activity list`` shows as
"process gone". ``activity list|show`` are read back in every format.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, mx2
from sqlalchemy import Engine, text

from atlas2d.db.session import make_engine
from atlas2d.io.records import Trajectory
from atlas2d.services.activities import INTERRUPTED
from atlas2d.services.activity_log import PROCESS_GONE
from tests.conftest import _drop_database, _migrated_database
from tests.support.activities import activities_after, last_activity_id, stored_by
from tests.support.entry_point import atlas2d_script, user_environment
from tests.support.synthetic import alexandria_document, synthetic_trajectories

POLL_S = 0.05
WAIT_S = 180.0


@dataclass
class Run:
    """An ``atlas2d`` process started in the background (its own process group)."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass
class Log:
    """A migrated database of this module's own, and how to run ``atlas2d`` on it."""

    url: str
    engine: Engine
    """For the tests' own reads (AUTOCOMMIT, short)."""
    home: Path

    def environment(self) -> dict[str, str]:
        return user_environment(
            ATLAS2D_DATABASE_URL=self.url, ATLAS2D_HOME=str(self.home), ATLAS2D_NUM_THREADS="1"
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [atlas2d_script(), *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def start(self, *args: str) -> Run:
        """Start ``atlas2d`` in a process group of its own, its output in a file (a pipe
        nobody reads could block it), Ctrl-C's default action restored (a shell runs
        background jobs with SIGINT ignored, and Python would keep ignoring it)."""
        log = self.home / f"run-{uuid.uuid4().hex[:8]}.log"
        self.home.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [atlas2d_script(), *args],
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
        return Run(process, log)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def last_id(self) -> int:
        return last_activity_id(self.engine)

    def activities_after(self, last_id: int) -> list[dict[str, Any]]:
        return activities_after(self.engine, last_id)

    def activity(self, activity_id: int) -> dict[str, Any]:
        (found,) = [a for a in self.activities_after(activity_id - 1) if a["id"] == activity_id]
        return found

    def only_activity_after(self, last_id: int) -> dict[str, Any]:
        (activity,) = self.activities_after(last_id)
        return activity

    def stored_by(self, activity_id: int) -> dict[str, int]:
        return stored_by(self.engine, activity_id)

    def wait_for(self, sql: str, run: Run, **params: Any) -> Any:
        """Poll until ``sql`` returns a value (not NULL, not 0) while ``run`` runs."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            value = self.scalar(sql, **params)
            if value:
                return value
            assert run.process.poll() is None, f"ended before: {run.output()}"
            time.sleep(POLL_S)
        pytest.fail(f"waited {WAIT_S:.0f} s for {sql!r}: {run.output()}")


@pytest.fixture(scope="module")
def log(database_server: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    url = _migrated_database(database_server, "atlas2d_activities")
    engine = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    made = Log(url, engine, tmp_path_factory.mktemp("activities") / "home")
    try:
        yield made
    finally:
        engine.dispose()
        _drop_database(database_server, url)


def layers_file(folder: Path, key_prefix: str, n_materials: int = 3) -> Path:
    """A small Alexandria trajectory file whose materials are keyed ``{key_prefix}-…``."""
    trajectories = synthetic_trajectories(
        n_materials, 5, 3, seed=len(key_prefix), key_prefix=key_prefix
    )
    path = folder / f"{key_prefix}.json"
    path.write_text(json.dumps(alexandria_document(trajectories)))
    return path


# eV/atom: elements, then 2H layers 1 eV/atom below them (all on their hulls)
ELEMENTS = {"Mo": -10.9, "W": -12.9, "S": -4.1, "Se": -3.5}
LAYERS = {"MoS2": 3.18, "WS2": 3.19, "MoSe2": 3.32}


def _relaxed(key: str, atoms: Atoms, energy_per_atom: float) -> Trajectory:
    n = len(atoms)
    return Trajectory(
        material_key=key,
        species=atoms.get_atomic_numbers(),
        cells=np.array(atoms.cell)[None],
        positions=atoms.positions[None],
        energies=np.array([energy_per_atom * n]),
        forces=np.zeros((1, n, 3)),
        stresses=np.zeros((1, 3, 3)),
        parameters={"functional": "PBE"},
        record=key,
        converged=True,
    )


def hull_file(folder: Path) -> Path:
    """Elemental references and three 2H layers on their hulls (for hulls, generation)."""
    trajectories = [
        _relaxed(f"ref-{e}", bulk(e, "bcc", a=3.2) if e in ("Mo", "W") else bulk(e, "sc", a=2.6), v)
        for e, v in ELEMENTS.items()
    ]
    for formula, a in LAYERS.items():
        atoms = mx2(formula, kind="2H", a=a, thickness=3.19, vacuum=8.0)
        atoms.pbc = True
        mean = np.mean([ELEMENTS[s] for s in atoms.get_chemical_symbols()])
        trajectories.append(_relaxed(f"layer-{formula}", atoms, float(mean) - 1.0))
    path = folder / "hull.json"
    path.write_text(json.dumps(alexandria_document(trajectories)))
    return path


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line on stderr without its ``error:`` prefix (no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


def assert_succeeded(log: Log, activity: dict[str, Any], command: str) -> None:
    """A closed, successful activity of ``command`` run by this user on this host,
    whose rows written are the rows that carry it."""
    assert activity["command"] == command
    assert activity["status"] == "succeeded" and activity["error"] is None
    assert activity["finished_at"] >= activity["started_at"]
    assert activity["host"] == socket.gethostname() and activity["pid"] > 0
    assert activity["os_user"] and activity["atlas2d_version"] == metadata.version("atlas2d")
    assert activity["rows_written"] == log.stored_by(activity["id"])


def test_ingest_is_one_activity_with_the_rows_it_wrote(log: Log, tmp_path: Path) -> None:
    path = layers_file(tmp_path, "ingested", n_materials=3)
    before = log.last_id()
    result = log.run("ingest", str(path))
    assert result.returncode == 0, result.stderr
    activity = log.only_activity_after(before)
    assert_succeeded(log, activity, "ingest")
    # 3 materials of 5 steps each, counted independently of the trigger.
    assert activity["rows_written"] == {
        "sources": 1,
        "materials": 3,
        "relaxations": 3,
        "frames": 15,
    }
    assert activity["arguments"]["paths"] == [str(path)]
    assert activity["arguments"]["format"] == "auto"
    keys = log.scalar(
        "SELECT array_agg(key ORDER BY key) FROM materials WHERE activity_id = :a",
        a=activity["id"],
    )
    assert keys == [f"ingested-{i:06d}" for i in range(3)]

    again = log.run("ingest", str(path))
    assert again.returncode == 0 and "already present" in again.stdout
    second = log.only_activity_after(activity["id"])
    assert_succeeded(log, second, "ingest")
    assert second["rows_written"] == {}
    assert log.scalar("SELECT count(*) FROM sources WHERE path = :p", p=str(path)) == 1


def test_trainset_create_records_its_rows_and_a_taken_name_fails(log: Log, tmp_path: Path) -> None:
    path = layers_file(tmp_path, "trainset", n_materials=4)
    assert log.run("ingest", str(path)).returncode == 0
    before = log.last_id()
    args = ("trainset", "create", "act-set", "--ecut", "1e6", "--source", str(path))
    created = log.run(*args)
    assert created.returncode == 0, created.stderr
    activity = log.only_activity_after(before)
    assert_succeeded(log, activity, "trainset create")
    assert activity["rows_written"] == {"training_sets": 1, "training_set_relaxations": 4}
    assert activity["arguments"]["name"] == "act-set" and activity["arguments"]["ecut"] == 1e6
    owner = log.scalar("SELECT activity_id FROM training_sets WHERE name = 'act-set'")
    assert owner == activity["id"]

    taken = log.run(*args)
    assert taken.returncode == 1
    error = one_error_line(taken)
    failed = log.only_activity_after(activity["id"])
    assert failed["command"] == "trainset create" and failed["status"] == "failed"
    assert failed["error"] == error and "act-set" in error
    assert failed["rows_written"] == {} and failed["finished_at"] is not None
    assert log.scalar("SELECT count(*) FROM training_sets WHERE name = 'act-set'") == 1


def test_hull_update_and_generation_record_their_rows(log: Log, tmp_path: Path) -> None:
    assert log.run("ingest", str(hull_file(tmp_path))).returncode == 0
    before = log.last_id()
    hull = log.run("hull", "update")
    assert hull.returncode == 0, hull.stderr
    activity = log.only_activity_after(before)
    assert_succeeded(log, activity, "hull update")
    assert activity["rows_written"]["hull_runs"] == 1
    assert activity["rows_written"]["stability"] >= len(ELEMENTS) + len(LAYERS)
    assert activity["arguments"]["energy"] == "dft"

    generated = log.run(
        "generate", "substitute", "--pool", "act", "--material", "layer-MoS2", "--threshold", "0.01"
    )
    assert generated.returncode == 0, generated.stderr
    generation = log.only_activity_after(activity["id"])
    assert_succeeded(log, generation, "generate substitute")
    assert generation["rows_written"]["candidate_pools"] == 1
    assert generation["rows_written"]["pool_candidates"] > 0
    decorated = log.run(
        "generate", "decorate", "--pool", "act-d", "--prototype", "layer-MoS2", "--elements", "W,Se"
    )
    assert decorated.returncode == 0, decorated.stderr
    assert_succeeded(log, log.only_activity_after(generation["id"]), "generate decorate")


def _label_file(folder: Path, key_prefix: str, n: int = 60) -> Path:
    """``n`` distinct WS2 layers (lattice constants apart), to label a few steps each:
    about 0.3 s each with CHGNet, so a run lasts long after its first chunk commits."""
    offset = sum(map(ord, key_prefix)) % 97 * 1e-4
    layers = []
    for i in range(n):
        layer = mx2("WS2", a=3.2 + offset + 0.002 * i, thickness=3.1, vacuum=8.0)
        layer.pbc = True
        layer.info["material_key"] = f"{key_prefix}-{i:03d}"
        layers.append(layer)
    path = folder / f"{key_prefix}.extxyz"
    ase.io.write(path, layers, format="extxyz")
    return path


LABEL_ARGS = ("--steps", "3", "--fmax", "1e-9", "--chunk-size", "2")


def _start_label(log: Log, folder: Path, key_prefix: str) -> tuple[Run, int]:
    """Start ``label`` on many layers; return it and its activity once it has committed
    its first chunk (rows counted for the activity)."""
    before = log.last_id()
    path = _label_file(folder, key_prefix)
    run = log.start("label", "--from-file", str(path), *LABEL_ARGS)
    activity_id = log.wait_for(
        "SELECT max(id) FROM activities WHERE id > :last AND command = 'label'", run, last=before
    )
    log.wait_for("SELECT count(*) FROM activity_rows WHERE activity_id = :a", run, a=activity_id)
    return run, int(activity_id)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_command_is_failed_with_what_it_committed(
    log: Log, tmp_path: Path, signum: signal.Signals
) -> None:
    run, activity_id = _start_label(log, tmp_path, f"int{signum.value}")
    os.kill(run.process.pid, signum)
    code = run.process.wait(timeout=120)
    assert code == 130, run.output()  # as Ctrl-C; typer's code for an interruption
    assert run.output().strip().splitlines()[-1].startswith("interrupted:")
    activity = log.activity(activity_id)
    assert activity["status"] == "failed" and activity["error"] == INTERRUPTED
    assert activity["finished_at"] is not None
    written = activity["rows_written"]
    # The chunks committed before the signal, and nothing of the chunk in progress.
    assert written == log.stored_by(activity_id)
    assert 0 < written["relaxations"] < 60 and written["materials"] == written["relaxations"]


@pytest.mark.slow
def test_a_killed_command_stays_running_and_is_shown_as_gone(log: Log, tmp_path: Path) -> None:
    run, activity_id = _start_label(log, tmp_path, "killed")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.process.pid, signal.SIGKILL)
    run.process.wait(timeout=60)
    # Rows committed after the first were counted: wait for nothing, read what is there.
    stored = log.stored_by(activity_id)
    assert stored["relaxations"] > 0
    assert log.scalar("SELECT status FROM activities WHERE id = :a", a=activity_id) == "running"

    listed = log.run("activity", "list", "--status", "running", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [r for r in json.loads(listed.stdout) if r["id"] == activity_id]
    assert row["status"] == PROCESS_GONE and row["finished_at"] is None
    assert row["duration_s"] is None and row["rows_written"] == stored
    table = log.run("activity", "list", "--command", "label")
    assert PROCESS_GONE in " ".join(table.stdout.split())  # the table may fold the cell

    shown = log.run("activity", "show", str(activity_id), "--format", "json")
    document = json.loads(shown.stdout)
    assert document["status"] == "running" and document["process_gone"] is True
    assert document["rows_written"] == stored  # counted live from activity_rows
    text_view = log.run("activity", "show", str(activity_id))
    assert "rows written so far:" in text_view.stdout and "not finished" in text_view.stdout


def test_list_and_show_in_every_format(log: Log, tmp_path: Path) -> None:
    path = layers_file(tmp_path, "listed", n_materials=2)
    before = log.last_id()
    assert log.run("ingest", str(path)).returncode == 0
    activity = log.only_activity_after(before)

    listed = log.run("activity", "list", "--command", "ingest", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, reverse=True) and ids[0] == activity["id"]
    assert {r["command"] for r in rows} == {"ingest"}
    newest = rows[0]
    assert newest["status"] == "succeeded" and newest["error"] is None
    assert newest["rows_written"] == activity["rows_written"]
    assert newest["pid"] == activity["pid"] and newest["host"] == activity["host"]
    assert newest["user"] == activity["os_user"]
    assert newest["duration_s"] == pytest.approx(
        (activity["finished_at"] - activity["started_at"]).total_seconds()
    )
    from datetime import datetime

    assert datetime.fromisoformat(newest["started_at"]) == activity["started_at"]

    csv = log.run("activity", "list", "--limit", "1", "--format", "csv")
    lines = csv.stdout.splitlines()
    assert lines[0] == (
        "id,command,status,user,host,pid,started_at,finished_at,duration_s,rows_written,error"
    )
    assert len(lines) == 2 and lines[1].startswith(f"{activity['id']},ingest,succeeded,")
    assert '"{""sources"": 1, ""materials"": 2, ""relaxations"": 2, ""frames"": 10}"' in lines[1]
    total = log.scalar("SELECT count(*) FROM activities")
    assert csv.stderr.strip() == (
        f"showing 1 of {total:,} activities (newest first; --limit to see more)"
    )

    table = log.run("activity", "list", "--limit", "2")
    assert table.returncode == 0
    flat = " ".join(table.stdout.split())
    assert f"showing 2 of {total:,} activities" in flat
    assert "sources 1, materials 2, relaxations 2, frames 10" in flat
    failed = log.run("activity", "list", "--status", "failed", "--format", "json")
    assert all(r["status"] == "failed" for r in json.loads(failed.stdout))
    group = log.run("activity", "list", "--command", "trainset", "--format", "json")
    assert all(r["command"].startswith("trainset ") for r in json.loads(group.stdout))
    none = log.run("activity", "list", "--command", "ingest x", "--format", "json")
    assert none.returncode == 0 and json.loads(none.stdout) == []

    shown = log.run("activity", "show", str(activity["id"]), "--format", "json")
    assert shown.returncode == 0
    document = json.loads(shown.stdout)
    assert document["arguments"] == activity["arguments"]
    assert document["rows_written"] == {
        "sources": 1,
        "materials": 2,
        "relaxations": 2,
        "frames": 10,
    }
    assert document["git_commit"] == activity["git_commit"] and document["process_gone"] is False
    people = log.run("activity", "show", str(activity["id"]))
    out = people.stdout
    assert out.startswith(f"activity {activity['id']}: ingest  succeeded")
    assert f'  paths: ["{path}"]' in out and "  skip_bad: false" in out
    assert "rows written:\n  sources 1\n  materials 2\n  relaxations 2\n  frames 10" in out
    assert f"atlas2d {metadata.version('atlas2d')}" in out


def test_bad_requests_exit_with_one_line(log: Log) -> None:
    missing = log.run("activity", "show", "999999")
    assert missing.returncode == 1
    assert "No activity 999999" in one_error_line(missing)
    assert log.run("activity", "list", "--status", "lost").returncode == 2
    assert log.run("activity", "list", "--limit", "0").returncode == 2
    assert log.run("activity", "show", "1", "--format", "csv").returncode == 2
    assert log.run("activity", "show", "one").returncode == 2
    # Reading the log is not an activity.
    before = log.last_id()
    assert log.run("activity", "list").returncode == 0
    assert log.last_id() == before
