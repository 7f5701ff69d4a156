"""Training-set exporters, read back with ASE's, MACE's and matgl's own loaders.

The stress conventions are not taken from documentation: two tests differentiate a
small randomly initialised MACE and M3GNet model's energy with respect to strain and
check that what each exporter writes for that strain derivative is exactly the stress
the model outputs, i.e. that training targets and model outputs agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import mx2

from atlas2d.analysis.units import GPA_PER_EV_PER_A3, voigt_to_matrix
from atlas2d.errors import InvalidInput
from atlas2d.io.exporters import (
    MATGL_FRAMES_FILE,
    MATGL_MANIFEST_FILE,
    load_matgl_dataset,
    write_extxyz,
    write_mace_extxyz,
    write_mace_extxyz_batches,
    write_matgl_dataset,
)
from atlas2d.io.records import ExportBatch, ExportFrame
from atlas2d.mlff.forcefield import zero_out_of_plane

LAYER_PBC = (True, True, False)
STRAIN_STEP = 1e-5
"""Central-difference strain step; float64 energies make its truncation error ~1e-10."""


def _layer(seed: int, vacuum: float = 8.0) -> Atoms:
    """A rattled, slightly sheared MoS2 monolayer (pbc T T F)."""
    atoms = mx2("MoS2", a=3.18, vacuum=vacuum)
    atoms.rattle(0.05, seed=seed)
    shear = np.eye(3)
    shear[0, 1] = 0.01 * (seed % 3)
    shear[1, 1] = 1.0 - 0.01 * seed
    atoms.set_cell(atoms.cell[:] @ shear, scale_atoms=True)
    return atoms


def _frame(atoms: Atoms, energy: float, forces: np.ndarray, stress: Any, info: dict) -> ExportFrame:
    return ExportFrame(
        species=atoms.numbers.copy(),
        cell=atoms.cell[:].copy(),
        positions=atoms.positions.copy(),
        energy=energy,
        forces=forces,
        stress=stress,
        info=info,
        pbc=tuple(bool(p) for p in atoms.pbc),
    )


def _layer_frames(n_frames: int = 3, seed: int = 7) -> list[ExportFrame]:
    """Frames of one relaxation with nonzero symmetric stress, z components zeroed."""
    rng = np.random.default_rng(seed)
    frames = []
    for step in range(n_frames):
        atoms = _layer(seed + step)
        raw = rng.standard_normal((3, 3)) * 0.01
        stress = zero_out_of_plane(raw + raw.T)
        info: dict[str, Any] = {
            # "0042" would come back from extxyz as the integer 42 if written plainly.
            "material_key": "MoS2-2H" if step else "0042",
            "relaxation_id": 17,
            "frame_id": 1000 + step,
            "step": step,
            "split": "train" if step < 2 else "val",
            "source": "alexandria pbe",
            "note": None,
        }
        frames.append(
            _frame(atoms, -21.5 - 0.1234567891 * step, rng.standard_normal((3, 3)), stress, info)
        )
    return frames


def _assert_info_kept(read_info: dict, written_info: dict) -> None:
    for key, value in written_info.items():
        assert key in read_info, key
        assert read_info[key] == value, key
        assert type(read_info[key]) is type(value) or not isinstance(value, str | None), key


# --- plain extxyz -------------------------------------------------------------------------


def test_extxyz_round_trip_through_ase(tmp_path: Path) -> None:
    frames = _layer_frames()
    path = tmp_path / "train.extxyz"

    # A generator: the writer must not need len() or a second pass.
    assert write_extxyz((frame for frame in frames), path) == len(frames)

    images = ase.io.read(path, ":")
    assert len(images) == len(frames)
    for atoms, frame in zip(images, frames, strict=True):
        np.testing.assert_array_equal(atoms.numbers, frame.species)
        np.testing.assert_allclose(atoms.positions, frame.positions, atol=1e-8)
        np.testing.assert_allclose(atoms.cell[:], frame.cell, atol=1e-12)
        assert tuple(atoms.pbc) == LAYER_PBC
        assert atoms.get_potential_energy() == pytest.approx(frame.energy, abs=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), frame.forces, atol=1e-8)
        # ASE sign, eV/Å³, not converted: the read-back equals the input tensor.
        np.testing.assert_allclose(atoms.get_stress(voigt=False), frame.stress, atol=1e-15)
        assert np.abs(frame.stress).max() > 1e-3
        _assert_info_kept(atoms.info, frame.info)


def test_extxyz_frame_without_stress_has_none(tmp_path: Path) -> None:
    frames = _layer_frames(2)
    frames[1].stress = None
    path = tmp_path / "train.extxyz"
    write_extxyz(frames, path)

    with_stress, without_stress = ase.io.read(path, ":")
    assert "stress" in with_stress.calc.results
    assert "stress" not in without_stress.calc.results
    assert without_stress.get_potential_energy() == pytest.approx(frames[1].energy, abs=1e-12)


def test_rejected_frame_leaves_no_file(tmp_path: Path) -> None:
    frames = _layer_frames()
    frames[2].info["energy"] = 1.0  # ASE would read it back as the label
    path = tmp_path / "train.extxyz"
    with pytest.raises(InvalidInput, match=r"Frame 2 .*'energy'"):
        write_extxyz(frames, path)
    assert list(tmp_path.iterdir()) == []

    frames = _layer_frames()
    frames[1].forces = frames[1].forces[:2]
    with pytest.raises(InvalidInput, match=r"Frame 1 .*forces of shape \(2, 3\)"):
        write_mace_extxyz(frames, path)
    assert list(tmp_path.iterdir()) == []


# --- MACE ---------------------------------------------------------------------------------


def _ase_mace_text(frames: list[ExportFrame], path: Path) -> str:
    """The MACE extxyz that ``ase.io.write`` gives for the frames (the writer as it was,
    with the same info conversion): the reference the array writer must reproduce."""
    from ase.stress import full_3x3_to_voigt_6_stress

    from atlas2d.io import exporters

    with path.open("w") as handle:
        for index, frame in enumerate(frames):
            atoms = Atoms(
                numbers=frame.species, positions=frame.positions, cell=frame.cell, pbc=True
            )
            info = exporters._extxyz_info(frame, index, exporters._MACE_RESERVED_INFO_KEYS)
            info["config_type"] = frame.info.get("config_type", "Default")
            info["REF_energy"] = float(frame.energy)
            if frame.stress is not None:
                info["REF_stress"] = full_3x3_to_voigt_6_stress(frame.stress)
            atoms.info.update(info)
            atoms.arrays["REF_forces"] = np.asarray(frame.forces, dtype=np.float64)
            ase.io.write(handle, atoms, format="extxyz")
    return path.read_text()


def _edge_frames() -> list[ExportFrame]:
    """Layer frames plus a 1-atom frame, a frame without stress, extreme and negative-zero
    values."""
    frames = _layer_frames(3)
    frames[1].stress = None
    frames[2].forces = frames[2].forces * np.array([1e-12, -0.0, 1e6])
    frames[2].positions[0] = [-0.0, 1e-9, 123.456789012345]
    single = Atoms(
        "Mo", positions=[[0.1, 0.2, 5.0]], cell=[[3.2, 0, 0], [-1.6, 2.77, 0], [0, 0, 20]]
    )
    frames.append(
        _frame(
            single,
            -10.9,
            np.array([[0.0, 0.0, 0.0]]),
            np.diag([0.01, -0.02, 0.0]),
            {"material_key": "Mo-1", "relaxation_id": 3, "frame_id": 9, "step": 0, "note": None},
        )
    )
    return frames


def test_mace_text_equals_what_ase_writes(tmp_path: Path) -> None:
    frames = _edge_frames()
    path = tmp_path / "mace.extxyz"
    assert write_mace_extxyz(frames, path) == len(frames)
    assert path.read_text() == _ase_mace_text(frames, tmp_path / "ase.extxyz")


def test_mace_text_reads_back_through_ase(tmp_path: Path) -> None:
    frames = _edge_frames()
    path = tmp_path / "mace.extxyz"
    write_mace_extxyz(frames, path)
    images = ase.io.read(path, index=":")
    assert len(images) == len(frames)
    for atoms, frame in zip(images, frames, strict=True):
        np.testing.assert_array_equal(atoms.numbers, frame.species)
        np.testing.assert_array_equal(atoms.cell[:], frame.cell)  # full precision
        np.testing.assert_allclose(atoms.positions, frame.positions, rtol=0, atol=5e-9)
        np.testing.assert_allclose(atoms.arrays["REF_forces"], frame.forces, rtol=0, atol=5e-9)
        assert tuple(atoms.pbc) == (True, True, True)
        assert atoms.info["REF_energy"] == frame.energy
        if frame.stress is None:
            assert "REF_stress" not in atoms.info
        else:
            np.testing.assert_array_equal(
                voigt_to_matrix(atoms.info["REF_stress"]), (frame.stress + frame.stress.T) / 2
            )
        assert atoms.info["config_type"] == "Default"
        _assert_info_kept(atoms.info, frame.info)


def _batch(frames: list[ExportFrame]) -> ExportBatch:
    """The frames column-wise (they share their info keys)."""
    sizes = [len(frame.species) for frame in frames]
    return ExportBatch(
        species=np.concatenate([frame.species for frame in frames]).astype(np.int64),
        bounds=np.concatenate(([0], np.cumsum(sizes))),
        cells=np.array([frame.cell for frame in frames], dtype=np.float64),
        positions=np.concatenate([frame.positions for frame in frames]),
        forces=np.concatenate([frame.forces for frame in frames]),
        energies=np.array([frame.energy for frame in frames]),
        stresses=np.array([np.zeros((3, 3)) if f.stress is None else f.stress for f in frames]),
        has_stress=np.array([frame.stress is not None for frame in frames]),
        info={key: [frame.info[key] for frame in frames] for key in frames[0].info},
        pbc=[frame.pbc for frame in frames],
    )


def _plain_edge_frames() -> list[ExportFrame]:
    """``_edge_frames`` with identifiers the batch template takes (text and integers):
    keys ASE quotes, a ``%`` to escape, a zero cell, negative zeros, no stress."""
    frames = _edge_frames()
    keys = ["0042", "MoS2 2H", "50%Mo", "Mo-1"]
    for index, (frame, key) in enumerate(zip(frames, keys, strict=True)):
        frame.info = {
            "material_key": key,
            "frame_id": 2**40 + index,
            "split": "train",
            "n%d": index,  # a % in a key is text in the template, not a placeholder
        }
    frames[3].cell = np.zeros((3, 3))
    frames[1].energy = -0.0
    return frames


def test_mace_batches_write_what_the_frame_writer_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atlas2d.io import exporters

    frames = _plain_edge_frames()
    expected = tmp_path / "frames.extxyz"
    write_mace_extxyz(frames, expected)
    # The template, not the frame-by-frame way: refuse the latter.
    with monkeypatch.context() as patched:
        patched.setattr(exporters, "_mace_frame_text", None)
        path = tmp_path / "batches.extxyz"
        assert write_mace_extxyz_batches([_batch(frames[:1]), _batch(frames[1:])], path) == 4
    text = path.read_text()
    assert text == expected.read_text()
    for needed in ('material_key="MoS2 2H"', "material_key=50%Mo", "REF_energy=-0.0", "n%d=3"):
        assert needed in text
    assert text.splitlines()[-2].startswith("Properties=")  # the 1-atom frame's zero cell


def _none_in_a_column(frames: list[ExportFrame]) -> None:
    frames[2].info["split"] = None


def _config_types(frames: list[ExportFrame]) -> None:
    for frame in frames:
        frame.info["config_type"] = "strained"


def _forces_whose_sum_overflows(frames: list[ExportFrame]) -> None:
    frames[2].forces = np.full((3, 3), 1e308)


@pytest.mark.parametrize("change", [_none_in_a_column, _config_types, _forces_whose_sum_overflows])
def test_mace_batches_the_template_cannot_take_go_frame_by_frame(
    tmp_path: Path, change: Callable[[list[ExportFrame]], None]
) -> None:
    frames = _plain_edge_frames()
    change(frames)
    expected = tmp_path / "frames.extxyz"
    write_mace_extxyz(frames, expected)
    path = tmp_path / "batches.extxyz"
    assert write_mace_extxyz_batches([_batch(frames[:2]), _batch(frames[2:])], path) == 4
    assert path.read_text() == expected.read_text()


def test_mace_batches_refuse_a_bad_frame_by_its_place_in_the_file(tmp_path: Path) -> None:
    frames = _plain_edge_frames()
    frames[2].forces = frames[2].forces.copy()
    frames[2].forces[1, 1] = np.inf
    path = tmp_path / "batches.extxyz"
    refused = pytest.raises(InvalidInput, match=r"Frame 2 \(material_key=50%Mo.*non-finite forces")
    with refused:
        write_mace_extxyz_batches([_batch(frames[:2]), _batch(frames[2:])], path)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def torch_float64() -> Iterator[None]:
    """float64 everywhere (finite differences need it); torch state restored afterwards."""
    import mace  # noqa: F401  (mace must load before e3nn: it sets how e3nn reads its tables)
    import torch

    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def _load_mace(path: Path) -> list:
    from mace.data.utils import KeySpecification, load_from_xyz

    _, configs = load_from_xyz(str(path), KeySpecification.from_defaults())
    return configs


def test_mace_loader_sees_labels_in_ev_and_ase_sign(tmp_path: Path, torch_float64: None) -> None:
    from mace.data import AtomicData
    from mace.tools import AtomicNumberTable

    frames = _layer_frames()
    frames[1].info["config_type"] = "strained"
    frames[2].stress = None
    path = tmp_path / "mace.extxyz"
    assert write_mace_extxyz(iter(frames), path) == len(frames)

    configs = _load_mace(path)
    assert len(configs) == len(frames)
    z_table = AtomicNumberTable([16, 42])
    for config, frame in zip(configs, frames, strict=True):
        np.testing.assert_array_equal(config.atomic_numbers, frame.species)
        np.testing.assert_allclose(config.positions, frame.positions, atol=1e-8)
        np.testing.assert_allclose(config.cell, frame.cell, atol=1e-12)
        assert config.pbc == (True, True, True)
        assert config.config_type == frame.info.get("config_type", "Default")
        assert config.properties["energy"] == pytest.approx(frame.energy, abs=1e-12)
        np.testing.assert_allclose(config.properties["forces"], frame.forces, atol=1e-8)
        # What the loss compares against the model's stress.
        data = AtomicData.from_config(config, z_table=z_table, cutoff=4.0)
        assert data.energy.item() == pytest.approx(frame.energy, abs=1e-12)
        np.testing.assert_allclose(data.forces.numpy(), frame.forces, atol=1e-8)
        if frame.stress is None:
            assert config.properties["stress"] is None
            assert config.property_weights["stress"] == 0.0
        else:
            assert config.property_weights["stress"] == 1.0
            np.testing.assert_allclose(
                voigt_to_matrix(config.properties["stress"]), frame.stress, atol=1e-15
            )
            np.testing.assert_allclose(data.stress[0].numpy(), frame.stress, atol=1e-15)

    # Labels are plain keys, not calculator results, and the identifiers travel along.
    for atoms, frame in zip(ase.io.read(path, ":"), frames, strict=True):
        assert atoms.calc is None
        _assert_info_kept(atoms.info, frame.info)


def _strain_derivative(energy_of: Callable[[Atoms], float], atoms: Atoms) -> np.ndarray:
    """σ_ij = (1/V) ∂E/∂ε_ij (eV/Å³) by central differences of symmetric strains.

    The strain moves cell rows and Cartesian positions alike, r → r (I + ε), as ASE's
    ``calculate_numerical_stress`` does.
    """
    volume = atoms.get_volume()
    derivative = np.zeros((3, 3))
    for i in range(3):
        for j in range(i, 3):
            energies = []
            for sign in (1.0, -1.0):
                strain = np.zeros((3, 3))
                # ε_ij = ε_ji = h/2 off the diagonal, so dE/dh is ∂E/∂ε_ij for a symmetric σ.
                strain[i, j] += sign * STRAIN_STEP / (1.0 if i == j else 2.0)
                strain[j, i] = strain[i, j]
                strained = atoms.copy()
                strained.set_cell(atoms.cell[:] @ (np.eye(3) + strain), scale_atoms=True)
                energies.append(energy_of(strained))
            derivative[i, j] = derivative[j, i] = (energies[0] - energies[1]) / (2 * STRAIN_STEP)
    return derivative / volume


def _tiny_mace(z_table: Any, r_max: float) -> Any:
    import torch
    from e3nn import o3
    from mace import modules

    torch.manual_seed(0)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return modules.MACE(
        r_max=r_max,
        num_bessel=4,
        num_polynomial_cutoff=5,
        max_ell=2,
        interaction_cls=block,
        interaction_cls_first=block,
        num_interactions=1,
        num_elements=len(z_table),
        hidden_irreps=o3.Irreps("8x0e+8x1o"),
        MLP_irreps=o3.Irreps("8x0e"),
        atomic_energies=np.zeros(len(z_table)),
        avg_num_neighbors=6.0,
        atomic_numbers=z_table.zs,
        correlation=2,
        gate=torch.nn.functional.silu,
    )


def test_mace_stress_target_equals_model_stress_by_finite_differences(
    tmp_path: Path, torch_float64: None
) -> None:
    from mace.data import AtomicData, config_from_atoms
    from mace.tools import AtomicNumberTable
    from mace.tools.torch_geometric.dataloader import DataLoader

    r_max = 4.0
    z_table = AtomicNumberTable([16, 42])
    model = _tiny_mace(z_table, r_max)

    def run(config: Any) -> dict:
        data = AtomicData.from_config(config, z_table=z_table, cutoff=r_max)
        batch = next(iter(DataLoader([data], batch_size=1)))
        return model(batch.to_dict(), training=False, compute_stress=True)

    atoms = _layer(seed=1, vacuum=5.0)
    # The DFT cell is 3D periodic; with the vacuum wider than r_max the energy is the
    # same as for the isolated layer, and the volume is the real cell's.
    atoms.pbc = True
    fd_stress = _strain_derivative(
        lambda a: float(run(config_from_atoms(a))["energy"][0].detach()), atoms
    )
    assert np.abs(fd_stress).max() > 1e-5

    # Export a layer (pbc T T F, as atlas2d stores it) whose reference stress is the
    # model's own strain derivative; MACE must see a target equal to its prediction.
    frame = _frame(atoms, 0.0, np.zeros((3, 3)), fd_stress, {"material_key": "MoS2"})
    frame.pbc = LAYER_PBC
    path = tmp_path / "mace.extxyz"
    write_mace_extxyz([frame], path)
    (config,) = _load_mace(path)
    data = AtomicData.from_config(config, z_table=z_table, cutoff=r_max)
    predicted = run(config)["stress"][0].detach().numpy()

    tolerance = {"rtol": 1e-5, "atol": 1e-6 * np.abs(fd_stress).max()}
    np.testing.assert_allclose(predicted, fd_stress, **tolerance)  # + sign, eV/Å³
    np.testing.assert_allclose(data.stress[0].numpy(), predicted, **tolerance)


# --- matgl --------------------------------------------------------------------------------


@pytest.fixture
def matgl_float64(torch_float64: None) -> Iterator[None]:
    """matgl's own float type switched to float64 too, and restored."""
    import matgl

    float_th, float_np = matgl.float_th, matgl.float_np
    matgl.set_default_dtype("float", 64)
    yield
    matgl.float_th, matgl.float_np = float_th, float_np


