"""``atlas2d serve`` through the installed command: a port it cannot listen on and a
database it cannot reach are each one line and exit code 1, before anything is served.
(Ctrl-C on a running server: tests/serve/test_optimade.py.)"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.support.entry_point import atlas2d_script, user_environment
from tests.support.served import free_port

UNREACHABLE = "postgresql://nobody:secret@127.0.0.1:1/nothing"
"""A server nobody listens for (port 1)."""


def _serve(home: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = user_environment(
        ATLAS2D_HOME=str(home),
        ATLAS2D_DATABASE_URL=UNREACHABLE,
        ATLAS2D_READER_DATABASE_URL=UNREACHABLE,
    )
    return subprocess.run(
        [atlas2d_script(), "serve", *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""  # no "serving …" line
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = _one_error_line(_serve(tmp_path, "--port", str(port)))
    assert f"Cannot listen on 127.0.0.1 port {port}: another program listens on it" in line
    assert "--port" in line


def test_an_address_of_another_machine_is_one_line(tmp_path: Path) -> None:
    # 192.0.2.0/24 is reserved for documentation: no machine of ours has it.
    line = _one_error_line(_serve(tmp_path, "--host", "192.0.2.1", "--port", "8000"))
    assert "192.0.2.1 is no address of this machine" in line


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    line = _one_error_line(_serve(tmp_path, "--port", str(free_port())))
    assert "Cannot connect" in line and "ATLAS2D_READER_DATABASE_URL" in line
