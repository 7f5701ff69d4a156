"""How the pages name things people read: space groups as symbol and number, and model
metrics in a fixed order under labels that carry their units."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


@functools.cache
def _short_symbols() -> dict[int, str]:
    """International short symbol of each space-group number 1…230 (spglib's first
    setting: ``P2_1/m`` for 11, ``P-3m1`` for 164)."""
    import spglib

    symbols: dict[int, str] = {}
    for hall in range(1, 531):
        kind = spglib.get_spacegroup_type(hall)
        if kind is not None:
            symbols.setdefault(int(kind.number), str(kind.international_short))
    return symbols


def spacegroup_label(number: float | None) -> str:
    """``164`` → ``P-3m1 (164)``, with screw axes as subscripts (``P2₁/m (11)``); None
    or NaN (a missing value in a frame) → ''."""
    if number is None or math.isnan(number):
        return ""
    symbol = _short_symbols().get(int(number))
    if symbol is None:
        return str(number)
    symbol = re.sub(r"_(\d)", lambda m: m.group(1).translate(_SUBSCRIPTS), symbol)
    return f"{symbol} ({int(number)})"


_METRIC_LABELS: dict[str, str] = {
    # Training metrics (per split) and relaxation evaluations; units in the labels.
    "n_frames": "frames",
    "n_materials": "materials",
    "energy_mae_mev_per_atom": "E MAE (meV/atom)",
    "energy_rmse_mev_per_atom": "E RMSE (meV/atom)",
    "energy_median_ae_mev_per_atom": "E median AE (meV/atom)",
    "energy_r2": "E R²",
    "force_mae_mev_per_a": "force MAE (meV/Å)",
    "force_rmse_mev_per_a": "force RMSE (meV/Å)",
    "stress_mae_gpa": "stress MAE (GPa)",
    "stress_rmse_gpa": "stress RMSE (GPa)",
    "area_mae_a2_per_atom": "area MAE (Å²/atom)",
    "area_median_ae_a2_per_atom": "area median AE (Å²/atom)",
    "area_r2": "area R²",
    "area_mae_x100": "area MAE ×100 (Å²/atom)",
    "area_median_ae_x100": "area median AE ×100 (Å²/atom)",
}
"""Known metric keys, in the order the pages list them."""

_CONVERGED_AFTER = "n_materials"
"""``converged`` (``n_converged`` of ``n_materials``, and the share) follows this key."""


def metric_rows(values: Mapping[str, Any], number: Callable[[Any], str]) -> list[tuple[str, str]]:
    """``values`` (a metrics dict; nested dicts left out) as (label, text) rows: the
    known keys in a fixed order with units in their labels, ``n_converged`` and
    ``convergence_rate`` as one ``converged`` row (``57/57 (100%)``), then any other
    key under its own name. ``number`` formats a value."""
    shown = {k: v for k, v in values.items() if not isinstance(v, Mapping)}
    rows: list[tuple[str, str]] = []
    converged = _converged(shown)
    for key, label in _METRIC_LABELS.items():
        if key in shown:
            rows.append((label, number(shown[key])))
            if key == _CONVERGED_AFTER and converged is not None:
                rows.append(("converged", converged))
    if converged is not None and _CONVERGED_AFTER not in shown:
        rows.append(("converged", converged))
    used = {*_METRIC_LABELS, "n_converged", "convergence_rate"}
    rows.extend((key, number(value)) for key, value in shown.items() if key not in used)
    return rows


def _converged(values: Mapping[str, Any]) -> str | None:
    rate = values.get("convergence_rate")
    count, total = values.get("n_converged"), values.get("n_materials")
    if count is not None and total:
        return f"{int(count)}/{int(total)} ({100 * int(count) / int(total):.0f}%)"
    if rate is not None:
        return f"{100 * float(rate):.0f}%"
    if count is not None:
        return str(int(count))
    return None
