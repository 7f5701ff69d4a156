"""``atlas2d audit model`` on the database of ``trained_registry``: through the installed
entry point (exit codes 0 and 1) and in-process, where a test's tampering with the
database happens in a transaction rolled back after it; ``models list|show`` flag
tainted models."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.orm import sessionmaker
from typer.testing import CliRunner

from atlas2d.services.models import artifact_file, resolve
from tests.support.entry_point import atlas2d_script, user_environment

Run = Callable[..., tuple[int, str, str]]


def entry_point(trained_registry, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """``atlas2d ARGS`` in a subprocess on the trained registry's database and files."""
    environment = user_environment(
        ATLAS2D_DATABASE_URL=trained_registry.url,
        ATLAS2D_HOME=str(trained_registry.artifacts_dir.parent),
        COLUMNS="200",
    )
    return subprocess.run(
        [atlas2d_script(), *args], env=environment, capture_output=True, text=True, timeout=300
    )


def test_an_untouched_model_passes_with_exit_code_0(trained_registry) -> None:  # type: ignore[no-untyped-def]
    result = entry_point(trained_registry, "audit", "model", "tiny-m3gnet:1", "--reproduce", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "✓ training set layers: reproduces" in out
    assert "✓ model file" in out and "matches the registry" in out
    assert "✓ reproduce: 3 frames" in out and "meV/atom (tolerance 0.01)" in out
    assert out.rstrip().endswith("verdict: pass")
    result = entry_point(trained_registry, "audit", "model", "tiny-mace:1", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["verdict"], document["reasons"], document["tainted"]) == ("pass", [], False)
    (version,) = document["lineage"]
    assert version["model"] == "tiny-mace:1" and version["artifact"]["ok"] is True
    assert version["training_set"]["reproduced"] is True
    assert version["training_set"]["sources"][0]["frames"] > 0
    assert all(metric["ok"] for metric in document["metrics"]) and document["metrics"]
    assert document["downstream_counts"]["frame_predictions"] > 0


def test_prov_json_is_the_lineage_as_a_prov_document(trained_registry) -> None:  # type: ignore[no-untyped-def]
    from prov.model import ProvDocument

    result = entry_point(trained_registry, "audit", "model", "tiny-mace:1", "--format", "prov-json")
    assert result.returncode == 0, result.stderr
    document = ProvDocument.deserialize(content=result.stdout, format="json")
    ids = {str(record.identifier) for record in document.get_records()}
    assert {"atlas2d:model/tiny-mace:1", "atlas2d:trainingset/layers"} <= ids
    generated = {
        (str(r.formal_attributes[0][1]), str(r.formal_attributes[1][1]))
        for r in document.get_records()
        if r.get_type().localpart == "Generation"
    }
    assert any(entity == "atlas2d:model/tiny-mace:1" for entity, _ in generated)


def test_a_flipped_byte_fails_with_exit_code_1_naming_the_file(trained_registry) -> None:  # type: ignore[no-untyped-def]
    with trained_registry.sessions.begin() as session:
        path = artifact_file(resolve(session, "tiny-m3gnet:1"), trained_registry.artifacts_dir)
    original = path.read_bytes()
    try:
        flipped = bytearray(original)
        flipped[-100] ^= 0x80
        path.write_bytes(bytes(flipped))
        result = entry_point(
            trained_registry, "audit", "model", "tiny-m3gnet:1", "--format", "json"
        )
    finally:
        path.write_bytes(original)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    assert document["verdict"] == "fail"
    (reason,) = document["reasons"]
    assert reason.startswith(f"model file of tiny-m3gnet:1 changed: {path} has sha256")
    assert document["lineage"][0]["artifact"]["ok"] is False


@pytest.fixture
def tampering(trained_registry) -> Iterator[Connection]:  # type: ignore[no-untyped-def]
    """A superuser connection on the registry's database in a transaction rolled back
    after the test."""
    connection = trained_registry.engine.connect()
    transaction = connection.begin()
    try:
        yield connection
    finally:
        transaction.rollback()
        connection.close()


@pytest.fixture
def cli(trained_registry, tampering: Connection, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:  # type: ignore[no-untyped-def]
    """``run(*args) -> (exit code, stdout, stderr)`` in-process, seeing the tampering."""
    from atlas2d import config
    from atlas2d.cli import context
    from atlas2d.cli.main import typer_app

    sessions = sessionmaker(
        bind=tampering, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    monkeypatch.setenv("ATLAS2D_HOME", str(trained_registry.artifacts_dir.parent))
    config.get_settings.cache_clear()
    monkeypatch.setattr(
        context,
        "connect",
        lambda check_schema=True: context.Database(
            trained_registry.url, trained_registry.engine, sessions
        ),
    )
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(typer_app, list(args), env={"COLUMNS": "200"})
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    yield run
    config.get_settings.cache_clear()


def test_the_table_gives_one_line_per_reason_and_exit_code_1(
    cli: Run, tampering: Connection
) -> None:
    tampering.execute(
        text(
            "UPDATE model_versions SET metrics = jsonb_set(metrics, '{val,n_frames}', '999')"
            " WHERE name = 'tiny-m3gnet' AND version = 1"
        )
    )
    code, out, _ = cli("audit", "model", "tiny-m3gnet:1")
    assert code == 1
    lines = out.splitlines()
    verdict = lines.index("verdict: fail")
    assert lines[verdict + 1 :] == [
        "- tiny-m3gnet:1 val n_frames: the registry says 999, the stored predictions give 12 "
        "(relative tolerance 1e-09)"
    ]
    assert "✓ training set layers: reproduces" in out and "✗" in out
    code, out, _ = cli("audit", "model", "tiny-m3gnet:1", "--format", "json", "--keys")
    assert code == 1
    document = json.loads(out)
    assert document["verdict"] == "fail" and len(document["reasons"]) == 1
    assert isinstance(document["downstream_keys"]["fine_tuned_versions"], list)


def test_models_list_and_show_flag_models_trained_on_retracted_data(
    cli: Run, tampering: Connection
) -> None:
    code, out, _ = cli("models", "list", "--format", "json")
    assert code == 0 and not any(row["tainted"] for row in json.loads(out))
    tampering.execute(
        text(
            "UPDATE sources SET retracted_at = now(), retraction_reason = 'wrong pseudopotential'"
            " WHERE path LIKE '%layers.json'"
        )
    )
    code, out, _ = cli("models", "list", "--format", "json")
    rows = {row["model"]: row for row in json.loads(out)}
    assert rows["tiny-m3gnet:1"]["tainted"] is True and rows["tiny-mace:1"]["tainted"] is True
    code, out, _ = cli("models", "show", "tiny-mace:1")
    assert code == 0
    assert "tainted: trained on retracted source" in out and "wrong pseudopotential" in out
    code, out, _ = cli("models", "show", "tiny-mace:1", "--format", "json")
    (source,) = json.loads(out)["tainted_by"]
    assert source["path"].endswith("layers.json") and source["reason"] == "wrong pseudopotential"
    code, out, _ = cli("audit", "model", "tiny-mace:1")
    assert code == 1
    assert "- tiny-mace:1 is tainted: training set layers holds frames of retracted source" in out
