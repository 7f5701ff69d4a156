"""VASP readers on real files from tests/data/vasp."""

from __future__ import annotations

import gzip
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from atlas2d.errors import InvalidInput
from atlas2d.io.files import read_bytes
from atlas2d.io.readers import ReadOptions, read_file
from atlas2d.io.vasp import default_material_key, read_vasprun
from tests.conftest import VASP_DATA

FE2O2 = VASP_DATA / "Fe2O2_relax_vasprun.xml.gz"
LI_OUTCAR = VASP_DATA / "Li28P12S44_relax_OUTCAR.gz"
X_SPECIES = VASP_DATA / "Cl8F88Sb16X8_relax_vasprun.xml.gz"


def _raw_stresses_kbar(path: Path) -> np.ndarray:
    """Every ionic step's stress as printed by VASP (kBar), read independently."""
    root = ET.fromstring(gzip.decompress(path.read_bytes()))
    return np.array(
        [
            [[float(x) for x in v.text.split()] for v in calc.find("varray[@name='stress']")]
            for calc in root.iter("calculation")
        ]
    )


def test_vasprun_reads_every_ionic_step_like_ase() -> None:
    parsed = read_file(FE2O2, ReadOptions())
    (traj,) = parsed.trajectories
    images = read(FE2O2, index=":")
    assert traj.n_frames == len(images) == 28
    assert traj.material_key == "Fe2O2_relax"
    assert np.allclose(traj.energies, [a.get_potential_energy() for a in images], atol=1e-10)
    assert np.allclose(traj.forces, [a.get_forces() for a in images])
    assert np.allclose(traj.positions, [a.positions for a in images])
    assert traj.species.tolist() == images[0].numbers.tolist()
    assert traj.parameters["incar"]["NSW"] > 0
    assert traj.converged in (True, False)


def test_vasprun_stress_is_converted_from_kbar_with_the_sign_flipped() -> None:
    (traj,) = read_file(FE2O2, ReadOptions()).trajectories
    kbar = _raw_stresses_kbar(FE2O2)
    assert traj.stresses is not None
    assert np.allclose(traj.stresses, -kbar / 1602.1766208, rtol=1e-12, atol=0)
    assert np.abs(kbar).max() > 1.0  # the check is not vacuous


def test_outcar_reads_every_ionic_step() -> None:
    (traj,) = read_file(LI_OUTCAR, ReadOptions()).trajectories
    text = gzip.decompress(LI_OUTCAR.read_bytes()).decode()
    # Ionic steps end with a "FREE ENERGIE OF THE ION-ELECTRON SYSTEM" block.
    blocks = text.split("FREE ENERGIE OF THE ION-ELECTRON SYSTEM")[1:]
    sigma0 = [float(re.search(r"energy\(sigma->0\) =\s+(\S+)", b).group(1)) for b in blocks]
    assert traj.n_frames == 10 == len(sigma0)
    assert np.allclose(traj.energies, sigma0)
    assert traj.n_sites == 28 + 12 + 44
    assert traj.stresses is None  # ISIF = 0: VASP printed no stress


def test_a_species_that_is_not_an_element_is_refused() -> None:
    with pytest.raises(InvalidInput) as error:
        read_file(X_SPECIES, ReadOptions())
    message = str(error.value)
    assert str(X_SPECIES) in message
    assert "species 'X'" in message and "atominfo/atoms" in message
    assert "Nothing from this file was written" in message


def test_truncated_vasprun_names_the_last_complete_step() -> None:
    content = gzip.decompress(FE2O2.read_bytes())
    starts = [i for i in range(len(content)) if content.startswith(b"<calculation>", i)]
    cut = content[: starts[13] + 200]  # 13 complete steps, the 14th cut short
    with pytest.raises(InvalidInput, match=r"truncated or malformed after 13 complete ionic steps"):
        read_vasprun(cut, "cut.xml", "Fe2O2")


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "vasprun.xml.gz"
    raw = FE2O2.read_bytes()
    broken.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InvalidInput, match="compressed stream is truncated"):
        read_bytes(broken)


def test_a_non_numeric_energy_is_named(tmp_path: Path) -> None:
    content = gzip.decompress(FE2O2.read_bytes()).decode()
    # The step's own energy block is the last one before the end of the first step.
    first = content.rindex('<i name="e_fr_energy">', 0, content.index("</calculation>"))
    end = content.index("</i>", first)
    broken = content[:first] + '<i name="e_fr_energy"> ************* ' + content[end:]
    with pytest.raises(InvalidInput, match=r"step 0, field 'e_0_energy': not a number"):
        read_vasprun(broken.encode(), "broken.xml", "Fe2O2")


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("runs/MoS2-2H/vasprun.xml", "MoS2-2H"),
        ("runs/WSe2/OUTCAR.gz", "WSe2"),
        ("Fe2O2_relax_vasprun.xml.gz", "Fe2O2_relax"),
        ("data/TiS2.vasprun.xml", "TiS2"),
    ],
)
def test_default_material_key(path: str, key: str) -> None:
    assert default_material_key(Path(path)) == key


def test_format_vasp_tells_vasprun_from_outcar_by_content(tmp_path: Path) -> None:
    odd_names = {"run.dat": FE2O2, "log.txt": LI_OUTCAR}
    for name, source in odd_names.items():
        (tmp_path / name).write_bytes(gzip.decompress(source.read_bytes()))
    assert read_file(tmp_path / "run.dat", ReadOptions(format="vasp")).format == "vasprun"
    assert read_file(tmp_path / "log.txt", ReadOptions(format="vasp")).format == "outcar"
    with pytest.raises(InvalidInput, match="cannot tell the format from the file name"):
        read_file(tmp_path / "run.dat", ReadOptions())
