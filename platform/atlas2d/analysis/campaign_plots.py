"""The report of an active-learning campaign: a four-panel figure and a display table
of its ``al_iteration_summary`` rows (one per iteration, by iteration). Plots need the
``plot`` extra (matplotlib).

Iterations still in progress have NaN/None in their measured columns: their points
are left out, never drawn as zero."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

# matplotlib, or MissingExtra naming the extra
from atlas2d.analysis.plots import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

NO_FINISHED_ITERATION = "no finished iteration yet"
"""The note of a figure whose campaign has no finished iteration."""

FINISHED_STAGE = "done"
"""The stage of a finished iteration (``atlas2d.vocabulary.AlStage``)."""

FAILED_STATUS = "failed"
"""The status of a failed iteration (``atlas2d.vocabulary.AlStatus``)."""

_SELECTED_COLOUR = "tab:blue"
_IN_PROGRESS_BAND = "0.92"
_FAILED_BAND = "mistyrose"
_CONTROL_COLOUR = "tab:grey"
_HULL_COLOUR = "tab:purple"


def cumulative_dft_stable(summary: pd.DataFrame) -> pd.Series:
    """Running total of the DFT-stable materials found, per iteration.

    Args:
        summary: ``al_iteration_summary`` rows, by iteration.

    Returns:
        One value per row (same index): the sum of ``new_dft_stable`` up to and
        including that iteration; NaN where the iteration's own count is unknown (in
        progress), which adds nothing to later totals.
    """
    new_stable = pd.to_numeric(summary["new_dft_stable"], errors="coerce").astype(float)
    return new_stable.cumsum(skipna=True)


def plot_campaign(summary: pd.DataFrame, path: Path) -> Path:
    """:func:`campaign_figure` written as a PNG (150 dpi) at ``path``; returns ``path``."""
    campaign_figure(summary).savefig(path, dpi=150)
    return path


def campaign_figure(summary: pd.DataFrame) -> Figure:
    """Four panels against iteration.

    (a) hit rate (%) of the selected candidates and of the random control group, with
    the enrichment (×) above each iteration where known; (b) prospective energy and
    e_above_hull MAE (meV/atom) of the screening model on the iteration's new labels;
    (c) cumulative DFT-stable materials found, and the DFT hull size on a second axis;
    (d) test-split energy MAE (meV/atom) of the model that screened each iteration, and
    of the model each iteration produced (at iteration + 0.5, joined to the model it
    was retrained from).

    Args:
        summary: ``al_iteration_summary`` rows of one campaign, by iteration; may be
            empty or hold only unfinished iterations (the figure then says so).
    """
    summary = summary.sort_values("iteration").reset_index(drop=True)
    iterations = summary["iteration"].to_numpy(dtype=float)
    title = "Active-learning campaign"
    if len(summary):
        title += f" {summary['campaign'].iloc[0]}"
    n_finished = int((summary["stage"] == FINISHED_STAGE).sum()) if len(summary) else 0
    empty_note = NO_FINISHED_ITERATION if n_finished == 0 else "not measured yet"

    figure = new_figure(figsize=(12, 8.4))
    axes = figure.subplots(2, 2)
    panels: list[Callable[[Axes, pd.DataFrame, np.ndarray], bool]] = [
        _hit_rate_panel,
        _prospective_mae_panel,
        _discovery_panel,
        _test_mae_panel,
    ]
    for axis, draw in zip(axes.flat, panels, strict=True):
        if not draw(axis, summary, iterations):
            _note(axis, empty_note)
            axis.set_yticks([])
        _iteration_axis(axis, summary, iterations)
    subtitle = _subtitle(summary, n_finished)
    figure.suptitle(f"{title}\n{subtitle}", fontsize=13)
    figure.tight_layout()
    return figure


def campaign_table(summary: pd.DataFrame) -> pd.DataFrame:
    """A display table, one row per iteration, units in the headers and values as
    text at a sensible precision (missing values as empty strings).

    Args:
        summary: ``al_iteration_summary`` rows, by iteration.

    Returns:
        Columns: iteration, screening model, stage/status, candidates, passed,
        selected, control, labelled, pending, hit rate (%), control hit rate (%),
        enrichment (×), prospective energy MAE (meV/atom), prospective e_above_hull
        MAE (meV/atom), new DFT-stable, DFT hull size, test energy MAE (meV/atom) of
        the screening model, produced model.
    """
    summary = summary.sort_values("iteration").reset_index(drop=True)
    table = pd.DataFrame(
        {
            "iteration": summary["iteration"].astype(int),
            "screening model": summary["screening_model"].map(_text),
            "stage/status": [
                _stage_status(stage, status)
                for stage, status in zip(summary["stage"], summary["status"], strict=True)
            ],
        }
    )
    for column in ("candidates", "passed", "selected", "control", "labelled", "pending"):
        table[column] = summary[column].map(_count)
    table["hit rate (%)"] = summary["hit_rate"].map(lambda v: _number(v, 1, scale=100.0))
    table["control hit rate (%)"] = summary["control_hit_rate"].map(
        lambda v: _number(v, 1, scale=100.0)
    )
    table["enrichment (×)"] = summary["enrichment"].map(lambda v: _number(v, 2))
    table["prospective energy MAE (meV/atom)"] = summary["prospective_energy_mae_mev_per_atom"].map(
        lambda v: _number(v, 1)
    )
    table["prospective e_above_hull MAE (meV/atom)"] = summary[
        "prospective_ehull_mae_mev_per_atom"
    ].map(lambda v: _number(v, 1))
    table["new DFT-stable"] = summary["new_dft_stable"].map(_count)
    table["DFT hull size"] = summary["dft_hull_size"].map(_count)
    table["test energy MAE (meV/atom)"] = summary["screening_test_energy_mae_mev_per_atom"].map(
        lambda v: _number(v, 1)
    )
    table["produced model"] = summary["produced_model"].map(_text)
    return table


# --- panels: each draws what is known and says whether it drew anything -----------------


def _hit_rate_panel(axis: Axes, summary: pd.DataFrame, iterations: np.ndarray) -> bool:
    """(a) Grouped bars: selected vs control hit rate (%), enrichment above the pair."""
    selected = _values(summary, "hit_rate") * 100.0
    control = _values(summary, "control_hit_rate") * 100.0
    enrichment = _values(summary, "enrichment")
    width = 0.38
    known_selected = np.isfinite(selected)
    known_control = np.isfinite(control)
    axis.bar(
        iterations[known_selected] - width / 2,
        selected[known_selected],
        width,
        color=_SELECTED_COLOUR,
        label="selected",
    )
    axis.bar(
        iterations[known_control] + width / 2,
        control[known_control],
        width,
        color=_CONTROL_COLOUR,
        label="control (random)",
    )
    tops = np.fmax(np.nan_to_num(selected, nan=0.0), np.nan_to_num(control, nan=0.0))
    highest = float(tops.max()) if len(tops) else 0.0
    decimals = 2 if len(iterations) <= 8 else 1  # narrower labels when bars are narrow
    for x, top, ratio in zip(iterations, tops, enrichment, strict=True):
        if np.isfinite(ratio):
            axis.annotate(
                f"×{ratio:.{decimals}f}",
                (x, top),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=9 if len(iterations) <= 8 else 7,
            )
    axis.set_ylim(0.0, max(highest * 1.45, 5.0))  # room for the legend above the bars
    axis.set_ylabel("hit rate (%)")
    axis.set_title("(a) hit rate: selected vs control (× enrichment)", fontsize=11)
    drawn = bool(known_selected.any() or known_control.any())
    if drawn:
        axis.legend(loc="upper left", fontsize=9, ncols=2)
    return drawn


def _prospective_mae_panel(axis: Axes, summary: pd.DataFrame, iterations: np.ndarray) -> bool:
    """(b) Prospective MAEs of the screening model on the new labels (meV/atom)."""
    drawn = _line(
        axis,
        iterations,
        _values(summary, "prospective_energy_mae_mev_per_atom"),
        label="energy",
        marker="o",
    )
    drawn |= _line(
        axis,
        iterations,
        _values(summary, "prospective_ehull_mae_mev_per_atom"),
        label="e_above_hull",
        marker="s",
    )
    axis.set_ylabel("MAE (meV/atom)")
    axis.set_title("(b) prospective MAE of the screening model on new labels", fontsize=11)
    if drawn:
        axis.set_ylim(bottom=0.0)
        axis.legend(loc="best", fontsize=9)
    return drawn


def _discovery_panel(axis: Axes, summary: pd.DataFrame, iterations: np.ndarray) -> bool:
    """(c) Cumulative DFT-stable materials found; DFT hull size on a second axis."""
    found = cumulative_dft_stable(summary).to_numpy(dtype=float)
    hull = _values(summary, "dft_hull_size")
    drawn = _line(axis, iterations, found, label="DFT-stable found (cumulative)", marker="o")
    axis.set_ylabel("DFT-stable materials found (count)")
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_title("(c) discovery: cumulative DFT-stable and hull size", fontsize=11)
    if np.isfinite(hull).any():
        hull_axis = axis.twinx()
        _line(
            hull_axis,
            iterations,
            hull,
            label="DFT hull size (right)",
            marker="D",
            color=_HULL_COLOUR,
            linestyle="--",
        )
        hull_axis.set_ylabel("DFT hull size (materials)", color=_HULL_COLOUR)
        hull_axis.tick_params(axis="y", colors=_HULL_COLOUR)
        hull_axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        _pad_limits(hull_axis, hull)
        drawn = True
        lines = axis.get_lines() + hull_axis.get_lines()
        axis.legend(lines, [str(line.get_label()) for line in lines], loc="upper left", fontsize=9)
    elif drawn:
        axis.legend(loc="upper left", fontsize=9)
    if np.isfinite(found).any():
        axis.set_ylim(bottom=0.0, top=max(float(np.nanmax(found)) * 1.4, 1.0))
    return drawn


def _test_mae_panel(axis: Axes, summary: pd.DataFrame, iterations: np.ndarray) -> bool:
    """(d) Test energy MAE of the screening model at k and of the produced one at
    k + 0.5, each produced point joined to the screening point it was retrained from."""
    screening = _values(summary, "screening_test_energy_mae_mev_per_atom")
    produced = _values(summary, "produced_test_energy_mae_mev_per_atom")
    drawn = _line(axis, iterations, screening, label="screening model (at k)", marker="o")
    known = np.isfinite(produced)
    if known.any():
        for x, before, after in zip(iterations, screening, produced, strict=True):
            if np.isfinite(before) and np.isfinite(after):
                axis.plot(
                    [x, x + 0.5], [before, after], color="tab:green", linestyle=":", linewidth=1
                )
        axis.plot(
            iterations[known] + 0.5,
            produced[known],
            linestyle="none",
            marker="s",
            markerfacecolor="white",
            markeredgecolor="tab:green",
            markeredgewidth=1.5,
            label="produced model (at k + 0.5)",
        )
        drawn = True
    axis.set_ylabel("test energy MAE (meV/atom)")
    axis.set_title("(d) test-split energy MAE: screening vs retrained model", fontsize=11)
    if drawn:
        _pad_limits(axis, np.concatenate([screening, produced]))
        axis.legend(loc="best", fontsize=9)
    return drawn


# --- helpers ---------------------------------------------------------------------------


def _subtitle(summary: pd.DataFrame, n_finished: int) -> str:
    """How many iterations, how many finished, and what the bands mean."""
    unfinished = summary["stage"] != FINISHED_STAGE
    n_failed = int((unfinished & (summary["status"] == FAILED_STATUS)).sum())
    n_running = len(summary) - n_finished - n_failed
    parts = [f"{len(summary)} iteration{'' if len(summary) == 1 else 's'}: {n_finished} finished"]
    if n_running:
        parts.append(f"{n_running} in progress (grey band)")
    if n_failed:
        parts.append(f"{n_failed} failed (red band)")
    subtitle = ", ".join(parts)
    if n_finished == 0:
        subtitle += f" — {NO_FINISHED_ITERATION}"
    return subtitle


def _values(summary: pd.DataFrame, column: str) -> np.ndarray:
    """A column as floats, None and missing columns as NaN; shape (n_iterations,)."""
    if column not in summary:
        return np.full(len(summary), np.nan)
    return pd.to_numeric(summary[column], errors="coerce").to_numpy(dtype=float)


def _line(axis: Axes, x: np.ndarray, y: np.ndarray, label: str, marker: str, **style: Any) -> bool:
    """The finite points of ``y`` joined by a line; False when there are none."""
    known = np.isfinite(y)
    if not known.any():
        return False
    axis.plot(x[known], y[known], marker=marker, label=label, **style)
    return True


def _pad_limits(axis: Axes, values: np.ndarray) -> None:
    """y limits around the finite values, with room for the legend above them."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return
    low, high = float(finite.min()), float(finite.max())
    span = high - low or max(abs(high), 1.0)
    axis.set_ylim(
        max(low - 0.15 * span, 0.0) if low >= 0 else low - 0.15 * span, high + 0.45 * span
    )


