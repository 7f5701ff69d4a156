"""``atlas2d audit material|source`` and retraction, end to end: what is printed, what a
retraction changes downstream (tainted models, new training sets, verify), the activity
log, and the one-line errors of the installed command."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.session import make_engine, make_sessions
from atlas2d.errors import InvalidInput
from atlas2d.queries.provenance import tainted_models
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.audit_source import resolve_source, retract_source
from atlas2d.services.trainsets import create_training_set, verify_training_set
from tests.support.entry_point import atlas2d_script, user_environment
from tests.support.provenance import Provenance, build_provenance


@pytest.fixture
def graph(sessions: sessionmaker[Session], tmp_path: Path) -> Provenance:
    return build_provenance(sessions, tmp_path)


def _scalar(sessions: sessionmaker[Session], sql: str, **params: object) -> object:
    with sessions.begin() as session:
        return session.execute(text(sql), params).scalar_one()


def _relaxations_of(sessions: sessionmaker[Session], training_set: str, path: Path) -> int:
    """Relaxations of the file at ``path`` in ``training_set``."""
    return int(
        _scalar(  # type: ignore[arg-type]
            sessions,
            "SELECT count(*) FROM training_set_relaxations t"
            " JOIN training_sets ts ON ts.id = t.training_set_id"
            " JOIN relaxations r ON r.id = t.relaxation_id"
            " JOIN sources s ON s.id = r.source_id WHERE ts.name = :set AND s.path = :path",
            set=training_set,
            path=str(path),
        )
    )


def _audit_activities(sessions: sessionmaker[Session]) -> list[tuple[str, dict, str]]:  # type: ignore[type-arg]
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT command, arguments, status FROM activities"
                " WHERE command LIKE 'audit%' ORDER BY id"
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_retraction_taints_downstream_and_unretract_clears_it(  # type: ignore[no-untyped-def]
    cli, sessions, graph: Provenance
) -> None:
    code, out, err = cli("audit", "source", str(graph.b_path))
    assert code == 0, err
    assert _audit_activities(sessions) == []  # a plain audit is no activity

    code, out, err = cli(
        "audit", "source", str(graph.b_path), "--retract", "--reason", "wrong ENCUT"
    )
    assert code == 0, err
    assert "retracted" in out and "Now tainted: 2 model versions" in out
    assert "RETRACTED" in out and "wrong ENCUT" in out
    b_id = resolve_source(sessions, str(graph.b_path)).id
    with sessions.begin() as session:
        tainted = tainted_models(session)
    # base:1 trained on the file; tuned:1 descends from it; other:1 never saw it.
    assert set(tainted) == {graph.models["base:1"], graph.models["tuned:1"]}
    assert [s.reason for s in tainted[graph.models["tuned:1"]]] == ["wrong ENCUT"]
    ((command, arguments, status),) = _audit_activities(sessions)
    assert (command, status) == ("audit source --retract", "succeeded")
    assert arguments["reason"] == "wrong ENCUT" and arguments["source_id"] == b_id

    code, out, _ = cli("audit", "source", str(graph.b_path), "--retract", "--reason", "again")
    assert code == 0 and "was already retracted" in out and "wrong ENCUT" in out
    assert len(_audit_activities(sessions)) == 1  # nothing changed, nothing logged

    code, out, err = cli("trainset", "create", "after", "--ecut", "1e6")
    assert code == 0, err
    # b's 4 relaxations of 5 steps each, left out before the step rule.
    assert "left out 4 relaxations (20 frames) from 1 retracted source" in out
    assert str(graph.b_path) in out and "--include-retracted" in out
    assert _relaxations_of(sessions, "after", graph.b_path) == 0
    assert _relaxations_of(sessions, "after", graph.a_path) == 4
    # Another isolated-atom cutoff first reads the kept frames' geometry, b's left out too.
    code, out, err = cli(
        "trainset", "create", "after-6a", "--ecut", "1e6", "--isolated-cutoff", "6"
    )
    assert code == 0 and "left out 4 relaxations" in out, err
    assert _relaxations_of(sessions, "after-6a", graph.b_path) == 0

    code, out, err = cli("trainset", "verify", "both")
    assert code == 0, err  # an older set still reproduces …
    assert "both: reproduced" in out
    assert "holds 4 relaxations (12 frames" in out and "wrong ENCUT" in out  # … and says so

    code, out, err = cli("audit", "source", str(graph.b_path), "--unretract")
    assert code == 0, err
    assert "restored" in out and "RETRACTED" not in out
    with sessions.begin() as session:
        assert tainted_models(session) == {}
    assert [(c, s) for c, _, s in _audit_activities(sessions)] == [
        ("audit source --retract", "succeeded"),
        ("audit source --unretract", "succeeded"),
    ]
    code, out, _ = cli("audit", "source", str(graph.b_path), "--unretract")
    assert code == 0 and "is not retracted; nothing changed" in out
    code, out, _ = cli("audit", "source", str(graph.b_path))
    assert "retraction history" in out and "--unretract" in out

    # "after" left b out when it was made, and still does: it reproduces.
    assert verify_training_set(sessions, "after").reproduced
    code, out, err = cli("trainset", "create", "later", "--ecut", "1e6")
    assert code == 0 and "left out" not in out
    assert _relaxations_of(sessions, "later", graph.b_path) == 4


def test_include_retracted_keeps_them_and_reproduces(cli, sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    retract_source(sessions, resolve_source(sessions, str(graph.b_path)).id, "bad k-points")
    code, out, err = cli("trainset", "create", "all-in", "--ecut", "1e6", "--include-retracted")
    assert code == 0, err
    assert "kept 4 relaxations (20 frames) from 1 retracted source (--include-retracted)" in out
    assert _relaxations_of(sessions, "all-in", graph.b_path) == 4
    stored = json.loads(cli("trainset", "show", "all-in", "--format", "json")[1])
    assert stored["parameters"]["include_retracted"] is True
    assert stored["filter_counts"]["retracted"]["left_out"] is False
    report = verify_training_set(sessions, "all-in")
    assert report.reproduced
    assert [(c.path, c.relaxations, c.frames) for c in report.retracted] == [
        (str(graph.b_path), 4, 12)
    ]
    retract_source(sessions, resolve_source(sessions, str(graph.a_path)).id, "bad too")
    with pytest.raises(InvalidInput, match=r"8 relaxations of retracted sources were left out"):
        create_training_set(sessions, "nothing", SelectionParameters(ecut=1e6))


def test_a_set_made_before_retraction_existed_still_verifies(sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:  # as stored by an older atlas2d
        # Past the trigger that keeps training sets immutable, for this test only, as the
        # tables' owner (no superuser needed: CI's external login is none).
        session.execute(text("ALTER TABLE training_sets DISABLE TRIGGER USER"))
        session.execute(
            text(
                "UPDATE training_sets SET parameters = parameters - 'include_retracted',"
                " filter_counts = filter_counts - 'retracted' WHERE name = 'both'"
            )
        )
        session.execute(text("ALTER TABLE training_sets ENABLE TRIGGER USER"))
    retract_source(sessions, resolve_source(sessions, str(graph.a_path)).id, "wrong POTCAR")
    report = verify_training_set(sessions, "both")
    assert report.reproduced
    assert [(c.path, c.relaxations, c.reason) for c in report.retracted] == [
        (str(graph.a_path), 4, "wrong POTCAR")
    ]


def test_reports_as_tables_and_json(cli, sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("audit", "material", "b-000000")
    assert code == 0, err
    for section in ("sources", "DFT relaxations", "ML relaxations", "stability per energy"):
        assert section in out
    assert "e_above_hull_mev_per_atom" in out and "through_ancestor" in out
    document = json.loads(cli("audit", "material", "b-000000", "--format", "json")[1])
    assert document["material"]["key"] == "b-000000"
    assert {(m["model"], m["depth"]) for m in document["models"]} == {
        ("base:1", 0),
        ("tuned:1", 1),
    }
    assert len(document["sources"][0]["sha256"]) == 64

    sha256 = resolve_source(sessions, str(graph.b_path)).sha256
    code, out, err = cli("audit", "source", sha256[:10])
    assert code == 0, err
    assert "training sets holding its frames" in out and "--keys lists all" not in out
    document = json.loads(cli("audit", "source", sha256, "--format", "json", "--keys")[1])
    assert document["source"]["sha256"] == sha256 and document["retracted"] is False
    assert [s["training_set"] for s in document["training_sets"]] == ["both"]
    assert {m["model"] for m in document["models"]} == {"base:1", "tuned:1"}
    assert document["ml_relaxations"]["ids"]["count"] == 2
    assert document["stability"]["materials"]["items"] == ["b-000000"]
    assert document["campaign_decisions"]["candidates"]["items"] == ["b-000001"]
    assert document["materials"]["complete"] is True and document["materials"]["count"] == 4


# --- the installed command -----------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(database_server: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of its own (the installed command commits) with two sources whose
    sha256 share their first 8 characters."""
    from tests.conftest import _drop_database, _migrated_database

    url = _migrated_database(database_server, "atlas2d_audit_cli")
    engine = make_engine(url)
    with make_sessions(engine).begin() as session:
        for digit in "01":
            session.execute(
                text(
                    "INSERT INTO sources (format, path, sha256, parser, versions, options,"
                    " n_materials, n_relaxations, n_frames, n_entries)"
                    " VALUES ('records', :path, :sha, 'test', '{}', '{}', 0, 0, 0, 0)"
                ),
                {"path": f"batch-{digit}", "sha": "abcdef12" + digit * 56},
            )
    engine.dispose()
    yield url
    _drop_database(database_server, url)


