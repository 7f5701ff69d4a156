"""The command line: in-process against the test transaction, and once end to end on a
fresh embedded PostgreSQL, as a new user would run it."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import VASP_DATA

FE2O2 = str(VASP_DATA / "Fe2O2_relax_vasprun.xml.gz")
X_SPECIES = str(VASP_DATA / "Cl8F88Sb16X8_relax_vasprun.xml.gz")


def test_ingest_then_list_and_show(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("ingest", FE2O2)
    assert code == 0, out
    assert "1 ingested" in out and "frames: 28" in out
    code, out, _ = cli("materials", "list", "--format", "json")
    (material,) = json.loads(out)
    assert (
        material["key"],
        material["formula"],
        material["n_frames"],
        material["n_relaxations"],
    ) == (
        "Fe2O2_relax",
        "FeO",
        28,
        1,
    )
    code, out, _ = cli("materials", "show", "Fe2O2_relax", "--format", "json")
    detail = json.loads(out)
    assert detail["material"]["chemsys"] == "Fe-O"
    assert detail["relaxations"][0]["n_steps"] == 28
    assert "final_energy_per_atom_ev" in detail["relaxations"][0]
    code, out, _ = cli("ingest", FE2O2)
    assert "already present" in out and "0 ingested" in out


def test_materials_filters(cli) -> None:  # type: ignore[no-untyped-def]
    cli("ingest", FE2O2)
    _, out, _ = cli("materials", "list", "--chemsys", "O-Fe", "--format", "csv")
    assert [row["key"] for row in csv.DictReader(io.StringIO(out))] == ["Fe2O2_relax"]
    _, out, _ = cli("materials", "list", "--formula", "MoS2", "--format", "csv")
    assert list(csv.DictReader(io.StringIO(out))) == []


def test_a_cut_material_list_says_how_many_matched(cli) -> None:  # type: ignore[no-untyped-def]
    cli("ingest", FE2O2)
    code, out, _ = cli("ingest", str(VASP_DATA / "Li28P12S44_relax_OUTCAR.gz"))
    assert code == 0, out
    _, out, _ = cli("materials", "list")
    assert "2 materials" in out and "showing" not in out
    _, out, _ = cli("materials", "list", "--limit", "1")
    assert "showing 1 of 2 materials; --limit to change" in out
    _, out, err = cli("materials", "list", "--limit", "1", "--format", "csv")
    assert len(list(csv.DictReader(io.StringIO(out)))) == 1  # stdout stays plain CSV
    assert "showing 1 of 2 materials" in err


def test_unknown_material_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli("materials", "show", "nope")
    assert code == 1 and "No material has the key 'nope'" in err


def test_sql_is_read_only(cli) -> None:  # type: ignore[no-untyped-def]
    cli("ingest", FE2O2)
    code, out, _ = cli("sql", "SELECT count(*) AS n FROM frames", "--format", "json")
    assert code == 0 and json.loads(out) == [{"n": 28}]
    code, _, err = cli("sql", "DELETE FROM frames RETURNING id")
    assert code == 1 and "read-only transaction" in err
    _, out, _ = cli("sql", "SELECT count(*) AS n FROM frames", "--format", "csv")
    assert out.splitlines() == ["n", "28"]


def test_bad_file_exits_non_zero_with_one_line(cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli("ingest", X_SPECIES)
    assert code == 1
    assert "species 'X'" in err and "\n" not in err.strip()
    code, out, _ = cli("sql", "SELECT count(*) AS n FROM sources", "--format", "csv")
    assert out.splitlines()[1] == "0"


def test_skip_bad_writes_a_report(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = tmp_path / "report.json"
    code, _, _ = cli("ingest", X_SPECIES, FE2O2, "--skip-bad", "--report", str(report))
    assert code == 1  # something was rejected
    outcomes = {Path(r["path"]).name: r["status"] for r in json.loads(report.read_text())}
    assert outcomes == {Path(X_SPECIES).name: "rejected", Path(FE2O2).name: "ingested"}


def test_relax_and_label_commit_in_chunks_of_chunk_size(cli) -> None:  # type: ignore[no-untyped-def]
    """``--chunk-size`` (materials per transaction) reaches the request of relax and
    label; ``--batch-size`` is only the training minibatch (``atlas2d train``)."""
    code, _, err = cli("relax", "--model", "nope", "--chunk-size", "0")
    assert code == 1 and "--chunk-size 0 must be at least 1" in err
    code, _, err = cli("label", "--from-file", "nope.extxyz", "--chunk-size", "0")
    assert code == 1 and "--chunk-size 0 must be at least 1" in err
    for command in (("relax", "--model", "nope"), ("label", "--from-file", "nope.extxyz")):
        code, _, err = cli(*command, "--batch-size", "2")
        assert code == 2 and "--batch-size" in err  # a usage error: no such option


def _atlas2d(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS2D_")}
    env["ATLAS2D_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "atlas2d.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_new_user_on_the_embedded_database(tmp_path: Path) -> None:
    home = tmp_path / "a2d"
    try:
        ingest = _atlas2d(home, "ingest", FE2O2)
        assert ingest.returncode == 0, ingest.stderr
        listing = _atlas2d(home, "materials", "list", "--format", "json")
        assert listing.returncode == 0, listing.stderr
        (material,) = json.loads(listing.stdout)
        assert (material["key"], material["n_frames"]) == ("Fe2O2_relax", 28)
        status = _atlas2d(home, "db", "status")
        assert "up to date" in status.stdout and "frames" in status.stdout
        bad = _atlas2d(home, "ingest", X_SPECIES)
        assert bad.returncode == 1
        assert bad.stderr.strip().startswith("error:") and "Traceback" not in bad.stderr
        assert _atlas2d(home, "db", "url").stdout.startswith("postgresql+psycopg://")
    finally:
        _atlas2d(home, "db", "stop")


def test_tables_round_floats_for_reading_and_csv_json_keep_every_digit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    import pandas as pd

    from atlas2d.cli import output

    assert [
        output.readable_float(v)
        for v in (35.3057, 0.545455, -0.135049, 1.0, 14479.0, 3728.6, 2.1e-05, 999.96)
    ] == ["35.31", "0.5455", "-0.135", "1", "14479", "3729", "2.1e-05", "1000"]
    frame = pd.DataFrame({"energy_mae_mev_per_atom": [35.30571234], "n": [19]})
    printed = {}
    for fmt in output.OutputFormat:
        out = io.StringIO()
        monkeypatch.setattr(output, "console", output.make_console(file=out))
        monkeypatch.setattr("sys.stdout", out)
        output.print_frame(frame, fmt)
        printed[fmt] = out.getvalue()
    assert "35.31" in printed[output.OutputFormat.table]
    assert "35.3057" not in printed[output.OutputFormat.table]
    assert "35.30571234" in printed[output.OutputFormat.csv]
    assert (
        json.loads(printed[output.OutputFormat.json])[0]["energy_mae_mev_per_atom"] == 35.30571234
    )


def test_a_table_written_to_a_pipe_keeps_every_number_on_one_line(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Rich folds at 80 columns when it has no terminal; a wide table then split numbers
    across lines in every log. Without a terminal and without COLUMNS, nothing folds."""
    import pandas as pd

    from atlas2d.cli import output

    frame = pd.DataFrame({f"formation_energy_ev_per_atom_{i}": [-1.119381 - i] for i in range(10)})
    numbers = [f"{-1.119381 - i:.4g}" for i in range(10)]
    monkeypatch.delenv("COLUMNS", raising=False)
    piped = io.StringIO()
    monkeypatch.setattr(output, "console", output.make_console(file=piped))
    output.print_frame(frame, output.OutputFormat.table)
    assert all(number in piped.getvalue() for number in numbers)

    monkeypatch.setenv("COLUMNS", "80")  # a width asked for is a width kept
    narrow = io.StringIO()
    monkeypatch.setattr(output, "console", output.make_console(file=narrow))
    output.print_frame(frame, output.OutputFormat.table)
    assert max(len(line) for line in narrow.getvalue().splitlines()) <= 80
    assert not any(number in narrow.getvalue() for number in numbers)  # folded, as asked


