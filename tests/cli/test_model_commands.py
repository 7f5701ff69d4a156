"""``atlas2d train``, ``models list|show`` and ``predict``, in-process on the database of
``trained_registry``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner


@pytest.fixture
def registry_cli(trained_registry, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``run(*args) -> (exit code, stdout, error)`` against the trained registry."""
    from atlas2d import config
    from atlas2d.cli import context
    from atlas2d.cli.main import typer_app
    from atlas2d.errors import Atlas2dError

    monkeypatch.setenv("ATLAS2D_HOME", str(trained_registry.artifacts_dir.parent))
    config.get_settings.cache_clear()
    monkeypatch.setattr(
        context,
        "connect",
        lambda check_schema=True: context.Database(
            trained_registry.url, trained_registry.engine, trained_registry.sessions
        ),
    )
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


def test_models_list_and_show(registry_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = registry_cli("models", "list", "--format", "json")
    assert code == 0
    rows = {row["model"]: row for row in json.loads(out)}
    assert rows["tiny-mace:1"]["status"] == "ready"
    assert rows["tiny-mace:1"]["test_energy_mae_mev_per_atom"] > 0
    code, out, _ = registry_cli("models", "show", "tiny-m3gnet:1", "--format", "json")
    shown = json.loads(out)
    assert shown["model"] == "tiny-m3gnet:1" and shown["parent_chain"] == []
    assert len(shown["training_set_hash"]) == 64 and shown["environment"]["threads"] == 1
    assert set(shown["metrics"]) >= {"val", "test"}
    code, out, _ = registry_cli("models", "show", "tiny-mace:1")
    assert code == 0
    assert (
        "energy MAE (meV/atom)" in out and "training curve" in out and "lineage tiny-mace:1" in out
    )


def test_train_then_predict(registry_cli) -> None:  # type: ignore[no-untyped-def]
    tiny = ["--cutoff", "4", "--threebody-cutoff", "3.5", "--units", "8", "--nblocks", "1"]
    code, out, err = registry_cli(
        *["train", "--arch", "m3gnet", "--trainset", "layers", "--name", "cli-m3gnet"],
        *["--epochs", "1", "--batch-size", "4", "--seed", "3", *tiny],
    )
    assert code == 0, err
    assert "cli-m3gnet:1 is ready" in out and "energy MAE (meV/atom)" in out and "sha256" in out
    code, out, _ = registry_cli(
        "predict", "--model", "cli-m3gnet", "--trainset", "layers", "--split", "train"
    )
    assert code == 0
    assert "cli-m3gnet:1 on layers/train: 24 new predictions stored" in out
    assert "force MAE (meV/Å)" in out
    code, out, _ = registry_cli(
        "predict", "--model", "cli-m3gnet:1", "--trainset", "layers", "--split", "train"
    )
    assert "0 new predictions stored" in out


def test_errors_are_one_line(registry_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = registry_cli("models", "show", "missing")
    assert code == 1 and "No model is named 'missing'" in err
    code, _, err = registry_cli(
        "train", "--arch", "mace", "--trainset", "layers", "--name", "x", "--from", "tiny-m3gnet"
    )
    assert code == 1 and "same architecture" in err
    code, _, err = registry_cli("train", "--arch", "mace", "--trainset", "layers", "--name", "a:b")
    assert code == 1 and "Model name 'a:b' is not valid" in err


def test_relax_then_evaluate(registry_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = [
        "--model",
        "tiny-mace:1",
        "--trainset",
        "layers",
        "--split",
        "val",
        "--fmax",
        "0.002",
        "--steps",
        "20",
    ]
    code, out, err = registry_cli("relax", *args, "--engine", "batched", "--chunk-size", "2")
    assert code == 0, err
    assert "4 requested, 0 already done, 4 relaxed" in out and "structures/s" in out
    code, out, _ = registry_cli("relax", *args)
    assert "4 already done, 0 relaxed" in out
    code, out, err = registry_cli("evaluate", *args, "--report", str(tmp_path / "report"))
    assert code == 0, err
    assert "E MAE (meV/atom)" in out and "area MAE ×100" in out and "report.md" in out
    # Its own val split watched its training: allowed, and counted.
    assert "ancestor val: 4 of 4 materials were in a val split" in out
    assert (tmp_path / "report" / "parity_area.png").is_file()
    code, out, _ = registry_cli("evaluate", *args, "--format", "json")
    import json

    document = json.loads(out)
    assert document["metrics"]["n_materials"] == 4
    assert document["parameters"]["fmax_ev_per_a"] == 0.002
    assert document["leakage"] is False and document["ancestor_val_materials"] == 4
    code, _, err = registry_cli(
        "evaluate", "--model", "tiny-mace:1", "--trainset", "layers", "--fmax", "0.3"
    )
    assert code == 1 and "no stored relaxations" in err
