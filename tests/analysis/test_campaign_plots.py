"""The campaign report's figure and table, on hand-made ``al_iteration_summary`` frames
(no database)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image

from atlas2d.analysis.campaign_plots import (
    campaign_table,
    cumulative_dft_stable,
    plot_campaign,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAN = math.nan


def _summary() -> pd.DataFrame:
    """Three iterations of campaign ``al-demo``: two finished, the third waiting for
    its labels (measured columns missing, as the view returns them)."""
    return pd.DataFrame(
        {
            "campaign": ["al-demo"] * 3,
            "iteration": [1, 2, 3],
            "screening_model": ["mace-base:1", "al-demo-iter1:1", "al-demo-iter2:1"],
            "stage": ["done", "done", "label"],
            "status": ["done", "done", "waiting"],
            "candidates": [200, 200, 180],
            "relaxed": [198, 197, 175],
            "passed": [120, 131, 110],
            "selected": [40, 40, 40],
            "control": [10, 10, 10],
            "labelled": [50, 49, 0],
            "pending": [0, 0, 50],
            "failed": [0, 1, 0],
            "hits": [10, 14, 0],
            "hit_rate": [0.25, 0.35, None],
            "control_hit_rate": [0.1, 0.1, None],
            "enrichment": [2.5, 3.5, None],
            "prospective_energy_mae_mev_per_atom": [48.26, 35.0, None],
            "prospective_ehull_mae_mev_per_atom": [61.04, 40.55, None],
            "new_dft_stable": [7, 11, None],
            "dft_hull_size": [312, 323, None],
            "screening_test_energy_mae_mev_per_atom": [31.0, 27.4, 25.1],
            "produced_model": ["al-demo-iter1:1", "al-demo-iter2:1", None],
            "produced_test_energy_mae_mev_per_atom": [27.4, 25.1, None],
            "started_at": pd.to_datetime(
                ["2025-03-01 10:00", "2025-03-02 10:00", "2025-03-03 10:00"], utc=True
            ),
            "finished_at": pd.to_datetime(["2025-03-01 18:00", "2025-03-02 19:00", None], utc=True),
        }
    )


def _assert_is_a_drawn_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = image.imread(path)
    height, width = pixels.shape[:2]
    assert 800 <= width <= 4000 and 600 <= height <= 3000  # 12 × 8.4 in at 150 dpi
    rgb = pixels[..., :3]
    assert float(rgb.std()) > 0.05  # not blank
    assert float((rgb.mean(axis=2) < 0.5).mean()) > 0.002  # some dark ink: text, lines


def test_the_figure_is_written_with_an_unfinished_iteration(tmp_path: Path) -> None:
    path = plot_campaign(_summary(), tmp_path / "campaign.png")
    assert path == tmp_path / "campaign.png"
    _assert_is_a_drawn_png(path)


def test_a_campaign_without_finished_iterations_still_gets_a_figure(tmp_path: Path) -> None:
    running = _summary().iloc[[2]].reset_index(drop=True)
    running["screening_test_energy_mae_mev_per_atom"] = None
    path = plot_campaign(running, tmp_path / "campaign.png")
    _assert_is_a_drawn_png(path)


def test_a_campaign_without_iterations_still_gets_a_figure(tmp_path: Path) -> None:
    path = plot_campaign(_summary().iloc[0:0], tmp_path / "campaign.png")
    _assert_is_a_drawn_png(path)


def test_the_no_finished_iteration_note_is_on_the_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    texts: list[str] = []
    save = Figure.savefig

    def recording_savefig(figure: Figure, *args: object, **kwargs: object) -> None:
        texts.extend(t.get_text() for t in figure.findobj(lambda a: hasattr(a, "get_text")))
        save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    plot_campaign(_summary().iloc[[2]], tmp_path / "campaign.png")
    assert any("no finished iteration yet" in t for t in texts)
    assert any("al-demo" in t for t in texts)


def test_the_table_shows_percent_and_units_with_blanks_for_missing() -> None:
    table = campaign_table(_summary())
    assert list(table.columns) == [
        "iteration",
        "screening model",
        "stage/status",
        "candidates",
        "passed",
        "selected",
        "control",
        "labelled",
        "pending",
        "hit rate (%)",
        "control hit rate (%)",
        "enrichment (×)",
        "prospective energy MAE (meV/atom)",
        "prospective e_above_hull MAE (meV/atom)",
        "new DFT-stable",
        "DFT hull size",
        "test energy MAE (meV/atom)",
        "produced model",
    ]
    first, _, waiting = (table.iloc[i] for i in range(3))
    assert list(table["iteration"]) == [1, 2, 3]
    assert first["hit rate (%)"] == "25.0"
    assert first["control hit rate (%)"] == "10.0"
    assert first["enrichment (×)"] == "2.50"
    assert first["prospective energy MAE (meV/atom)"] == "48.3"
    assert first["prospective e_above_hull MAE (meV/atom)"] == "61.0"
    assert first["new DFT-stable"] == "7"
    assert first["DFT hull size"] == "312"
    assert first["test energy MAE (meV/atom)"] == "31.0"
    assert first["produced model"] == "al-demo-iter1:1"
    assert first["stage/status"] == "done"
    assert first["candidates"] == "200"
    assert waiting["stage/status"] == "label (waiting)"
    assert waiting["pending"] == "50"
    for column in (
        "hit rate (%)",
        "control hit rate (%)",
        "enrichment (×)",
        "prospective energy MAE (meV/atom)",
        "new DFT-stable",
        "DFT hull size",
        "produced model",
    ):
        assert waiting[column] == "", column
    rendered = table.astype(str).to_numpy().ravel()
    assert not any(cell in {"nan", "None", "NaN", "<NA>"} for cell in rendered)


def test_nan_and_none_are_both_blank_in_the_table() -> None:
    summary = _summary()
    summary["hit_rate"] = [0.25, NAN, NAN]
    summary["dft_hull_size"] = summary["dft_hull_size"].astype(float)  # NaN, as SQL ints read
    table = campaign_table(summary)
    assert list(table["hit rate (%)"]) == ["25.0", "", ""]
    assert list(table["DFT hull size"]) == ["312", "323", ""]


def test_the_cumulative_count_skips_iterations_in_progress() -> None:
    summary = _summary()
    summary["new_dft_stable"] = [7, None, 4]
    found = cumulative_dft_stable(summary)
    assert found.iloc[0] == 7 and np.isnan(found.iloc[1]) and found.iloc[2] == 11


def test_a_failed_iteration_is_drawn_and_named_in_the_table(tmp_path: Path) -> None:
    summary = _summary()
    summary.loc[2, ["stage", "status"]] = ["relax", "failed"]
    _assert_is_a_drawn_png(plot_campaign(summary, tmp_path / "campaign.png"))
    assert campaign_table(summary)["stage/status"].iloc[2] == "relax (failed)"