def _iteration_axis(axis: Axes, summary: pd.DataFrame, iterations: np.ndarray) -> None:
    """Integer ticks, one per iteration, with room for the k + 0.5 points; a band over
    each unfinished iteration (grey: in progress, red: failed; the subtitle says so)."""
    axis.set_xlabel("iteration")
    for x, stage, status in zip(iterations, summary["stage"], summary["status"], strict=True):
        if stage != FINISHED_STAGE:
            colour = _FAILED_BAND if status == FAILED_STATUS else _IN_PROGRESS_BAND
            axis.axvspan(x - 0.5, x + 0.5, color=colour, zorder=0)
    axis.set_xticks([int(x) for x in iterations])
    if len(iterations):
        axis.set_xlim(float(iterations.min()) - 0.6, float(iterations.max()) + 0.8)
    axis.grid(True, axis="y", alpha=0.3)


def _note(axis: Axes, text: str) -> None:
    """A grey note in the middle of a panel without data."""
    axis.text(
        0.5,
        0.5,
        text,
        transform=axis.transAxes,
        ha="center",
        va="center",
        fontsize=11,
        color="0.4",
        style="italic",
    )


def _missing(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float | np.floating) and not np.isfinite(value))
        or (value is pd.NA or value is pd.NaT)
    )


def _text(value: Any) -> str:
    return "" if _missing(value) else str(value)


def _count(value: Any) -> str:
    return "" if _missing(value) else str(int(value))


def _number(value: Any, decimals: int, scale: float = 1.0) -> str:
    return "" if _missing(value) else f"{float(value) * scale:.{decimals}f}"


def _stage_status(stage: Any, status: Any) -> str:
    """``done`` for a finished iteration, else ``stage (status)``, e.g. ``label (waiting)``."""
    stage_text, status_text = _text(stage), _text(status)
    if stage_text == status_text or not status_text:
        return stage_text
    return f"{stage_text} ({status_text})" if stage_text else status_text
