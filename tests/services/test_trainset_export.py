"""Training-set exports from the database, loaded back with ASE, MACE and matgl, and the
trainset commands end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import read
from sqlalchemy import text

from atlas2d.analysis.units import GPA_PER_EV_PER_A3
from atlas2d.io.exporters import load_matgl_dataset
from atlas2d.io.readers import ReadOptions
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.ingest import ingest_file
from atlas2d.services.trainset_export import export_training_set
from atlas2d.services.trainsets import create_training_set
from tests.conftest import VASP_DATA
from tests.io.test_vasp import _raw_stresses_kbar
from tests.support.synthetic import alexandria_document, synthetic_trajectories

FE2O2 = VASP_DATA / "Fe2O2_relax_vasprun.xml.gz"


def test_exported_vasp_stress_matches_the_kbar_in_the_file(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ingest_file(sessions, FE2O2, ReadOptions())
    create_training_set(sessions, "fe", SelectionParameters(rule="all", split=(100.0, 0.0, 0.0)))
    written = export_training_set(sessions, "fe", "extxyz", tmp_path)
    assert set(written) == {"train"} and written["train"][1] == 28
    frames = read(written["train"][0], ":")
    kbar = _raw_stresses_kbar(FE2O2)  # FeO bulk: no component is zeroed
    for atoms in frames:
        step = atoms.info["step"]
        # extxyz keeps the symmetric (Voigt) part; VASP prints ~1e-6 kBar asymmetries.
        symmetric = (kbar[step] + kbar[step].T) / 2
        assert np.allclose(
            atoms.get_stress(voigt=False), -symmetric / 1602.1766208, rtol=0, atol=1e-12
        )
    with sessions.begin() as session:
        frame_ids = set(session.execute(text("SELECT frame_id FROM training_set_frames")).scalars())
        relaxation_id = session.execute(text("SELECT id FROM relaxations")).scalar_one()
    assert {a.info["frame_id"] for a in frames} == frame_ids
    assert {a.info["material_key"] for a in frames} == {"Fe2O2_relax"}
    assert {a.info["split"] for a in frames} == {"train"}
    assert {int(a.info["relaxation_id"]) for a in frames} == {relaxation_id}


@pytest.fixture
def layers(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "layers.json"
    path.write_text(json.dumps(alexandria_document(synthetic_trajectories(12, 6, 6, seed=21))))
    ingest_file(sessions, path, ReadOptions())
    create_training_set(sessions, "layers", SelectionParameters(ecut=1e6, split=(50.0, 25.0, 25.0)))


def _stored_stress(sessions, frame_id: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        return np.asarray(
            session.execute(
                text("SELECT stress FROM frames WHERE id = :id"), {"id": frame_id}
            ).scalar_one()
        )


def test_mace_export_zeroes_out_of_plane_stress_and_loads_in_mace(
    sessions, layers, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from mace.data.utils import KeySpecification, load_from_xyz

    written = export_training_set(sessions, "layers", "mace", tmp_path)
    assert {split: count for split, (_, count) in written.items()} == {
        "train": 18,
        "val": 9,
        "test": 9,
    }
    for split, (path, count) in written.items():
        _, configs = load_from_xyz(str(path), KeySpecification.from_defaults())
        assert len(configs) == count
        atoms = read(path, ":")
        for config, frame in zip(configs, atoms, strict=True):
            stored = _stored_stress(sessions, frame.info["frame_id"])
            expected = stored.copy()
            expected[2, :] = expected[:, 2] = 0.0
            mace_stress = np.asarray(config.properties["stress"])
            assert np.allclose(mace_stress, expected[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
            assert np.abs(stored[:2, :2]).max() > 0  # in-plane stress survives
            assert frame.info["split"] == split


def test_matgl_export_loads_in_matgl_with_gpa_stress(sessions, layers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    written = export_training_set(sessions, "layers", "matgl", tmp_path)
    path, count = written["train"]
    dataset = load_matgl_dataset(path)
    assert len(dataset) == count == 18
    records = [json.loads(line) for line in (path / "frames.jsonl").read_text().splitlines()]
    for index, record in enumerate(records):
        stored = _stored_stress(sessions, record["info"]["frame_id"])
        expected = stored.copy()
        expected[2, :] = expected[:, 2] = 0.0
        label = np.asarray(dataset.labels["stresses"][index], dtype=np.float64).reshape(3, 3)
        assert np.allclose(label, expected * GPA_PER_EV_PER_A3, atol=1e-6)


def test_trainset_commands(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "layers.json"
    path.write_text(json.dumps(alexandria_document(synthetic_trajectories(10, 8, 6, seed=5))))
    assert cli("ingest", str(path))[0] == 0
    code, out, _ = cli(
        "trainset", "create", "t1", "--ecut", "0.01", "--split", "80:10:10", "--seed", "3"
    )
    assert code == 0, out
    assert "content hash:" in out and "kept by the rule" in out and "flagged: max_force" in out
    code, dry, _ = cli(
        "trainset",
        "create",
        "t2",
        "--ecut",
        "0.01",
        "--split",
        "80:10:10",
        "--seed",
        "3",
        "--dry-run",
    )
    assert code == 0 and "dry run: nothing stored" in dry and "content hash:" not in dry
    # The same filter counts as the stored set's.
    filters = out.split("outlier filters")[1].split("content hash")[0]
    assert dry.split("outlier filters")[1].split("dry run")[0] == filters
    code, out, _ = cli("trainset", "list", "--format", "json")
    (listed,) = json.loads(out)
    assert listed["name"] == "t1" and listed["train_frames"] > 0
    code, out, _ = cli("trainset", "show", "t1", "--format", "json")
    shown = json.loads(out)
    assert shown["parameters"]["split"] == [80.0, 10.0, 10.0] and shown["parameters"]["seed"] == 3
    code, out, _ = cli("trainset", "verify", "t1")
    assert code == 0 and "reproduced" in out
    code, out, _ = cli(
        "trainset", "export", "t1", "--format", "extxyz", "--out", str(tmp_path / "out")
    )
    assert code == 0 and "train:" in out
    mace = ("trainset", "export", "t1", "--format", "mace", "--out", str(tmp_path / "m"))
    code, out, _ = cli(*mace, "--processes", "2")
    assert code == 0 and "train:" in out  # a small set: written by this process alone
    code, _, err = cli(*mace, "--processes", "-1")
    assert code == 1 and "--processes -1: give 0 (one per CPU) or more." in err
    code, _, err = cli("trainset", "create", "bad", "--split", "90:20:5")
    assert code == 1 and "summing to 100" in err
    code, out, _ = cli(
        "sql", "SELECT min(frame_id) AS f FROM training_set_frames", "--format", "csv"
    )
    frame_id = out.splitlines()[1]
    from atlas2d.cli import context

    with context.connect().sessions.begin() as session:
        session.execute(text(f"DELETE FROM frames WHERE id = {frame_id}"))
    code, out, _ = cli("trainset", "verify", "t1")
    assert code == 1
    assert (
        "does NOT reproduce" in out
        and f"selected frames deleted from the database: frame ids [{frame_id}]" in out
    )
