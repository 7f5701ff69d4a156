"""Cluster expansions of alloy formation energies on a 2D MX2 lattice (icet, trainstation).

The expanded property is E_F in meV per metal site (icet's cluster vectors are averages
per primitive cell, and the primitive cell has one metal site).

2D: icet 4.0 builds cluster spaces on fully periodic structures only, so the parent's
vacuum is widened until the layer's periodic images along c are further apart than the
longest cutoff: no cluster can then reach an image across the vacuum, and every cluster
lies within one layer (:func:`out_of_plane_extent` checks it). Structures are mapped onto
the lattice with icet's ``map_structure_to_reference``, periodic in the plane only, so
the relaxed cell height (its vacuum) never matters.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from atlas2d.analysis.alloy_lattice import IN_PLANE_PBC, site_species
from atlas2d.analysis.alloys import AlloySystem

VACUUM_MARGIN_A = 2.0
"""Extra distance between periodic images beyond the longest cutoff (Å)."""


def widened(lattice: Atoms, longest_cutoff_a: float) -> Atoms:
    """A fully periodic copy of the 1×1 layer whose c leaves more than the longest cutoff
    (plus :data:`VACUUM_MARGIN_A`) between the layer and its image along c."""
    z = lattice.positions[:, 2]
    thickness = float(z.max() - z.min())
    cell = np.array(lattice.cell.array, dtype=np.float64)
    height = max(float(cell[2, 2]), thickness + longest_cutoff_a + VACUUM_MARGIN_A)
    cell[2] = [0.0, 0.0, height]
    parent = lattice.copy()
    parent.set_cell(cell, scale_atoms=False)
    parent.positions[:, 2] += height / 2 - (z.max() + z.min()) / 2
    parent.pbc = True
    return parent


def cluster_space(lattice: Atoms, system: AlloySystem, cutoffs_a: Sequence[float]) -> Any:
    """icet's ``ClusterSpace`` of the metal sublattice (A, B) of a 1×1 MX2 layer.

    Args:
        lattice: the 1×1 layer (``alloy_lattice.ideal_layer``).
        cutoffs_a: pair, triplet, … cutoffs (Å).
    """
    from icet import ClusterSpace

    parent = widened(lattice, max(cutoffs_a))
    return ClusterSpace(parent, [float(c) for c in cutoffs_a], site_species(system))


def out_of_plane_extent(space: Any) -> float:
    """The largest z separation (Å) between two sites of any cluster of the space."""
    extent = 0.0
    for index in range(len(space.orbit_list)):
        positions = np.asarray(space.get_coordinates_of_representative_cluster(index))
        if len(positions):
            extent = max(extent, float(np.ptp(positions[:, 2])))
    return extent


def on_lattice(structure: Atoms, space: Any, system: AlloySystem) -> Atoms:
    """A (relaxed) structure as the ideal supercell of the space's lattice it occupies.

    Raises:
        ValueError: it does not map onto the lattice (another prototype, too strained).
    """
    from icet.tools import map_structure_to_reference

    layer = structure.copy()
    layer.pbc = IN_PLANE_PBC
    reference = space.primitive_structure.copy()
    reference.pbc = IN_PLANE_PBC
    with warnings.catch_warnings():  # icet warns of large relaxations; we map anyway
        warnings.simplefilter("ignore")
        mapped, _ = map_structure_to_reference(
            layer, reference, inert_species=[system.chalcogen], suppress_warnings=True
        )
    cell = np.array(mapped.cell.array, dtype=np.float64)
    cell[2] = space.primitive_structure.cell.array[2]
    mapped.set_cell(cell, scale_atoms=False)
    mapped.pbc = True
    return mapped


@dataclass(frozen=True)
class CeFit:
    """A fitted cluster expansion and how it did.

    Attributes:
        expansion: icet's ``ClusterExpansion`` (E_F in meV/site).
        metrics: cross-validation and training figures (meV/site, units in the keys),
            number of parameters and of non-zero ones.
    """

    expansion: Any
    metrics: dict[str, Any]


def fit(
    space: Any,
    structures: Sequence[Atoms],
    targets_mev_per_site: np.ndarray,
    fit_method: str,
    seed: int,
    n_splits: int,
) -> CeFit:
    """Fit effective cluster interactions by cross-validation, then on every structure.

    Args:
        structures: on the space's lattice (:func:`on_lattice`), shape (n,).
        targets_mev_per_site: E_F per metal site, shape (n,).
        fit_method: ``lasso``, ``ardr`` or ``least-squares`` (trainstation's names).
        n_splits: folds of the k-fold cross-validation (2 ≤ n_splits ≤ n).
    """
    from icet import ClusterExpansion
    from trainstation import CrossValidationEstimator

    matrix = np.array([space.get_cluster_vector(s) for s in structures])
    targets = np.asarray(targets_mev_per_site, dtype=np.float64)
    options: dict[str, Any] = {}
    if fit_method == "lasso":
        # LASSO picks its penalty by an inner cross-validation, which must fit in the
        # smallest outer training fold; one process (the machine is shared).
        smallest_fold = len(structures) - -(-len(structures) // n_splits)
        options = {"cv": max(2, min(5, smallest_fold)), "n_jobs": 1}
    estimator = CrossValidationEstimator(
        (matrix, targets),
        fit_method=fit_method,
        validation_method="k-fold",
        n_splits=n_splits,
        seed=seed,
        **options,
    )
    with warnings.catch_warnings():  # scikit-learn's convergence notes on tiny sets
        warnings.simplefilter("ignore")
        estimator.validate()
        estimator.train()
    parameters = np.asarray(estimator.parameters, dtype=np.float64)
    predicted = matrix @ parameters
    metrics = {
        "cv_rmse_mev_per_site": float(estimator.rmse_validation),
        "train_rmse_mev_per_site": float(np.sqrt(np.mean((predicted - targets) ** 2))),
        "n_structures": len(structures),
        "n_parameters": int(parameters.size),
        "n_nonzero_parameters": int(np.count_nonzero(parameters)),
        "n_splits": n_splits,
    }
    return CeFit(ClusterExpansion(space, parameters), metrics)


def predict(expansion: Any, structures: Sequence[Atoms]) -> np.ndarray:
    """E_F (meV/site) of structures on the expansion's lattice, shape (n,)."""
    return np.array([float(expansion.predict(s)) for s in structures])


def write(expansion: Any, path: Path) -> None:
    """Write the expansion to ``path`` (icet's own file)."""
    expansion.write(str(path))


def read_bytes(data: bytes) -> Any:
    """An expansion from the (already verified) bytes of its file."""
    import tempfile

    from icet import ClusterExpansion

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "expansion.ce"
        path.write_bytes(data)
        return ClusterExpansion.read(str(path))
