"""``atlas2d alloys …`` through the installed console script, on the demo's alloy layers."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

from sqlalchemy import text

from tests.support.alloys import AlloyDatabase
from tests.support.entry_point import atlas2d_script, user_environment


def _run(database: AlloyDatabase, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [atlas2d_script(), *args],
        env=user_environment(ATLAS2D_DATABASE_URL=database.url, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_formation_prints_csv_with_full_precision(alloy_database: AlloyDatabase) -> None:
    done = _run(alloy_database, "alloys", "formation", "--system", "Mo-S-W", "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert list(rows[0]) == [
        "material_key",
        "formula",
        "x",
        "formation_energy_mev_per_site",
        "formation_energy_mev_per_atom",
        "end_members",
        "energy_source",
    ]
    assert {r["energy_source"] for r in rows} == {"dft"}
    alloys = [r for r in rows if 0 < float(r["x"]) < 1]
    assert len(alloys) == 8
    for row in alloys:
        site, atom = (
            float(row["formation_energy_mev_per_site"]),
            float(row["formation_energy_mev_per_atom"]),
        )
        assert abs(site - 3 * atom) < 1e-9 and len(row["formation_energy_mev_per_site"]) > 8


def test_bad_system_and_missing_end_member_exit_1_with_one_line(
    alloy_database: AlloyDatabase,
) -> None:
    for system, expected in (
        ("Mo-W", "Alloy system 'Mo-W' is not valid"),
        ("Mo-W-Te", "no dft energy for its end member MoTe2 and WTe2"),
    ):
        done = _run(alloy_database, "alloys", "formation", "--system", system)
        assert done.returncode == 1
        assert expected in " ".join(done.stderr.split())
        assert "Traceback" not in done.stderr


def test_fit_ce_then_formation_and_compare(alloy_database: AlloyDatabase, tmp_path: Path) -> None:
    from atlas2d.queries.training_sets import SelectionParameters
    from atlas2d.services.trainsets import create_training_set

    create_training_set(
        alloy_database.sessions,
        "cli-alloys",
        SelectionParameters(ecut=1e6, split=(60.0, 20.0, 20.0), seed=7, chemsys=("Mo-S-W",)),
    )
    home = {"ATLAS2D_HOME": str(tmp_path / "home")}
    steps = [
        ("alloys", "fit-ce", "--system", "Mo-W-S", "--trainset", "cli-alloys"),
        ("alloys", "formation", "--system", "Mo-W-S", "--energy", "dft"),
        ("alloys", "formation", "--system", "Mo-W-S", "--energy", "cli-ce", "--format", "json"),
        ("alloys", "compare", "--system", "Mo-W-S", "--trainset", "cli-alloys", "--format", "csv"),
    ]
    options = [("--name", "cli-ce", "--cutoffs", "7", "--fit-method", "least-squares"), (), (), ()]
    outputs = []
    for step, extra in zip(steps, options, strict=True):
        done = _run(alloy_database, *step, *extra, **home)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "cli-ce:1 is ready: 2H lattice" in outputs[0]
    assert {row["energy_source"] for row in json.loads(outputs[2])} == {"cli-ce:1"}
    # Other tests' models of the shared database may have rows too.
    rows = [r for r in csv.DictReader(io.StringIO(outputs[3])) if r["energy_source"] == "cli-ce:1"]
    assert [(r["energy_source"], r["split"]) for r in rows] == [
        ("cli-ce:1", "train"),
        ("cli-ce:1", "val"),
        ("cli-ce:1", "test"),
    ]
    assert sum(int(r["n_alloys"]) for r in rows) == 8


def test_without_the_alloys_extra_the_commands_name_it(
    alloy_database: AlloyDatabase, tmp_path: Path
) -> None:
    # A package named icet that fails to import stands for an uninstalled one.
    (tmp_path / "icet").mkdir()
    (tmp_path / "icet" / "__init__.py").write_text("raise ImportError('no icet here')\n")
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    for args in (
        ("enumerate", "--system", "Mo-W-S", "--prototype", "2H", "--max-sites", "2"),
        ("fit-ce", "--system", "Mo-W-S", "--trainset", "cli-alloys", "--name", "no-icet"),
    ):
        done = _run(alloy_database, "alloys", *args, PYTHONPATH=path)
        assert done.returncode == 1, done.stdout
        message = " ".join(done.stderr.split())
        assert "needs icet, which is not installed: pip install 'atlas2d[alloys]'" in message
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 2
    with alloy_database.engine.connect() as connection:
        names = connection.execute(
            text("SELECT count(*) FROM model_versions WHERE name = 'no-icet'")
        )
        assert names.scalar_one() == 0
