"""Every command that writes is logged as one activity named after it: real runs of
``train``, ``predict``, ``relax`` (in this process and on Dask workers), ``evaluate``,
``hull update``, ``label``, ``al create`` and ``al run`` record the rows they wrote,
which carry their ``activity_id``; each write command that fails after connecting is
recorded ``failed`` with its one-line error.

In-process (CliRunner, cheaper than a subprocess per command), through the real
``connect()`` (``ATLAS2D_DATABASE_URL``), on a copy of ``trained_registry``'s database
(it holds the training set ``layers`` and the ready ``tiny-m3gnet:1`` and
``tiny-mace:1``): the runs commit, and the copy keeps them from the other tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase.io
import pytest
from ase.build import mx2
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from atlas2d.db.session import make_engine
from tests.conftest import VASP_DATA, TrainedRegistry, _drop_database
from tests.support.activities import activities_after, last_activity_id, stored_by

X_SPECIES = str(VASP_DATA / "Cl8F88Sb16X8_relax_vasprun.xml.gz")


@dataclass
class Copy:
    """A copy of the trained registry's database and the folder of its artifacts."""

    url: str
    engine: Engine
    home: Path


@pytest.fixture(scope="module")
def registry_copy(trained_registry: TrainedRegistry, database_server: Engine) -> Iterator[Copy]:
    template = make_engine(trained_registry.url).url.database
    name = f"activities_{uuid.uuid4().hex[:8]}"
    trained_registry.engine.dispose()
    with database_server.connect() as connection:
        # A template is copied only while nobody is connected to it (its pooled
        # connections reconnect when next used: pool_pre_ping).
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": template},
        )
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    url = database_server.url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        yield Copy(url, engine, trained_registry.artifacts_dir.parent)
    finally:
        engine.dispose()
        _drop_database(database_server, url)


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def atlas2d_cli(
    registry_copy: Copy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Run]:
    """``run(*args) -> (exit code, stdout, error)`` on the copy, through ``connect()``."""
    from atlas2d import config
    from atlas2d.cli.main import typer_app
    from atlas2d.errors import Atlas2dError

    monkeypatch.setenv("ATLAS2D_DATABASE_URL", registry_copy.url)
    monkeypatch.setenv("ATLAS2D_HOME", str(registry_copy.home))
    monkeypatch.setenv("ATLAS2D_LOG_FILE", str(tmp_path / "atlas2d.log"))
    config.get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(typer_app, list(args), env={"COLUMNS": "200"})
        if isinstance(result.exception, Atlas2dError):
            return 1, result.stdout, str(result.exception)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    yield run
    config.get_settings.cache_clear()


def _recorded(copy: Copy, before: int, command: str) -> dict[str, Any]:
    """The one activity after ``before``: ``command``, succeeded, its rows written
    equal to the rows that carry it."""
    (activity,) = activities_after(copy.engine, before)
    assert activity["command"] == command
    assert activity["status"] == "succeeded", activity["error"]
    assert activity["rows_written"] == stored_by(copy.engine, activity["id"])
    return activity


def test_train_predict_relax_evaluate_and_hulls_record_their_rows(
    registry_copy: Copy, atlas2d_cli: Run, tmp_path: Path
) -> None:
    copy = registry_copy
    tiny = ["--cutoff", "4", "--threebody-cutoff", "3.5", "--units", "8", "--nblocks", "1"]
    before = last_activity_id(copy.engine)
    code, _, err = atlas2d_cli(
        *["train", "--arch", "m3gnet", "--trainset", "layers", "--name", "act-m3gnet"],
        *["--epochs", "1", "--batch-size", "4", "--seed", "3", *tiny],
    )
    assert code == 0, err
    trained = _recorded(copy, before, "train")
    # The version, and its predictions on the held-out splits (its metrics).
    assert trained["rows_written"]["model_versions"] == 1
    assert set(trained["rows_written"]) == {"model_versions", "frame_predictions"}
    assert trained["arguments"]["name"] == "act-m3gnet" and trained["arguments"]["epochs"] == 1

    code, _, err = atlas2d_cli(
        "predict", "--model", "act-m3gnet", "--trainset", "layers", "--split", "train"
    )
    assert code == 0, err
    predicted = _recorded(copy, trained["id"], "predict")
    assert predicted["rows_written"] == {"frame_predictions": 24}  # the train split's frames

    relax_args = ["--model", "tiny-mace:1", "--trainset", "layers", "--split", "val"]
    relax_args += ["--fmax", "0.002", "--steps", "15"]
    code, _, err = atlas2d_cli("relax", *relax_args, "--engine", "batched")
    assert code == 0, err
    relaxed = _recorded(copy, predicted["id"], "relax")
    assert relaxed["rows_written"] == {"relaxations": 4, "frames": 4}  # final frames only

    code, _, err = atlas2d_cli("evaluate", *relax_args, "--report", str(tmp_path / "report"))
    assert code == 0, err
    evaluated = _recorded(copy, relaxed["id"], "evaluate")
    assert evaluated["rows_written"] == {"evaluations": 1}

    code, _, err = atlas2d_cli("hull", "update", "--energy", "tiny-mace:1")
    assert code == 0, err
    hull = _recorded(copy, evaluated["id"], "hull update")
    assert hull["rows_written"]["hull_runs"] == 1
    assert hull["arguments"]["energy"] == "tiny-mace:1"


