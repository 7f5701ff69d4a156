"""Convex hulls of formation energy for one chemical system, vectorised.

The construction is pymatgen's (``PhaseDiagram._compute``): the lower hull of the
points (atom fractions of all elements but the first, energy per atom) of the elemental
references and of every entry with a negative formation energy, made full-dimensional
by one extra point above the centroid; facets through the extra point and vertical
facets are dropped. A convex piecewise-linear function is the maximum of its pieces,
so the hull energy at composition x is ``max_f c_f · x`` over the facets' planes, and
the decomposition is the barycentric weights of x in the facet that attains it. This
evaluates every entry of a system in a few matrix products, where pymatgen's per-entry
``get_decomp_and_e_above_hull`` costs a millisecond each; the results agree to 1e-9
eV/atom (tests/analysis/test_hull.py compares them).

Energies are eV/atom throughout; compositions are atom fractions, shape (n, k) for k
elements, rows summing to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull

FORMATION_ENERGY_TOL = 1e-11
"""Entries whose formation energy is not below −tol stay off the hull (pymatgen's)."""
BARYCENTRIC_TOL = 1e-8
"""Negative barycentric weight still counted as inside a facet (numerical noise)."""


class MissingTerminal(ValueError):
    """A chemical system lacks an elemental reference for some of its elements."""

    def __init__(self, missing: list[int]) -> None:
        super().__init__(f"no elemental reference for element column(s) {missing}")
        self.missing = missing


@dataclass(frozen=True)
class Hull:
    """The lower convex hull of one chemical system.

    Attributes:
        reference_energies: (k,) energy per atom of each element's lowest-energy entry.
        reference_rows: (k,) index of that entry in the input arrays.
        planes: (f, k) plane coefficients; the hull energy at x is ``max(planes @ x)``.
        inverses: (f, k, k) maps x to its barycentric weights in each facet.
        facets: (f, k) indices of each facet's vertex entries in the input arrays.
        vertices: sorted indices of the entries on the hull (its stable phases).
    """

    reference_energies: np.ndarray
    reference_rows: np.ndarray
    planes: np.ndarray
    inverses: np.ndarray
    facets: np.ndarray
    vertices: np.ndarray

    def formation_energies(self, fractions: np.ndarray, energies: np.ndarray) -> np.ndarray:
        """Formation energy per atom (n,) of entries (fractions (n, k), energies (n,))."""
        return energies - fractions @ self.reference_energies

    def energies(self, fractions: np.ndarray) -> np.ndarray:
        """Hull energy per atom (n,) at compositions (n, k)."""
        return (fractions @ self.planes.T).max(axis=1)

    def decompositions(self, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The hull phases at each composition and their atom fractions.

        Returns:
            (rows (n, k) entry indices, weights (n, k) atom fractions summing to 1) of
            the facet containing each composition; a weight may be 0.
        """
        values = fractions @ self.planes.T  # (n, f)
        weights = np.einsum("fij,nj->nfi", self.inverses, fractions)  # (n, f, k)
        # Among facets attaining the maximum (ties on shared edges), take one that
        # contains the composition: the largest smallest weight.
        attains = values >= values.max(axis=1, keepdims=True) - 1e-9
        score = np.where(attains, weights.min(axis=2), -np.inf)
        best = score.argmax(axis=1)
        chosen = weights[np.arange(len(fractions)), best]
        chosen = np.where(chosen < BARYCENTRIC_TOL, 0.0, chosen)
        chosen /= chosen.sum(axis=1, keepdims=True)
        return self.facets[best], chosen


def build_hull(fractions: np.ndarray, energies: np.ndarray) -> Hull:
    """The lower convex hull of entries of one chemical system.

    Args:
        fractions: (n, k) atom fractions of the k elements of the system.
        energies: (n,) corrected energy per atom, eV/atom.

    Raises:
        MissingTerminal: some element has no pure entry.
    """
    k = fractions.shape[1]
    pure = fractions.max(axis=1) > 1.0 - 1e-12
    reference_rows = np.empty(k, dtype=np.int64)
    missing = []
    for element in range(k):
        rows = np.flatnonzero(pure & (fractions[:, element] > 0.5))
        if len(rows) == 0:
            missing.append(element)
            continue
        reference_rows[element] = rows[np.argmin(energies[rows])]
    if missing:
        raise MissingTerminal(missing)
    reference_energies = energies[reference_rows]
    if k == 1:
        vertex = reference_rows[:1]
        return Hull(
            reference_energies,
            reference_rows,
            planes=reference_energies.reshape(1, 1),
            inverses=np.ones((1, 1, 1)),
            facets=vertex.reshape(1, 1),
            vertices=vertex,
        )
    formation = energies - fractions @ reference_energies
    rows = np.union1d(np.flatnonzero(formation < -FORMATION_ENERGY_TOL), reference_rows)
    points = np.column_stack([fractions[rows, 1:], energies[rows]])
    extra = np.full(k, 1.0 / k)
    extra[-1] = points.max() + 1.0
    simplices = ConvexHull(np.vstack([points, extra]), qhull_options="Qt i").simplices
    simplices = simplices[(simplices < len(rows)).all(axis=1)]
    homogeneous = points[simplices].copy()  # (f, k, k)
    homogeneous[:, :, -1] = 1.0
    simplices = simplices[np.abs(np.linalg.det(homogeneous)) > 1e-14]
    facets = rows[simplices]  # (f, k) entry indices
    vertex_fractions = fractions[facets]  # (f, k vertices, k elements)
    planes = np.linalg.solve(vertex_fractions, energies[facets][..., None])[..., 0]  # F c = e
    inverses = np.linalg.inv(np.transpose(vertex_fractions, (0, 2, 1)))  # Fᵀ w = x
    return Hull(
        reference_energies,
        reference_rows,
        planes,
        inverses,
        facets,
        vertices=np.unique(facets),
    )


def hull_without(
    fractions: np.ndarray, energies: np.ndarray, excluded: int
) -> tuple[Hull, np.ndarray] | None:
    """The hull of every entry but ``excluded``, and the kept rows (indices into the input).

    Returns None when the excluded entry is its element's only pure entry.
    """
    kept = np.delete(np.arange(len(energies)), excluded)
    try:
        return build_hull(fractions[kept], energies[kept]), kept
    except MissingTerminal:
        return None
