"""``atlas2d alloys …`` through the installed console script, on the demo's alloy layers."""

from __future__ import annotations

import csv
import io
import subprocess

from tests.support.alloys import AlloyDatabase
from tests.support.entry_point import atlas2d_script, user_environment


def _run(database: AlloyDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [atlas2d_script(), *args],
        env=user_environment(ATLAS2D_DATABASE_URL=database.url),
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
