"""Plots (the ``plot`` extra: matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from atlas2d.errors import MissingExtra

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise MissingExtra(
        "Plots need matplotlib: pip install 'atlas2d[plot]' (or the demo extra)."
    ) from err


def plot_training_curve(curve: list[dict[str, Any]], path: Path) -> Path:
    """Loss and validation MAEs per epoch, one panel each, written as a PNG."""
    epochs = [row["epoch"] for row in curve]
    panels = [
        ("loss", [("train_loss", "train"), ("val_loss", "validation")]),
        ("energy MAE (meV/atom)", [("val_energy_mae_mev_per_atom", "validation")]),
        ("force MAE (meV/Å)", [("val_force_mae_mev_per_a", "validation")]),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for axis, (title, series) in zip(axes, panels, strict=True):
        for key, legend in series:
            points = [
                (e, row[key])
                for e, row in zip(epochs, curve, strict=True)
                if row.get(key) is not None
            ]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=legend)
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
