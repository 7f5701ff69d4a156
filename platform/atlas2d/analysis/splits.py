"""Random, seeded, group-preserving train/val/test splits."""

from __future__ import annotations

import numpy as np

from atlas2d.vocabulary import SPLITS, Split


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"90:5:5"`` → (90.0, 5.0, 5.0). Ratios are percentages that sum to 100.

    Raises:
        ValueError: not three non-negative numbers summing to 100.
    """
    parts = text.split(":")
    try:
        ratios = tuple(float(p) for p in parts)
    except ValueError as err:
        raise ValueError(f"split {text!r}: expected three numbers like 90:5:5") from err
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 100.0) > 1e-9:
        raise ValueError(
            f"split {text!r}: expected three non-negative ratios summing to 100, like 90:5:5"
        )
    return ratios[0], ratios[1], ratios[2]


def assign_splits(
    groups: list[str], ratios: tuple[float, float, float], seed: int
) -> dict[str, Split]:
    """Assign every group to train, val or test.

    Groups are sorted, shuffled with ``numpy.random.default_rng(seed)`` and cut at the
    cumulative ratios (rounded to whole groups), so the result depends only on the set
    of groups, the ratios and the seed.

    Args:
        groups: group keys (material ids, formulas or chemical systems as strings).
        ratios: percentages for train, val, test.
        seed: random seed.

    Returns:
        group → split name.
    """
    ordered = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(ordered))
    cuts = np.rint(np.cumsum(ratios)[:2] / 100.0 * len(ordered)).astype(int)
    train, val, test = SPLITS
    names = np.full(len(ordered), test, dtype=object)
    names[order[: cuts[0]]] = train
    names[order[cuts[0] : cuts[1]]] = val
    return dict(zip(ordered, names.tolist(), strict=True))
