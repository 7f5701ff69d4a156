"""Alloy numerics against hand calculations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atlas2d.analysis.alloys import (
    AlloySystem,
    EndMember,
    composition,
    error_rows,
    formation_energy_mev_per_site,
    ground_state_rows,
    lower_hull_line,
    lower_hull_mask,
    lowest_energy,
    parse_system,
    per_atom,
)
from atlas2d.errors import InvalidInput


@pytest.mark.parametrize("text", ["Mo-W-S", "Mo-S-W", "S-W-Mo", "W-Mo-S"])
def test_system_in_any_order(text: str) -> None:
    system = parse_system(text)
    assert system == AlloySystem("Mo", "W", "S")
    assert system.label == "Mo-W-S"
    assert system.chemsys == "Mo-S-W"
    assert system.end_member_formulas == ("MoS2", "WS2")
    assert system.end_member_chemsys() == ("Mo-S", "S-W")


def test_first_metal_is_alphabetical() -> None:
    assert parse_system("Nb-Mo-S").metal_a == "Mo"
    assert parse_system("Ti-Ta-S").metal_a == "Ta"


@pytest.mark.parametrize("text", ["Mo-W", "Mo-W-S-Se", "Mo-Mo-S", "Mo-W-Nb", "Mo-S-Se", "Mo--S"])
def test_bad_systems_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="Alloy system"):
        parse_system(text)


def test_composition_counts_metal_sites() -> None:
    system = parse_system("Mo-W-S")
    found = composition(["Mo", "S", "S", "W", "S", "S", "W", "S", "S"], system)
    assert found is not None
    assert (found.n_a, found.n_b, found.n_metal_sites) == (1, 2, 3)
    assert found.x == pytest.approx(1 / 3)
    assert composition(["W", "S", "S"], system).x == 0.0  # type: ignore[union-attr]
    assert composition(["Mo", "S", "Se"], system) is None
    assert composition(["Mo", "W", "S", "S"], system) is None


def test_formation_energy_by_hand_with_the_lower_polymorph() -> None:
    # MoS2: 2H −22.0 eV per 3 atoms beats 1T −21.4; WS2: 1T −24.6 beats 2H −24.0.
    mos2 = lowest_energy([EndMember("MoS2-2H", -22.0 / 3), EndMember("MoS2-1T", -21.4 / 3)])
    ws2 = lowest_energy([EndMember("WS2-2H", -24.0 / 3), EndMember("WS2-1T", -24.6 / 3)])
    assert mos2 is not None and ws2 is not None
    assert (mos2.key, ws2.key) == ("MoS2-2H", "WS2-1T")
    # Mo1W1S4, 6 atoms, −46.9 eV: −23.45 eV/site against 0.5·(−22.0) + 0.5·(−24.6) = −23.3.
    e_f = formation_energy_mev_per_site(-46.9, 2, 0.5, mos2, ws2)
    assert e_f == pytest.approx(-150.0)
    assert per_atom(e_f) == pytest.approx(-50.0)
    # x = 1/4 (2×2 cell, 12 atoms): −23.9 − [0.25·(−22.0) + 0.75·(−24.6)] = +0.05 eV/site.
    assert formation_energy_mev_per_site(-95.6, 4, 0.25, mos2, ws2) == pytest.approx(50.0)
    assert lowest_energy([]) is None


def test_lower_hull_finds_ground_states() -> None:
    x = np.array([0.25, 0.5, 0.5, 0.75, 1 / 3])
    e = np.array([-10.0, -30.0, -5.0, -10.0, -12.0])
    # The hull runs (0,0)–(0.5,−30)–(1,0); (0.25,−10) sits above −15, (1/3,−12) above −20.
    assert lower_hull_mask(x, e).tolist() == [False, True, False, False, False]
    assert lower_hull_mask(np.array([0.5]), np.array([10.0])).tolist() == [False]
    assert lower_hull_mask(np.array([0.0, 0.5]), np.array([0.0, -1.0])).tolist() == [True, True]


def test_errors_per_split_by_hand() -> None:
    import pandas as pd

    from atlas2d.analysis.alloys import error_rows

    paired = pd.DataFrame(
        {
            "system": ["Mo-W-S"] * 3,
            "energy_source": ["ce:1"] * 3,
            "split": ["train", "train", "test"],
            "reference_mev_per_site": [-10.0, 5.0, 0.0],
            "predicted_mev_per_site": [-7.0, 1.0, 6.0],
        }
    )
    rows = {r["split"]: r for r in error_rows(paired, ("train", "val", "test"))}
    assert rows["train"]["n_alloys"] == 2
    assert rows["train"]["mae_mev_per_site"] == pytest.approx(3.5)  # |3|, |−4|
    assert rows["train"]["rmse_mev_per_site"] == pytest.approx(np.sqrt(12.5))
    assert rows["train"]["mae_mev_per_atom"] == pytest.approx(3.5 / 3)
    assert rows["test"]["rmse_mev_per_atom"] == pytest.approx(2.0)
    assert rows["val"]["n_alloys"] == 0 and rows["val"]["mae_mev_per_site"] is None


def _hand_made_comparison() -> tuple[pd.DataFrame, pd.DataFrame]:
    """DFT puts a and c on its hull (0,0)–(0.25,−40)–(0.5,−60)–(1,0); the model moves
    b to −70 and a up to −10: its only ground state is b, so it misses a and c."""
    keys = ["a", "b", "c", "d"]
    x = [0.25, 0.5, 0.5, 0.75]
    dft_e = [-40.0, -50.0, -60.0, -20.0]
    model_e = [-10.0, -70.0, -60.0, -20.0]
    dft = pd.DataFrame(
        {"system": "Mo-W-S", "material_key": keys, "x": x, "formation_energy_mev_per_site": dft_e}
    )
    paired = pd.DataFrame(
        {
            "system": "Mo-W-S",
            "energy_source": "m:1",
            "material_id": [1, 2, 3, 4],
            "material_key": keys,
            "x": x,
            "reference_mev_per_site": dft_e,
            "predicted_mev_per_site": model_e,
            "split": ["train", "train", "val", "test"],
        }
    )
    return dft, paired


def test_ground_states_of_each_source_against_dft() -> None:
    dft, paired = _hand_made_comparison()
    rows = {r["energy_source"]: r for r in ground_state_rows(dft, paired)}
    assert list(rows) == ["dft", "m:1"]
    assert rows["dft"]["ground_states"] == ["a", "c"]
    model = rows["m:1"]
    assert model["ground_states"] == ["b"]
    assert (model["same_as_dft"], model["missed"], model["extra"]) == (False, ["a", "c"], ["b"])
    hull_x, hull_e = lower_hull_line(np.array(paired.x), np.array(paired.predicted_mev_per_site))
    assert hull_x.tolist() == [0.0, 0.5, 1.0] and hull_e.tolist() == [0.0, -70.0, 0.0]


def test_the_report_has_hull_and_parity_plots_and_the_ground_states(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from atlas2d.services.alloy_compare import (
        AlloyComparison,
        _ground_state_table,
        write_report,
    )

    dft, paired = _hand_made_comparison()
    comparison = AlloyComparison(
        pd.DataFrame(error_rows(paired, ("train", "val", "test"))),
        _ground_state_table(ground_state_rows(dft, paired)),
        paired,
    )
    report = write_report(comparison, "set", tmp_path).read_text()
    for name in ("parity_Mo-W-S.png", "hull_Mo-W-S.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name})" in report
    assert "| Mo-W-S | m:1 | b | False | a, c | b |" in report
