"""Substitutional MX2 alloys: the system, the composition and the formation energy per
metal site (pure numerics).

Conventions (DESIGN.md, "Rules from the thesis"):

* A system is two metals and one chalcogen, ``Mo-W-S`` (any order). Its metals are
  sorted alphabetically: **A is the alphabetically first metal**, B the second (Mo-W-S:
  A = Mo, B = W; Nb-Mo-S: A = Mo, B = Nb).
* The composition of ``A_{x}B_{1−x}X2`` is **x = fraction of the metal sites held by A**
  (x = 1 is AX2, x = 0 is BX2).
* E_F(A_xB_{1−x}X2) = E(alloy) − [x·E(AX2) + (1−x)·E(BX2)], every energy per formula
  unit of one metal site (three atoms), in meV/site; per atom E_F / 3 (meV/atom).
  Energies are raw (uncorrected): corrections do not enter mixing energies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from atlas2d.errors import InvalidInput

CHALCOGENS = ("O", "S", "Se", "Te")
"""The non-metal of an MX2 alloy."""
ATOMS_PER_SITE = 3
"""Atoms per formula unit of one metal site (MX2)."""
MEV_PER_EV = 1000.0


@dataclass(frozen=True)
class AlloySystem:
    """A substitutional MX2 alloy system.

    Attributes:
        metal_a: the alphabetically first metal (x counts its sites).
        metal_b: the other metal.
        chalcogen: X of MX2.
    """

    metal_a: str
    metal_b: str
    chalcogen: str

    @property
    def label(self) -> str:
        """``A-B-X``, e.g. ``Mo-W-S``."""
        return f"{self.metal_a}-{self.metal_b}-{self.chalcogen}"

    @property
    def chemsys(self) -> str:
        """The elements sorted and joined as ``materials.chemsys`` stores them: ``Mo-S-W``."""
        return "-".join(sorted((self.metal_a, self.metal_b, self.chalcogen)))

    @property
    def end_member_formulas(self) -> tuple[str, str]:
        """(AX2, BX2) as reduced formulas, e.g. (``MoS2``, ``WS2``)."""
        return (f"{self.metal_a}{self.chalcogen}2", f"{self.metal_b}{self.chalcogen}2")

    def end_member_chemsys(self) -> tuple[str, str]:
        """The chemsys of AX2 and of BX2, e.g. (``Mo-S``, ``S-W``)."""
        return (
            "-".join(sorted((self.metal_a, self.chalcogen))),
            "-".join(sorted((self.metal_b, self.chalcogen))),
        )


def parse_system(text: str) -> AlloySystem:
    """``Mo-W-S``, ``Mo-S-W`` or ``W-Mo-S`` → the same :class:`AlloySystem`.

    Raises:
        InvalidInput: not three distinct elements, or not two metals and one chalcogen.
    """
    parts = [p.strip() for p in text.split("-")]
    shape = "two metals and one chalcogen joined by '-', e.g. Mo-W-S"
    if len(parts) != 3 or any(not p for p in parts) or len(set(parts)) != 3:
        raise InvalidInput(f"Alloy system {text!r} is not valid: give {shape}.")
    chalcogens = [p for p in parts if p in CHALCOGENS]
    if len(chalcogens) != 1:
        raise InvalidInput(
            f"Alloy system {text!r} has {len(chalcogens)} chalcogens "
            f"({', '.join(CHALCOGENS)}); give {shape}."
        )
    metal_a, metal_b = sorted(p for p in parts if p not in CHALCOGENS)
    return AlloySystem(metal_a, metal_b, chalcogens[0])


@dataclass(frozen=True)
class AlloyComposition:
    """The metal sites of one structure of a system.

    Attributes:
        n_a, n_b: metal sites held by A and by B.
        x: n_a / (n_a + n_b), the fraction of metal sites held by A.
    """

    n_a: int
    n_b: int

    @property
    def n_metal_sites(self) -> int:
        return self.n_a + self.n_b

    @property
    def x(self) -> float:
        return self.n_a / self.n_metal_sites


def composition(symbols: Sequence[str], system: AlloySystem) -> AlloyComposition | None:
    """The composition of a structure of ``system`` (its end members included), or None
    when it is not an MX2 layer of the system (other elements, or not two X per metal).
    """
    counts = Counter(symbols)
    if not set(counts) <= {system.metal_a, system.metal_b, system.chalcogen}:
        return None
    n_a, n_b = counts.get(system.metal_a, 0), counts.get(system.metal_b, 0)
    if n_a + n_b == 0 or counts.get(system.chalcogen, 0) != 2 * (n_a + n_b):
        return None
    return AlloyComposition(n_a, n_b)


@dataclass(frozen=True)
class EndMember:
    """A candidate end member: a stored AX2 or BX2 layer and its energy.

    Attributes:
        key: the material's key.
        energy_per_atom_ev: eV/atom in the energy source at hand.
    """

    key: str
    energy_per_atom_ev: float

    @property
    def energy_per_site_ev(self) -> float:
        """eV per formula unit of one metal site (three atoms)."""
        return ATOMS_PER_SITE * self.energy_per_atom_ev


def lowest_energy(candidates: Sequence[EndMember]) -> EndMember | None:
    """The candidate with the lowest energy per atom (ties: the smallest key), None
    when there is none. Whichever prototype it is (2H or 1T), it is the end member."""
    if not candidates:
        return None
    return min(candidates, key=lambda c: (c.energy_per_atom_ev, c.key))


def formation_energy_mev_per_site(
    alloy_energy_ev: float,
    n_metal_sites: int,
    x: float,
    end_a: EndMember,
    end_b: EndMember,
) -> float:
    """E_F = E(alloy)/n_sites − [x·E(AX2) + (1−x)·E(BX2)] per metal site, in meV/site.

    Args:
        alloy_energy_ev: the alloy's total energy (eV, raw).
        n_metal_sites: its metal sites (its formula units).
        x: the fraction of metal sites held by A.
        end_a, end_b: AX2 and BX2 in the same energy source.
    """
    per_site = alloy_energy_ev / n_metal_sites
    mixed = x * end_a.energy_per_site_ev + (1.0 - x) * end_b.energy_per_site_ev
    return MEV_PER_EV * (per_site - mixed)


def per_atom(formation_energy_mev_per_site: float | np.ndarray) -> float | np.ndarray:
    """meV/site → meV/atom (three atoms per metal site of MX2)."""
    return formation_energy_mev_per_site / ATOMS_PER_SITE


def lower_hull_mask(x: np.ndarray, energies: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Which points lie on the lower convex hull of E_F against x (ground states).

    Args:
        x: compositions, shape (n,), in [0, 1].
        energies: formation energies, shape (n,) (any unit; ``tol`` in the same unit).

    Returns:
        Boolean mask, shape (n,): on the hull (within ``tol``) of the points together
        with the end members (0, 0) and (1, 0).
    """
    x = np.asarray(x, float)
    energies = np.asarray(energies, float)
    all_x = np.concatenate([x, [0.0, 1.0]])
    all_e = np.concatenate([energies, [0.0, 0.0]])
    # Only the lowest point at each composition can be a vertex.
    unique_x = np.unique(all_x)
    lowest = np.array([all_e[all_x == value].min() for value in unique_x])
    hull: list[int] = []
    # Andrew's monotone chain, lower half: drop the middle point of every clockwise turn.
    for i in range(len(unique_x)):
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = (unique_x[a] - unique_x[o]) * (lowest[i] - lowest[o]) - (
                lowest[a] - lowest[o]
            ) * (unique_x[i] - unique_x[o])
            if cross > 0:
                break
            hull.pop()
        hull.append(i)
    hull_energy = np.interp(x, unique_x[hull], lowest[hull])
    return energies <= hull_energy + tol


