"""Numbers an audit compares: registered metrics against recomputed ones, stored
predictions against fresh ones (meV/atom, meV/Å)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from atlas2d.analysis.units import MEV_PER_EV

METRIC_RELATIVE_TOLERANCE = 1e-9
"""Registered and recomputed metrics come from the same float64 arithmetic over the same
rows in the same order (and JSON keeps a float exactly), so they agree to rounding."""


@dataclass(frozen=True)
class MetricComparison:
    """One registered metric next to its recomputation (units in ``metric``)."""

    split: str
    metric: str
    registered: float | int | None
    recomputed: float | int | None
    ok: bool


def _agree(registered: Any, recomputed: Any, relative_tolerance: float) -> bool:
    if registered is None or recomputed is None:
        return registered is None and recomputed is None
    a, b = float(registered), float(recomputed)
    return math.isclose(a, b, rel_tol=relative_tolerance, abs_tol=1e-12)


def compare_metrics(
    split: str,
    registered: Mapping[str, Any],
    recomputed: Mapping[str, Any],
    relative_tolerance: float = METRIC_RELATIVE_TOLERANCE,
) -> list[MetricComparison]:
    """Every metric of one split in either dict, registered vs recomputed, by name (a
    metric missing on one side is None there and does not agree)."""
    names = sorted(set(registered) | set(recomputed))
    return [
        MetricComparison(
            split,
            name,
            registered.get(name),
            recomputed.get(name),
            _agree(registered.get(name), recomputed.get(name), relative_tolerance),
        )
        for name in names
    ]


@dataclass(frozen=True)
class PredictionDifference:
    """A fresh prediction against the stored one on one frame.

    Attributes:
        energy_mev_per_atom: |ΔE| / n_sites, meV/atom.
        force_mev_per_a: largest |ΔF| component, meV/Å.
    """

    frame_id: int
    energy_mev_per_atom: float
    force_mev_per_a: float


def prediction_differences(
    frame_ids: Sequence[int],
    stored_energies: Sequence[float] | np.ndarray,
    fresh_energies: Sequence[float] | np.ndarray,
    stored_forces: Sequence[np.ndarray],
    fresh_forces: Sequence[np.ndarray],
) -> list[PredictionDifference]:
    """Per-frame differences of two sets of predictions on the same frames.

    Args:
        frame_ids: (F,). stored_energies, fresh_energies: (F,) total energies, eV.
        stored_forces, fresh_forces: F arrays of shape (n_i, 3), eV/Å.
    """
    differences = []
    for frame_id, e_stored, e_fresh, f_stored, f_fresh in zip(
        frame_ids, stored_energies, fresh_energies, stored_forces, fresh_forces, strict=True
    ):
        stored, fresh = np.asarray(f_stored), np.asarray(f_fresh)
        differences.append(
            PredictionDifference(
                frame_id=int(frame_id),
                energy_mev_per_atom=abs(float(e_fresh) - float(e_stored))
                / len(stored)
                * MEV_PER_EV,
                force_mev_per_a=float(np.abs(fresh - stored).max(initial=0.0)) * MEV_PER_EV,
            )
        )
    return differences
