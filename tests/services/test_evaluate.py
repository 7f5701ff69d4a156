"""``evaluate``: relaxation errors against DFT, per element and space group, stored and
reported. Runs on the trained registry's database."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from atlas2d.analysis.metrics import r_squared, relaxation_metrics
from atlas2d.analysis.reports import thesis_table
from atlas2d.errors import InvalidInput
from atlas2d.mlff.relax import RelaxSettings
from atlas2d.services.evaluate import evaluate_relaxations
from atlas2d.services.relax import RelaxRequest, relax


def test_relaxation_metrics_by_hand() -> None:
    metrics = relaxation_metrics(
        dft_energy=np.array([-5.0, -4.0, -6.0]),
        ml_energy=np.array([-5.01, -3.97, -6.0]),
        dft_area=np.array([8.0, 9.0, 10.0]),
        ml_area=np.array([8.1, 9.0, 9.8]),
        converged=np.array([True, False, True]),
    )
    assert metrics["energy_mae_mev_per_atom"] == pytest.approx(40 / 3)
    assert metrics["energy_median_ae_mev_per_atom"] == pytest.approx(10.0)
    assert metrics["area_mae_a2_per_atom"] == pytest.approx(0.1)
    assert metrics["area_mae_x100"] == pytest.approx(10.0)
    assert metrics["convergence_rate"] == pytest.approx(2 / 3)
    assert metrics["energy_r2"] == pytest.approx(1 - (0.01**2 + 0.03**2) / 2.0)
    assert r_squared(np.array([1.0]), np.array([2.0])) is None


def test_evaluate_against_dft(trained_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    request = RelaxRequest(
        "tiny-m3gnet:1",
        training_set="layers",
        split="test",
        engine="batched",
        settings=RelaxSettings(fmax=5e-4, max_steps=40),
    )
    with pytest.raises(InvalidInput, match="no stored relaxations"):
        evaluate_relaxations(trained_registry.sessions, "tiny-m3gnet:1", "layers", "test", request)
    relax(trained_registry.sessions, request, trained_registry.artifacts_dir)
    evaluation = evaluate_relaxations(
        trained_registry.sessions, "tiny-m3gnet:1", "layers", "test", request, tmp_path / "report"
    )
    with trained_registry.sessions.begin() as session:
        stored = session.execute(
            text("SELECT * FROM evaluations WHERE id = :id"), {"id": evaluation.id}
        ).one()
    data = evaluation.per_material
    assert len(data) == 4 == evaluation.metrics["n_materials"]
    expected = np.abs(data["ml_energy_per_atom"] - data["dft_energy_per_atom"]).mean() * 1000
    assert evaluation.metrics["energy_mae_mev_per_atom"] == pytest.approx(expected)
    # A material counts for each of its elements: element counts sum to 2 per binary.
    assert evaluation.per_element["n_materials"].sum() == 2 * len(data)
    assert stored.kind == "relaxation" and stored.metrics == pytest.approx(evaluation.metrics)
    assert set(stored.per_element) == set(evaluation.per_element["element"])
    assert stored.parameters["relaxation"]["fmax_ev_per_a"] == 5e-4
    table = thesis_table([evaluation])
    assert list(table.columns)[:2] == ["model", "E MAE (meV/atom)"]
    report = tmp_path / "report"
    for name in (
        "parity_energy.png",
        "parity_area.png",
        "elements_energy_mae.png",
        "elements_area_mae.png",
    ):
        assert (report / name).stat().st_size > 10_000
    text_md = (report / "report.md").read_text()
    assert "E MAE (meV/atom)" in text_md and "## Per element" in text_md