def test_matgl_loader_sees_labels_in_gpa(tmp_path: Path, matgl_float64: None) -> None:
    frames = _layer_frames()
    out_dir = tmp_path / "matgl"
    assert write_matgl_dataset(iter(frames), out_dir) == len(frames)

    manifest = json.loads((out_dir / MATGL_MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["n_frames"] == len(frames)
    assert manifest["element_types"] == ["S", "Mo"]
    assert manifest["units"]["stress"] == "GPa"
    records = [json.loads(line) for line in (out_dir / MATGL_FRAMES_FILE).read_text().splitlines()]
    assert [record["info"] for record in records] == [frame.info for frame in frames]

    dataset = load_matgl_dataset(out_dir, cutoff=4.0, root=tmp_path / "cache")
    assert len(dataset) == len(frames)
    assert dataset.element_types == ("S", "Mo")
    labels = dataset.labels
    for index, frame in enumerate(frames):
        structure = dataset.structures[index]
        np.testing.assert_allclose(structure.lattice.matrix, frame.cell, atol=1e-12)
        np.testing.assert_allclose(structure.cart_coords, frame.positions, atol=1e-10)
        assert [site.specie.Z for site in structure] == list(frame.species)
        assert labels["energies"][index] == pytest.approx(frame.energy, abs=1e-12)
        np.testing.assert_allclose(labels["forces"][index], frame.forces, atol=1e-12)
        # GPa, same sign as ASE (see the finite-difference test below).
        expected_gpa = frame.stress * GPA_PER_EV_PER_A3
        np.testing.assert_allclose(labels["stresses"][index], expected_gpa, atol=1e-12)
        assert np.abs(expected_gpa).max() > 0.1
        # What a training batch hands to the loss.
        *_, item_labels = dataset[index]
        np.testing.assert_allclose(item_labels["stresses"].numpy(), expected_gpa, atol=1e-12)
        np.testing.assert_allclose(item_labels["forces"].numpy(), frame.forces, atol=1e-12)


def test_matgl_export_needs_stress_on_all_frames_or_none(tmp_path: Path) -> None:
    frames = _layer_frames()
    frames[1].stress = None
    out_dir = tmp_path / "matgl"
    with pytest.raises(InvalidInput, match=r"Frame 1 .*lacks a stress"):
        write_matgl_dataset(frames, out_dir)
    assert list(out_dir.iterdir()) == []

    for frame in frames:
        frame.stress = None
    assert write_matgl_dataset(frames, out_dir) == len(frames)
    assert json.loads((out_dir / MATGL_MANIFEST_FILE).read_text())["has_stress"] is False
    first = json.loads((out_dir / MATGL_FRAMES_FILE).read_text().splitlines()[0])
    assert "stress" not in first


def test_matgl_stress_target_equals_potential_stress_by_finite_differences(
    tmp_path: Path, matgl_float64: None
) -> None:
    import torch
    from ase.stress import voigt_6_to_full_3x3_stress
    from matgl.apps.pes import Potential
    from matgl.ext.ase import PESCalculator
    from matgl.ext.pymatgen import Structure2Graph
    from matgl.models import M3GNet
    from pymatgen.io.ase import AseAtomsAdaptor

    element_types = ("S", "Mo")
    cutoff = 4.0
    torch.manual_seed(0)
    model = M3GNet(
        element_types=element_types,
        dim_node_embedding=8,
        dim_edge_embedding=8,
        units=8,
        nblocks=1,
        max_n=2,
        max_l=2,
        cutoff=cutoff,
        threebody_cutoff=3.5,
        is_intensive=False,
    )
    potential = Potential(model, calc_stresses=True)
    converter = Structure2Graph(element_types=element_types, cutoff=cutoff)

    def evaluate(atoms: Atoms) -> tuple:
        graph, lattice, state = converter.get_graph(AseAtomsAdaptor.get_structure(atoms))
        return potential(graph, lattice, state)

    atoms = _layer(seed=1, vacuum=5.0)
    atoms.pbc = True  # matgl graphs are 3D periodic; the vacuum is wider than the cutoff
    fd_stress = _strain_derivative(lambda a: float(evaluate(a)[0].detach()), atoms)
    assert np.abs(fd_stress).max() > 1e-6

    matgl_stress = evaluate(atoms)[2].detach().numpy()
    tolerance = {"rtol": 1e-5, "atol": 1e-6 * np.abs(fd_stress).max() * GPA_PER_EV_PER_A3}
    # matgl's Potential: GPa, + sign, i.e. ASE's convention times 160.21766208.
    np.testing.assert_allclose(matgl_stress, fd_stress * GPA_PER_EV_PER_A3, **tolerance)
    # matgl's own ASE calculator turns it back into the ASE stress without a sign flip.
    atoms.calc = PESCalculator(potential, stress_unit="eV/A3")
    ase_stress = voigt_6_to_full_3x3_stress(atoms.get_stress())
    np.testing.assert_allclose(ase_stress, fd_stress, rtol=1e-5, atol=tolerance["atol"])

    # A frame whose (ASE) stress is that derivative exports to exactly the label the
    # Potential outputs for the graph matgl's loader builds from the export.
    frame = _frame(atoms, 0.0, np.zeros((3, 3)), fd_stress, {"material_key": "MoS2"})
    frame.pbc = LAYER_PBC
    out_dir = tmp_path / "matgl"
    write_matgl_dataset([frame], out_dir)
    dataset = load_matgl_dataset(
        out_dir, cutoff=cutoff, element_types=element_types, root=tmp_path / "cache"
    )
    graph, lattice, state, labels = dataset[0]
    predicted = potential(graph, lattice, state)[2].detach().numpy()
    np.testing.assert_allclose(labels["stresses"].numpy(), predicted, **tolerance)
    np.testing.assert_allclose(predicted, matgl_stress, **tolerance)


def test_mace_writer_refuses_non_finite_labels_and_keeps_huge_finite_ones(
    tmp_path: Path,
) -> None:
    frames = _layer_frames(2)
    frames[0].forces = np.full((3, 3), 1e308)  # finite, though their sum overflows
    path = tmp_path / "mace.extxyz"
    write_mace_extxyz(frames, path)
    assert ase.io.read(path, index=0).arrays["REF_forces"][0, 0] == 1e308
    frames[1].forces[2, 1] = np.nan
    with pytest.raises(InvalidInput, match=r"Frame 1 .*non-finite forces"):
        write_mace_extxyz(frames, path)