COMPARE_COLUMNS = (
    "system",
    "energy_source",
    "split",
    "n_alloys",
    "mae_mev_per_site",
    "rmse_mev_per_site",
    "mae_mev_per_atom",
    "rmse_mev_per_atom",
)
"""The rows of ``atlas2d alloys compare`` (the thesis's Tables 4.8 and 4.9)."""


def error_rows(paired: pd.DataFrame, splits: Sequence[str]) -> list[dict[str, Any]]:
    """MAE and RMSE of E_F against DFT per system, energy source and split.

    Args:
        paired: one row per (alloy, energy source): system, energy_source, split,
            reference_mev_per_site (DFT) and predicted_mev_per_site.
        splits: the splits to report, in order (a split without alloys gets n = 0).

    Returns:
        Rows with :data:`COMPARE_COLUMNS` (errors None where n = 0).
    """
    rows = []
    for (system, source), group in paired.groupby(["system", "energy_source"], sort=True):
        for split in splits:
            chosen = group[group.split == split]
            errors = (chosen.predicted_mev_per_site - chosen.reference_mev_per_site).to_numpy()
            mae = float(np.abs(errors).mean()) if len(errors) else None
            rmse = float(np.sqrt(np.mean(errors**2))) if len(errors) else None
            rows.append(
                {
                    "system": system,
                    "energy_source": source,
                    "split": split,
                    "n_alloys": len(errors),
                    "mae_mev_per_site": mae,
                    "rmse_mev_per_site": rmse,
                    "mae_mev_per_atom": None if mae is None else mae / ATOMS_PER_SITE,
                    "rmse_mev_per_atom": None if rmse is None else rmse / ATOMS_PER_SITE,
                }
            )
    return rows


