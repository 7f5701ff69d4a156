"""Cluster expansions on a 2D MX2 lattice: in-plane clusters, recovered interactions."""

from __future__ import annotations

import numpy as np
import pytest

from atlas2d.analysis import cluster_expansion
from atlas2d.analysis.alloy_lattice import LayerGeometry, enumerate_alloys, ideal_layer
from atlas2d.analysis.alloys import parse_system

SYSTEM = parse_system("Mo-W-S")
# A short cell (8 Å) so that the 10 Å cutoff would reach the layer's image along c.
LATTICE = ideal_layer("2H", "Mo", "S", LayerGeometry(a=3.19, half_thickness=1.56, c=8.0))


def test_clusters_stay_in_the_layer() -> None:
    from icet import ClusterSpace

    space = cluster_expansion.cluster_space(LATTICE, SYSTEM, [10.0, 6.5])
    thickness = 2 * 1.56
    assert cluster_expansion.out_of_plane_extent(space) <= thickness
    # The check can fail: the raw short cell, fully periodic, has pairs across the vacuum.
    periodic = LATTICE.copy()
    periodic.pbc = True
    raw = ClusterSpace(periodic, [10.0, 6.5], [["Mo", "W"], ["S"], ["S"]])
    assert cluster_expansion.out_of_plane_extent(raw) > thickness


def test_a_fit_recovers_known_interactions() -> None:
    space = cluster_expansion.cluster_space(LATTICE, SYSTEM, [7.0])
    structures = [
        cluster_expansion.on_lattice(s, space, SYSTEM) for s in enumerate_alloys(LATTICE, SYSTEM, 6)
    ]
    rng = np.random.default_rng(0)
    known = rng.normal(0.0, 20.0, len(space))
    targets = np.array([space.get_cluster_vector(s) @ known for s in structures])
    fitted = cluster_expansion.fit(space, structures, targets, "least-squares", seed=1, n_splits=5)
    np.testing.assert_allclose(fitted.expansion.parameters, known, atol=1e-6)
    assert fitted.metrics["cv_rmse_mev_per_site"] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(
        cluster_expansion.predict(fitted.expansion, structures), targets, atol=1e-6
    )


def test_a_relaxed_structure_maps_onto_its_lattice() -> None:
    (structure, *_) = [s for s in enumerate_alloys(LATTICE, SYSTEM, 2)]
    relaxed = structure.copy()  # strained in the plane, rattled, with another vacuum
    relaxed.set_cell(relaxed.cell.array @ np.diag([1.02, 0.99, 1.0]), scale_atoms=True)
    cell = relaxed.cell.array.copy()
    cell[2] = [0.0, 0.0, 23.0]
    relaxed.set_cell(cell, scale_atoms=False)
    relaxed.positions += np.random.default_rng(1).normal(0.0, 0.05, relaxed.positions.shape)
    space = cluster_expansion.cluster_space(LATTICE, SYSTEM, [7.0])
    mapped = cluster_expansion.on_lattice(relaxed, space, SYSTEM)
    np.testing.assert_allclose(
        space.get_cluster_vector(mapped),
        space.get_cluster_vector(cluster_expansion.on_lattice(structure, space, SYSTEM)),
    )