def test_label_and_a_campaign_record_their_rows(
    registry_copy: Copy, atlas2d_cli: Run, tmp_path: Path
) -> None:
    copy = registry_copy
    layers = []
    for i, a in enumerate((3.18, 3.22)):
        layer = mx2("MoS2", a=a, thickness=3.1, vacuum=8.0)
        layer.pbc = True
        layer.info["material_key"] = f"act-label-{i}"
        layers.append(layer)
    path = tmp_path / "layers.extxyz"
    ase.io.write(path, layers, format="extxyz")
    before = last_activity_id(copy.engine)
    code, _, err = atlas2d_cli("label", "--from-file", str(path), "--steps", "2")
    assert code == 0, err
    labelled = _recorded(copy, before, "label")
    written = labelled["rows_written"]
    assert written["relaxations"] == 2 and written["materials"] == 2
    assert written["frames"] >= 2 and written["sources"] >= 1

    # The copy has no elemental references, hence no hull: `al run` relaxes and screens
    # the candidates, selects none, labels nothing (VASP labels: no labeller either)
    # and trains nothing; its iteration is done.
    candidates = tmp_path / "candidates.extxyz"
    for layer, key in zip(layers, ("act-c0", "act-c1"), strict=True):
        layer.info["material_key"] = key
    ase.io.write(candidates, layers, format="extxyz")
    code, _, err = atlas2d_cli(
        *["al", "create", "act-c", "--model", "tiny-mace:1", "--generator", f"file:{candidates}"],
        *["--labeller", "vasp", "--labels-dir", str(tmp_path / "vasp"), "--budget", "1"],
        *["--threshold", "1000", "--relax-steps", "5", "--engine", "ase"],
    )
    assert code == 0, err
    created = _recorded(copy, labelled["id"], "al create")
    assert created["rows_written"] == {"al_campaigns": 1}
    code, out, err = atlas2d_cli("al", "run", "act-c")
    assert code == 0, err
    assert "finished iteration 1" in out
    ran = _recorded(copy, created["id"], "al run")
    assert ran["rows_written"]["al_iterations"] == 1
    assert ran["rows_written"]["al_candidates"] == 2
    assert ran["rows_written"]["relaxations"] == 2  # the ML relaxations of the candidates


@pytest.mark.slow
def test_relaxations_on_dask_workers_carry_the_activity(
    registry_copy: Copy, atlas2d_cli: Run
) -> None:
    copy = registry_copy
    before = last_activity_id(copy.engine)
    code, _, err = atlas2d_cli(
        *["relax", "--model", "tiny-m3gnet:1", "--trainset", "layers", "--split", "test"],
        *["--fmax", "0.002", "--steps", "12", "--engine", "ase", "--chunk-size", "1"],
        *["--workers", "2"],
    )
    assert code == 0, err
    relaxed = _recorded(copy, before, "relax")
    # Written by the workers' own connections, and counted for the command's activity.
    assert relaxed["rows_written"] == {"relaxations": 4, "frames": 4}
    assert relaxed["arguments"]["workers"] == 2


def _write_commands() -> dict[str, Callable[..., Any]]:
    """{command path: callback} of every command marked ``@writes``."""
    from atlas2d.cli.main import typer_app

    found: dict[str, Callable[..., Any]] = {}

    def walk(app: Any, prefix: str) -> None:
        for info in app.registered_commands:
            name = info.name or info.callback.__name__.replace("_", "-")
            if hasattr(info.callback, "__wrapped__"):  # functools.wraps of @writes
                found[f"{prefix}{name}"] = info.callback
        for group in app.registered_groups:
            walk(group.typer_instance, f"{prefix}{group.name} ")

    walk(typer_app, "")
    return found


FAILING_RUNS = {
    "ingest": ("ingest", X_SPECIES),
    "trainset create": ("trainset", "create", "layers", "--ecut", "1e6"),
    "train": ("train", "--arch", "m3gnet", "--trainset", "no-such-set", "--name", "x"),
    "predict": ("predict", "--model", "no-such-model", "--trainset", "layers"),
    "relax": ("relax", "--model", "no-such-model", "--trainset", "layers"),
    "evaluate": ("evaluate", "--model", "no-such-model", "--stability"),
    "label": ("label", "--pool", "no-such-pool"),
    "hull update": ("hull", "update", "--energy", "no-such-model"),
    "generate substitute": ("generate", "substitute", "--pool", "p", "--material", "no-such"),
    "generate decorate": (
        *("generate", "decorate", "--pool", "p", "--prototype", "no-such"),
        *("--elements", "Mo,S"),
    ),
    "al create": ("al", "create", "c", "--model", "no-such-model"),
    "al run": ("al", "run", "no-such-campaign"),
    "alloys formation": ("alloys", "formation", "--system", "Mo-W-S"),
    "alloys enumerate": ("alloys", "enumerate", "--system", "Mo-W-S", "--prototype", "2H"),
    "alloys compare": ("alloys", "compare", "--system", "Mo-W-S", "--trainset", "no-such-set"),
    "alloys fit-ce": (
        *("alloys", "fit-ce", "--system", "Mo-W-S", "--trainset", "no-such-set"),
        *("--name", "ce"),
    ),
}
"""A run of each write command that fails after connecting (bad input the database
tells), writing nothing."""


def test_every_write_command_is_tried_here() -> None:
    assert set(_write_commands()) == set(FAILING_RUNS)


@pytest.mark.parametrize("command", sorted(FAILING_RUNS))
def test_a_failing_write_command_is_recorded_failed(
    registry_copy: Copy, atlas2d_cli: Run, command: str
) -> None:
    before = last_activity_id(registry_copy.engine)
    code, _, err = atlas2d_cli(*FAILING_RUNS[command])
    assert code == 1
    (activity,) = activities_after(registry_copy.engine, before)
    assert activity["command"] == command and activity["status"] == "failed"
    assert activity["error"] == " ".join(err.split()) and "\n" not in activity["error"]
    assert activity["rows_written"] == {} and activity["finished_at"] is not None