def lower_hull_line(x: np.ndarray, energies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lower convex hull of E_F against x as a line to draw: its points, with the
    end members (0, 0) and (1, 0), by x.

    Args:
        x, energies: as :func:`lower_hull_mask`, shape (n,).

    Returns:
        (x, E_F) of the hull's points, each shape (m,), m ≥ 2.
    """
    x = np.asarray(x, float)
    energies = np.asarray(energies, float)
    mask = lower_hull_mask(x, energies)
    points = sorted({(0.0, 0.0), (1.0, 0.0), *zip(x[mask], energies[mask], strict=True)})
    line = np.array(points)
    return line[:, 0], line[:, 1]


GROUND_STATE_COLUMNS = (
    "system",
    "energy_source",
    "ground_states",
    "same_as_dft",
    "missed",
    "extra",
)
"""The ground-state agreement rows of ``atlas2d alloys compare``."""


def _hull_keys(keys: pd.Series, x: pd.Series, energies: pd.Series) -> list[str]:
    mask = lower_hull_mask(x.to_numpy(), energies.to_numpy())
    return sorted(keys[mask])


def ground_state_rows(dft: pd.DataFrame, paired: pd.DataFrame) -> list[dict[str, Any]]:
    """Which alloys lie on the lower convex hull of E_F against x, for DFT and each
    other energy source, per system.

    Args:
        dft: every DFT alloy (0 < x < 1): system, material_key, x,
            formation_energy_mev_per_site.
        paired: one row per (alloy, source): system, energy_source, material_key, x,
            reference_mev_per_site (DFT), predicted_mev_per_site.

    Returns:
        :data:`GROUND_STATE_COLUMNS` rows, DFT's first in each system: its ground states
        among all its alloys. A source's row compares its hull with DFT's hull over the
        same alloys (those the source has): ``missed`` are DFT ground states it puts
        above its hull, ``extra`` its ground states that are above DFT's.
    """
    rows: list[dict[str, Any]] = []
    for system, in_system in paired.groupby("system", sort=True):
        everything = dft[dft.system == system]
        found = _hull_keys(
            everything.material_key, everything.x, everything.formation_energy_mev_per_site
        )
        dft_row: tuple[Any, ...] = (system, "dft", found, True, [], [])
        rows.append(dict(zip(GROUND_STATE_COLUMNS, dft_row, strict=True)))
        for source, group in in_system.groupby("energy_source", sort=True):
            reference = set(_hull_keys(group.material_key, group.x, group.reference_mev_per_site))
            own = _hull_keys(group.material_key, group.x, group.predicted_mev_per_site)
            rows.append(
                {
                    "system": system,
                    "energy_source": source,
                    "ground_states": own,
                    "same_as_dft": set(own) == reference,
                    "missed": sorted(reference - set(own)),
                    "extra": sorted(set(own) - reference),
                }
            )
    return rows
