"""Quiet by default: ``train`` and ``predict`` show atlas2d's own lines only; Lightning's
banners, matgl's "Processing..." bars, e3nn's and mace's import notices go to the run's
``chatter.log`` or ``$ATLAS2D_HOME/logs/COMMAND.log``, and ``--verbose`` shows them.

Run as a user would (``python -m atlas2d.cli.main`` in a subprocess, with the package
next to this file first on ``PYTHONPATH``) on a fresh embedded PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TINY_M3GNET, TINY_MACE
from tests.support.entry_point import user_environment
from tests.support.synthetic import alexandria_document, synthetic_trajectories

PLATFORM_DIR = Path(__file__).resolve().parents[2] / "platform"
LIGHTNING = ("GPU available", "TPU available", "Tip", "LeafSpec", "Trainer.fit")
GRAPHS = ("Processing", "it/s", "Done!")
MACE_IMPORT = ("cuequivariance", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")

pytestmark = pytest.mark.slow


def _user_environment(home: Path) -> dict[str, str]:
    """A user's environment: without pytest's variable, which PyTorch Geometric reads to
    stay silent ("Processing..." is printed only outside tests)."""
    env = user_environment(ATLAS2D_HOME=str(home), PYTHONPATH=str(PLATFORM_DIR))
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


@dataclass
class Home:
    """A fresh ATLAS2D_HOME with a training set ``layers``."""

    path: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "atlas2d.cli.main", *args],
            env=_user_environment(self.path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def chatter_log(self, model: str) -> Path:
        (folder,) = (self.path / "artifacts" / "models" / model).glob("v*")
        return folder / "chatter.log"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    folder = tmp_path_factory.mktemp("quiet")
    layers = folder / "layers.json"
    layers.write_text(json.dumps(alexandria_document(synthetic_trajectories(8, 5, 4, seed=21))))
    database = Home(folder / "home")
    try:
        database.run("db", "upgrade")
        database.run("ingest", str(layers))
        database.run("trainset", "create", "layers", "--ecut", "1e6", "--split", "50:25:25")
        yield database
    finally:
        subprocess.run(
            [sys.executable, "-m", "atlas2d.cli.main", "db", "stop"],
            env=_user_environment(database.path),
            capture_output=True,
            timeout=120,
        )


def _train(home: Home, arch: str, name: str, *global_options: str) -> str:
    """``atlas2d train`` of a tiny model for one epoch; stdout and stderr together."""
    sizes = TINY_M3GNET if arch == "m3gnet" else TINY_MACE
    flags = {
        "m3gnet": ("cutoff", "threebody_cutoff", "units", "nblocks"),
        "mace": ("r_max", "max_l", "channels", "num_interactions"),
    }[arch]
    options = [
        item
        for key in flags
        for item in (f"--{key.replace('_', '-')}".replace("max-l", "max-L"), str(sizes[key]))
    ]
    result = home.run(
        *global_options,
        *("train", "--arch", arch, "--trainset", "layers", "--name", name),
        *("--epochs", "1", "--batch-size", "4", *options),
    )
    return result.stdout + result.stderr


def test_m3gnet_training_is_quiet_and_logged(home: Home) -> None:
    screen = _train(home, "m3gnet", "quiet-m3gnet")
    for chatter in (*LIGHTNING, *GRAPHS):
        assert chatter not in screen, screen
    # atlas2d's own progress and results stay.
    assert "· training m3gnet for up to 1 epochs" in screen and "quiet-m3gnet:1 is ready" in screen
    assert "direct-prediction errors" in screen
    log = home.chatter_log("quiet-m3gnet").read_text()
    assert "GPU available" in log and "Processing..." in log


def test_verbose_shows_the_libraries(home: Home) -> None:
    screen = _train(home, "m3gnet", "loud-m3gnet", "--verbose")
    assert "GPU available" in screen and "Processing..." in screen
    assert "loud-m3gnet:1 is ready" in screen
    assert not home.chatter_log("loud-m3gnet").exists()


def test_mace_notices_go_to_the_logs(home: Home) -> None:
    screen = _train(home, "mace", "quiet-mace")
    for chatter in MACE_IMPORT:
        assert chatter not in screen, screen
    assert "quiet-mace:1 is ready" in screen
    # mace is imported when the trained model is loaded to measure its errors.
    assert "cuequivariance" in home.chatter_log("quiet-mace").read_text()
    predicted = home.run("predict", "--model", "quiet-mace", "--trainset", "layers")
    for chatter in MACE_IMPORT:
        assert chatter not in predicted.stdout + predicted.stderr
    assert "quiet-mace:1 on layers/test" in predicted.stdout
    command_log = (home.path / "logs" / "predict.log").read_text()
    assert "loading a MACE model" in command_log and "cuequivariance" in command_log
