"""``label``: structures relaxed by the reference labeller and stored as DFT data through
the ingest path, marked as the labeller's; re-running writes nothing; a bad file is named
and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, mx2
from sqlalchemy import text

from atlas2d.errors import InvalidInput
from atlas2d.mlff.labeller import LabelSettings
from atlas2d.queries.materials import MaterialFilter
from atlas2d.services import label as label_service
from atlas2d.services.label import LabelRequest, label

FEW_STEPS = LabelSettings(fmax=0.05, max_steps=8)


def _structures() -> list[Atoms]:
    layer = mx2("WS2", a=3.3, thickness=3.1, vacuum=8.0)
    layer.rattle(0.04, seed=1)
    layer.pbc = True
    layer.info["material_key"] = "ws2-layer"
    silicon = bulk("Si", "diamond", a=5.55)
    silicon.rattle(0.02, seed=2)
    silicon.info["material_key"] = "si-bulk"
    return [layer, silicon]


@pytest.fixture
def structures_file(tmp_path: Path) -> Path:
    path = tmp_path / "candidates.extxyz"
    ase.io.write(path, _structures(), format="extxyz")
    return path


def _rows(sessions, sql: str) -> list:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        return list(session.execute(text(sql)))


STORED = """
SELECT m.key, m.dimensionality, r.method, r.parameters, r.n_steps, r.converged, r.info,
       s.format, s.path, (SELECT count(*) FROM frames f WHERE f.relaxation_id = r.id) AS frames
FROM relaxations r JOIN materials m ON m.id = r.material_id JOIN sources s ON s.id = r.source_id
ORDER BY m.key
"""


def test_label_from_a_file_stores_marked_dft_trajectories_once(
    sessions, count_rows, structures_file: Path
) -> None:  # type: ignore[no-untyped-def]
    progress: list[tuple[int, int, int]] = []
    request = LabelRequest(files=(structures_file,), settings=FEW_STEPS)
    report = label(sessions, request, lambda *done: progress.append(done))
    assert (report.requested, report.already_labelled, report.labelled) == (2, 0, 2)
    assert report.stored == 2 and report.materials_new == 2
    assert [p[:2] for p in progress] == [(1, 2), (2, 2)]
    rows = _rows(sessions, STORED)
    assert [(r.key, r.dimensionality) for r in rows] == [("si-bulk", 3), ("ws2-layer", 2)]
    for row in rows:
        assert row.method == "dft" and row.format == "labeller"
        assert row.path == str(structures_file)
        assert row.parameters["reference"] == "labeller"
        assert row.parameters["labeller"] == "CHGNet"
        assert row.parameters["fmax"] == 0.05 and row.parameters["max_steps"] == 8
        assert row.n_steps == row.frames == row.info["optimizer_steps"] + 1  # every step
        assert row.info["start"].startswith("file:") and len(row.info["label_key"]) == 64
    assert sorted(r.info["optimizer_steps"] for r in rows) == sorted(report.optimizer_steps)
    cell_relax = {r.key: r.parameters["cell_relax"] for r in rows}
    assert cell_relax == {"si-bulk": "full", "ws2-layer": "in-plane"}
    assert report.frames == sum(r.frames for r in rows)
    counts = {t: count_rows(t) for t in ("sources", "materials", "relaxations", "frames")}

    again = label(sessions, request)
    assert (again.requested, again.already_labelled, again.labelled, again.stored) == (2, 2, 0, 0)
    assert {t: count_rows(t) for t in counts} == counts


def test_a_relabelled_trajectory_is_recognised_by_its_content_hash(
    sessions, count_rows, structures_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    request = LabelRequest(files=(structures_file,), settings=FEW_STEPS)
    label(sessions, request)
    counts = {t: count_rows(t) for t in ("sources", "materials", "relaxations", "frames")}
    # Forget what was labelled: the labeller runs again, ingest stores nothing new.
    monkeypatch.setattr(label_service.queries, "labelled_keys", lambda session, keys: set())
    again = label(sessions, request)
    assert again.labelled == 2 and again.stored == 0 and again.frames == 0
    assert {t: count_rows(t) for t in counts} == counts


def test_a_bad_file_is_named_and_nothing_is_written(
    sessions, count_rows, structures_file: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "broken.extxyz"
    bad.write_text("3\nthis is not an extxyz header\nMo 0 0\n")
    with pytest.raises(InvalidInput, match=r"broken\.extxyz"):
        label(sessions, LabelRequest(files=(structures_file, bad), settings=FEW_STEPS))
    # A wire (vacuum along two axes) in an otherwise good file: named, nothing labelled.
    wire = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.3]], cell=[12, 12, 4.6], pbc=True)
    wire.info["material_key"] = "si-wire"
    mixed = tmp_path / "mixed.extxyz"
    ase.io.write(mixed, [*_structures(), wire], format="extxyz")
    with pytest.raises(InvalidInput, match=r"mixed\.extxyz: structure 2: .*vacuum along a, b"):
        label(sessions, LabelRequest(files=(mixed,), settings=FEW_STEPS))
    assert [count_rows(t) for t in ("sources", "materials", "relaxations", "frames")] == [0] * 4


def test_label_stored_materials(sessions, count_rows, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from atlas2d.io.readers import ReadOptions
    from atlas2d.services.ingest import ingest_file
    from tests.support.synthetic import alexandria_document, synthetic_trajectories

    path = tmp_path / "layers.json"
    layers = synthetic_trajectories(3, 4, 3, seed=5)
    path.write_text(json.dumps(alexandria_document(layers)))
    ingest_file(sessions, path, ReadOptions())
    chosen = layers[0]
    chemsys = "-".join(sorted(_symbols(chosen.species)))
    selection = MaterialFilter(chemsys=(chemsys,))
    report = label(sessions, LabelRequest(materials=selection, settings=LabelSettings(max_steps=3)))
    expected = sum(1 for t in layers if "-".join(sorted(_symbols(t.species))) == chemsys)
    assert report.labelled == expected
    rows = _rows(
        sessions,
        "SELECT r.info->>'start' AS start, s.path FROM relaxations r"
        " JOIN sources s ON s.id = r.source_id WHERE s.format = 'labeller'",
    )
    assert len(rows) == expected
    assert all(r.start.startswith("frame:") for r in rows)
    assert rows[0].path == f"atlas2d label --materials --chemsys {chemsys}"
    assert count_rows("materials") == 3  # the stored materials got a second relaxation


def _symbols(species: np.ndarray) -> set[str]:
    from ase.data import chemical_symbols

    return {chemical_symbols[int(z)] for z in species}


def test_request_needs_one_kind_of_input(sessions) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="one of files"):
        label(sessions, LabelRequest())
    with pytest.raises(InvalidInput, match="--fmax"):
        label(sessions, LabelRequest(files=(Path("x.extxyz"),), settings=LabelSettings(fmax=0)))


def test_cli_label(cli, structures_file: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("label", "--from-file", str(structures_file), "--steps", "5")
    assert code == 0, out
    assert "2 requested, 0 already labelled, 2 labelled" in out
    code, out, _ = cli("label", "--from-file", str(structures_file), "--steps", "5")
    assert "2 requested, 2 already labelled, 0 labelled" in out
    code, _, err = cli("label")
    assert code == 1 and "Nothing to label" in err
