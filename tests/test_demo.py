"""``atlas2d demo --quick``: the main job, end to end, as a new user runs it (a real
subprocess of the installed command, on a database of its own), then again to prove
that a second run reuses everything."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from atlas2d.db.session import make_engine
from tests.support.activities import TAGGED, activities_after, stored_by

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_database(database_server: Engine) -> Iterator[str]:
    from tests.conftest import _drop_database, _migrated_database

    url = _migrated_database(database_server, "atlas2d_demo")
    yield url
    _drop_database(database_server, url)


def _run_demo(url: str, home: Path) -> str:
    env = {
        **os.environ,
        "ATLAS2D_DATABASE_URL": url,
        "ATLAS2D_HOME": str(home),
        "COLUMNS": "160",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "atlas2d.cli.main", "demo", "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_quick_demo_runs_end_to_end_and_reruns_as_a_no_op(
    demo_database: str, tmp_path: Path
) -> None:
    out = _run_demo(demo_database, tmp_path)
    assert "[1/" in out and "stable 2D compounds by the reference" in out
    assert "models against the reference" in out and "demo finished in" in out
    report = tmp_path / "demo-report-quick"
    summary = (report / "summary.md").read_text()
    assert "| model |" in summary and "E MAE (meV/atom)" in summary
    pngs = sorted(p.name for p in report.rglob("*.png"))
    assert any(n.startswith("stability_") for n in pngs) and "parity_energy.png" in pngs
    assert "active learning: campaign demo-quick-al" in out
    assert "## Active learning: campaign `demo-quick-al`" in summary and "campaign.png" in pngs
    # The alloy comparison: DFT, the cluster expansion and both models on Mo-W-S.
    assert "alloys: formation energies against the reference" in out
    for source in ("demo-quick-ce-Mo-W-S:1", "demo-quick-m3gnet:1", "demo-quick-m3gnet-alloys:1"):
        assert source in out.split("alloys: formation energies against")[1]
    alloys_report = (report / "alloys" / "alloys.md").read_text()
    assert "demo-quick-m3gnet-alloys:1" in alloys_report and "hull_Mo-W-S.png" in pngs

    engine = make_engine(demo_database)
    with engine.connect() as connection:

        def count(sql: str) -> int:
            return connection.execute(text(sql)).scalar_one()

        models = count("SELECT count(*) FROM model_versions WHERE status = 'ready'")
        ml = count("SELECT count(*) FROM relaxations WHERE method = 'ml'")
        evaluations = count("SELECT count(*) FROM evaluations")
        last_evaluation = count("SELECT max(id) FROM evaluations")
        sources = count("SELECT count(DISTINCT energy_source) FROM stability")
        # M3GNet, MACE, the alloys' fine-tune, the campaign's fine-tune, the alloys' CE
        assert models == 5
        alloy = connection.execute(
            text(
                "SELECT m.name, e.metrics FROM evaluations e"
                " JOIN model_versions m ON m.id = e.model_version_id WHERE e.kind = 'alloy'"
            )
        ).all()
        assert sorted(name for name, _ in alloy) == [
            "demo-quick-ce-Mo-W-S",
            "demo-quick-m3gnet",
            "demo-quick-m3gnet-alloys",
        ]
        assert all(set(metrics) == {"Mo-W-S"} for _, metrics in alloy)
        assert all(metrics["Mo-W-S"]["train"]["n_alloys"] > 0 for _, metrics in alloy)
        assert count("SELECT count(*) FROM model_versions WHERE parent_id IS NOT NULL") == 2
        iteration = connection.execute(
            text(
                "SELECT stage, selected, control, labelled, produced_model"
                " FROM al_iteration_summary WHERE campaign = 'demo-quick-al'"
            )
        ).one()
        assert tuple(iteration) == ("done", 4, 2, 6, "demo-quick-al-iter1:1")
        assert ml > 0 and sources == 4  # the reference and each model
        assert count("SELECT count(*) FROM evaluations WHERE kind = 'stability'") == 3
        # The labeller's reference data is marked as such, never as real DFT.
        assert count(
            "SELECT count(*) FROM relaxations WHERE method = 'dft'"
            " AND parameters ->> 'reference' = 'labeller'"
        ) == count("SELECT count(*) FROM relaxations WHERE method = 'dft'")

    first_log = _check_activity_log(engine)

    again = _run_demo(demo_database, tmp_path)
    assert "already present" in again and "reused" in again and "no new energies" in again
    assert "demo-quick-al: 1 iteration already done" in again
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT count(*) FROM model_versions")).scalar_one() == models
        )
        assert (
            connection.execute(
                text("SELECT count(*) FROM relaxations WHERE method = 'ml'")
            ).scalar_one()
            == ml
        )
        # The campaign grew the reference hull after the first run evaluated stability:
        # the rerun evaluates each model once more, against the newer hull runs only.
        assert connection.execute(
            text("SELECT count(*) FROM evaluations WHERE kind = 'relaxation'")
        ).scalar_one() == evaluations - 3 - len(alloy)
        newer = connection.execute(
            text(
                "SELECT count(*), bool_and((parameters->'dft_hull_runs'->>-1)::int >"
                " (SELECT max((parameters->'dft_hull_runs'->>-1)::int) FROM evaluations e"
                "  WHERE e.kind = 'stability' AND e.id <= :last))"
                " FROM evaluations WHERE kind = 'stability' AND id > :last"
            ),
            {"last": last_evaluation},
        ).one()
        assert newer[0] <= 3 and newer[1] is not False
    rerun = [a for a in activities_after(engine, first_log) if a["command"] != "evaluate"]
    # Nothing trained or selected again; the steps that ran again wrote nothing new.
    assert {a["command"] for a in rerun} <= {
        "ingest",
        "relax",
        "hull update",
        "al create",
        "al run",
        "alloys formation",
        "alloys compare",
    }
    assert all(a["status"] == "succeeded" for a in rerun)
    assert all(
        a["rows_written"] == {} for a in rerun if a["command"] in ("ingest", "relax", "al create")
    )
    engine.dispose()


DEMO_COMMANDS = {
    "ingest",
    "trainset create",
    "train",
    "relax",
    "evaluate",
    "hull update",
    "al create",
    "al run",
    "alloys fit-ce",
    "alloys formation",
    "alloys compare",
}


def _check_activity_log(engine: Engine) -> int:
    """Each demo step is an activity named after its command, marked ``via demo``, whose
    rows written are the rows that carry it; every row the demo wrote carries one; the
    models were trained by ``train`` activities (the campaign's by ``al run``). Returns
    the last activity's id."""
    activities = activities_after(engine, 0)
    assert {a["command"] for a in activities} == DEMO_COMMANDS
    for activity in activities:
        assert activity["status"] == "succeeded", activity
        assert activity["arguments"]["via"] == "demo"
        written, stored = activity["rows_written"], stored_by(engine, activity["id"])
        # A later hull update replaces a system's stability rows: what this activity
        # inserted is on record, fewer of them may still be there.
        assert written.get("stability", 0) >= stored.pop("stability", 0)
        assert {t: n for t, n in written.items() if t != "stability"} == stored, activity
    by_id = {a["id"]: a for a in activities}
    with engine.connect() as connection:
        for table in TAGGED:
            unattributed = connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE activity_id IS NULL")
            ).scalar_one()
            assert unattributed == 0, table
        trained = connection.execute(
            text("SELECT name, activity_id FROM model_versions WHERE status = 'ready'")
        ).all()
        ingested = connection.execute(
            text("SELECT DISTINCT activity_id FROM sources WHERE format = 'alexandria-traj'")
        ).scalars()
        assert [by_id[a]["command"] for a in ingested] == ["ingest"]
    for name, activity_id in trained:
        activity = by_id[activity_id]
        if name.startswith("demo-quick-al-"):
            assert activity["command"] == "al run"
        elif name.startswith("demo-quick-ce-"):
            assert activity["command"] == "alloys fit-ce" and activity["arguments"]["name"] == name
        else:
            assert activity["command"] == "train" and activity["arguments"]["name"] == name
    return max(by_id)