def _run(url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = user_environment(ATLAS2D_DATABASE_URL=url, ATLAS2D_HOME=str(home))
    return subprocess.run(
        [atlas2d_script(), *args], env=environment, capture_output=True, text=True, timeout=120
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_the_installed_command_refuses_in_one_line(scratch: str, tmp_path: Path) -> None:
    cases = {
        ("audit", "source", "nope.json"): (1, "No source matches 'nope.json'"),
        ("audit", "source", "abcdef12"): (1, "prefix abcdef12 matches 2 sources"),
        ("audit", "source", "abcdef120", "--retract"): (2, "needs --reason TEXT"),
        ("audit", "source", "abcdef120", "--retract", "--reason", "x", "--unretract"): (
            2,
            "cannot be used with --unretract",
        ),
        ("audit", "material", "nope"): (1, "No material has the key 'nope'"),
    }
    for args, (code, message) in cases.items():
        result = _run(scratch, tmp_path, *args)
        assert result.returncode == code, (args, result.stderr)
        assert message in _one_line(result), args
    engine = make_engine(scratch)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM activities")).scalar_one() == 0
        assert (
            connection.execute(
                text("SELECT count(*) FROM sources WHERE retracted_at IS NOT NULL")
            ).scalar_one()
            == 0
        )

    result = _run(scratch, tmp_path, "audit", "source", "abcdef120", "--retract", "--reason", "x")
    assert result.returncode == 0, result.stderr
    with engine.connect() as connection:
        activity = connection.execute(
            text("SELECT command, status, arguments->>'sha256' FROM activities")
        ).one()
    engine.dispose()
    assert tuple(activity) == ("audit source --retract", "succeeded", "abcdef12" + "0" * 56)
