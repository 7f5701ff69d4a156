"""``atlas2d relax --scheduler`` on a real Dask cluster: a ``dask scheduler`` and two
``dask worker`` processes on localhost whose ``ATLAS2D_HOME`` is empty, so that each
worker loads the model from the database's copy, as a worker on another machine does."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from atlas2d.mlff.artifacts import sha256_of_file
from atlas2d.mlff.relax import RelaxSettings
from atlas2d.services.relax import RelaxRequest, relax
from tests.support.entry_point import atlas2d_script, user_environment

PLATFORM = Path(__file__).resolve().parents[2] / "platform"
MAX_STEPS = 11
"""A step limit no other test uses, so that these relaxations are new and findable."""
START_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _dask_script() -> str:
    found = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    assert found, "the dask console script is not installed (pip install distributed)"
    return found


@dataclass
class Cluster:
    address: str
    worker_homes: list[Path]


def _worker_environment(home: Path) -> dict[str, str]:
    """An empty ``ATLAS2D_HOME``, no database URL (the task carries it), one thread, and
    this checkout's package first."""
    python_path = os.pathsep.join(filter(None, [str(PLATFORM), os.environ.get("PYTHONPATH")]))
    return user_environment(
        ATLAS2D_HOME=str(home),
        ATLAS2D_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=python_path,
    )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):  # workers first, then the scheduler
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A scheduler and two single-threaded workers; all stopped however the test ends."""
    from dask.distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = _dask_script()
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    homes = [tmp_path / f"worker-{i}" for i in range(2)]
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, arguments: list[str], env: dict[str, str]) -> None:
        with (logs / f"{name}.log").open("wb") as log:
            processes.append(
                subprocess.Popen([dask, *arguments], env=env, stdout=log, stderr=subprocess.STDOUT)
            )

    try:
        start(
            "scheduler",
            ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            user_environment(),
        )
        for index, home in enumerate(homes):
            home.mkdir()
            start(
                f"worker-{index}",
                [
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-nanny",  # the worker is the process: quick to start and stop
                    "--no-dashboard",
                    "--name",
                    f"worker-{index}",
                    "--local-directory",
                    str(tmp_path / f"dask-{index}"),
                ],
                _worker_environment(home),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # the scheduler accepts connections a moment after it starts
            try:
                client = Client(address, timeout="5s")
                break
            except OSError:
                if time.monotonic() > deadline or processes[0].poll() is not None:
                    raise
                time.sleep(0.5)
        try:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        finally:
            client.close()
        yield Cluster(address, homes)
    except BaseException:
        for log in sorted(logs.iterdir()):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        _stop(processes)


def _final_energies(sessions: sessionmaker, model_id: int) -> dict[str, float]:  # type: ignore[type-arg]
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT m.key, r.final_energy FROM relaxations r"
                " JOIN materials m ON m.id = r.material_id"
                " WHERE r.method = 'ml' AND r.model_version_id = :model"
                " AND r.parameters ->> 'max_steps' = :steps"
            ),
            {"model": model_id, "steps": str(MAX_STEPS)},
        )
        return {key: energy for key, energy in rows}


@pytest.mark.slow
def test_relax_on_a_scheduler_whose_workers_have_no_model_file(
    trained_registry,  # type: ignore[no-untyped-def]
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    with trained_registry.sessions.begin() as session:
        model_id, sha256 = session.execute(
            text(
                "SELECT id, artifact_sha256 FROM model_versions"
                " WHERE name = 'tiny-mace' AND version = 1"
            )
        ).one()
    # The same relaxations in this process, in a transaction that is rolled back.
    connection = trained_registry.engine.connect()
    outer = connection.begin()
    try:
        local = sessionmaker(bind=connection, join_transaction_mode="create_savepoint")
        request = RelaxRequest(
            "tiny-mace:1",
            training_set="layers",
            split="val",
            chunk_size=1,
            settings=RelaxSettings(fmax=2e-3, max_steps=MAX_STEPS),
        )
        assert relax(local, request, trained_registry.artifacts_dir).relaxed == 4
        expected = _final_energies(local, model_id)
    finally:
        outer.rollback()
        connection.close()

    client_home = tmp_path / "client"
    client_home.mkdir()
    result = subprocess.run(
        [
            atlas2d_script(),
            "relax",
            "--model",
            "tiny-mace:1",
            "--trainset",
            "layers",
            "--split",
            "val",
            "--chunk-size",
            "1",
            "--fmax",
            "0.002",
            "--steps",
            str(MAX_STEPS),
            "--scheduler",
            cluster.address,
        ],
        env=_worker_environment(client_home) | {"ATLAS2D_DATABASE_URL": trained_registry.url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 requested, 0 already done, 4 relaxed" in result.stdout
    stored = _final_energies(trained_registry.sessions, model_id)
    assert stored.keys() == expected.keys() and len(stored) == 4
    for key, energy in expected.items():
        assert stored[key] == pytest.approx(energy, abs=1e-6), key
    # The workers fetched the model file from the database into their empty homes; the
    # submitting command never loaded it.
    cached = [
        p for home in cluster.worker_homes for p in (home / "artifacts").rglob("*") if p.is_file()
    ]
    assert cached and all(sha256_of_file(p) == sha256 for p in cached)
    assert not (client_home / "artifacts").exists()