def test_models_show_lists_hyperparameters_one_per_line_without_the_runs_paths() -> None:
    from atlas2d.analysis.reports import settings_text
    from atlas2d.cli.model_commands import environment_line, hyperparameter_lines

    lines = hyperparameter_lines(
        "mace",
        {
            "max_l": 0,
            "max_ell": 2,
            "r_max": 5.0,
            "swa_start": None,
            "mace_arguments": ["--work_dir", "/elsewhere/run", "--train_file", "/elsewhere/t.xyz"],
        },
    )
    assert lines[0].startswith("mace_arguments") and "4 arguments" in lines[0]
    assert not any("/elsewhere" in line or "{" in line for line in lines)
    assert any(line.startswith("max_L (symmetry of the hidden features)") for line in lines)
    assert any(line.startswith("max_ell (spherical harmonics of the edges)") for line in lines)
    assert any(line.startswith("r_max (Å)") and line.endswith("5.0") for line in lines)
    assert any(line.startswith("swa_start") and line.endswith("—") for line in lines)
    environment = environment_line(
        {
            "python": "3.11.7",
            "packages": {"torch": "2.13.0", "matgl": None},
            "git": {"commit": "0123456789abcdef", "dirty": True},
            "device": "cpu",
            "threads": 1,
            "seed": 0,
            "host": "ws1",
        }
    )
    assert environment == (
        "python 3.11.7; torch 2.13.0; git 0123456789ab (uncommitted changes); "
        "device cpu, threads 1, seed 0, host ws1"
    )
    assert settings_text({"optimizer": "FIRE", "fmax_ev_per_a": 0.1}) == (
        "optimizer FIRE, fmax_ev_per_a 0.1"
    )
