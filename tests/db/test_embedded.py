"""Stopping the embedded PostgreSQL: for real, even after a process using it was killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from atlas2d.db.embedded import stop_embedded
from tests.support.entry_point import atlas2d_script

START_AND_HANG = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from atlas2d.db.embedded import embedded_url\n"
    "print(embedded_url(Path(sys.argv[1])), flush=True)\n"
    "time.sleep(300)\n"
)


def _atlas2d(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS2D_")}
    env["ATLAS2D_HOME"] = str(home)
    return subprocess.run(
        [atlas2d_script(), *args], env=env, capture_output=True, text=True, timeout=120
    )


def _postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent to reap it has exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_db_stop_stops_a_server_whose_user_was_killed(tmp_path: Path) -> None:
    """A process holding a pgserver handle dies by SIGKILL: its pid stays in
    ``.handle_pids.json`` and pgserver would keep the server for it. ``db stop`` used to
    print "stopped" and leave the server running."""
    home = tmp_path / "home"
    pgdata = home / "pgdata"
    pgdata.parent.mkdir(parents=True)
    user = subprocess.Popen(
        [sys.executable, "-c", START_AND_HANG, str(pgdata)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert user.stdout is not None and user.stderr is not None
        if not user.stdout.readline().startswith("postgresql"):
            user.kill()
            pytest.fail(f"the embedded server did not start: {user.stderr.read()}")
        user.send_signal(signal.SIGKILL)
        user.wait()
        assert json.loads((pgdata / ".handle_pids.json").read_text()) == [user.pid]
        postmaster = _postmaster_pid(pgdata)
        assert not _gone(postmaster)

        stopped = _atlas2d(home, "db", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.startswith(
            f"Embedded PostgreSQL stopped (postmaster pid {postmaster})"
        )
        assert "despite 1 stale handle of killed processes" in stopped.stdout
        assert not (pgdata / "postmaster.pid").exists()
        assert _gone(postmaster)
        assert json.loads((pgdata / ".handle_pids.json").read_text()) == []

        again = _atlas2d(home, "db", "stop")
        assert (again.returncode, again.stdout.strip()) == (
            0,
            "The embedded PostgreSQL was not running.",
        )
    finally:
        user.kill()
        user.wait()
        if (pgdata / "postmaster.pid").exists():  # the fix failed: do not leak a server
            with contextlib.suppress(ProcessLookupError):
                os.kill(_postmaster_pid(pgdata), signal.SIGINT)


def test_a_stale_postmaster_pid_is_not_a_running_server(tmp_path: Path) -> None:
    """After a crash of the whole machine ``postmaster.pid`` names a dead process: the
    server is reported as not running, and stopping it never starts one."""
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (pgdata / "postmaster.pid").write_text(f"{dead.pid}\n{pgdata}\n0\n5432\n{pgdata}\n\n\nready\n")
    (pgdata / ".handle_pids.json").write_text(json.dumps([dead.pid]))

    report = stop_embedded(pgdata)

    assert (report.stopped_pid, report.stale_handles, report.live_handles) == (None, 1, 0)
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == []
    assert not (pgdata / "PG_VERSION").exists()  # no cluster was made, no server started
