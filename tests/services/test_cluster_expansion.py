"""Cluster expansions fitted on the train split of the demo's alloys, registered and
loaded like any model version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from atlas2d.errors import ArtifactChanged, InvalidInput, NotFound
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.alloy_formation import compute_formation_energies
from atlas2d.services.cluster_expansion import FitRequest, fit_cluster_expansion
from atlas2d.services.models import ModelVersionDetails, force_field_from_bytes, list_models
from atlas2d.services.trainsets import create_training_set
from tests.support.alloys import AlloyDatabase
from tests.support.leakage import splits_of

TRAINING_SET = "ce-alloys"


@pytest.fixture(scope="module")
def fitted(alloy_database: AlloyDatabase) -> Iterator[ModelVersionDetails]:
    create_training_set(
        alloy_database.sessions,
        TRAINING_SET,
        SelectionParameters(ecut=1e6, split=(60.0, 20.0, 20.0), seed=42, chemsys=("Mo-S-W",)),
    )
    request = FitRequest("Mo-W-S", TRAINING_SET, "ce-mows", cutoffs_a=(7.0,))
    yield fit_cluster_expansion(alloy_database.sessions, request, alloy_database.artifacts_dir)


def test_the_fit_sees_the_train_split_only(
    alloy_database: AlloyDatabase, fitted: ModelVersionDetails
) -> None:
    with alloy_database.sessions.begin() as session:
        splits = splits_of(session, TRAINING_SET)
    seen = set(fitted.metrics["training_materials"])
    in_set = seen & set(splits)
    assert in_set and {splits[key] for key in in_set} == {"train"}
    assert {k for k, s in splits.items() if s == "train"} <= seen
    # What else it saw: the two DFT end members (E_F = 0), outside the set.
    assert len(seen - in_set) == 2
    assert fitted.hyperparameters["prototype"] == "2H"
    assert fitted.hyperparameters["cutoffs_a"] == [7.0]
    assert fitted.metrics["cross_validation"]["cv_rmse_mev_per_site"] >= 0


def test_it_is_listed_and_predicts_formation_energies(
    alloy_database: AlloyDatabase, fitted: ModelVersionDetails
) -> None:
    listed = list_models(alloy_database.sessions, "ce-mows")
    assert listed.architecture.tolist() == ["cluster-expansion"]
    assert listed.training_set.tolist() == [TRAINING_SET]
    table = compute_formation_energies(
        alloy_database.sessions, "Mo-W-S", fitted.ref, alloy_database.artifacts_dir
    )
    assert set(table.energy_source) == {fitted.ref}
    assert table.x.between(0, 1, inclusive="neither").all()
    dft = compute_formation_energies(alloy_database.sessions, "Mo-W-S", "dft")
    assert set(table.end_members) == set(dft.end_members)
    # Every DFT alloy, and any enumerated one (no DFT yet: from its generated structure).
    dft_alloys = set(dft.material_key[(dft.x > 0) & (dft.x < 1)])
    assert len(dft_alloys) == 8 and dft_alloys <= set(table.material_key)
    assert all(k.startswith("gen-") for k in set(table.material_key) - dft_alloys)


def test_a_changed_file_is_refused(
    alloy_database: AlloyDatabase, fitted: ModelVersionDetails
) -> None:
    assert fitted.artifact_path is not None
    path = alloy_database.artifacts_dir / Path(fitted.artifact_path)
    original = path.read_bytes()
    path.write_bytes(original + b"\0")
    try:
        with pytest.raises(ArtifactChanged, match="Refusing to load model ce-mows:1"):
            compute_formation_energies(
                alloy_database.sessions, "Mo-W-S", fitted.ref, alloy_database.artifacts_dir
            )
    finally:
        path.write_bytes(original)


def test_it_is_no_force_field() -> None:
    with pytest.raises(InvalidInput, match="is a cluster expansion"):
        force_field_from_bytes("cluster-expansion", b"")


def test_compare_scores_each_split_and_stores_an_evaluation(
    alloy_database: AlloyDatabase, fitted: ModelVersionDetails, tmp_path: Path
) -> None:
    from sqlalchemy import text

    from atlas2d.services.alloy_compare import compare_alloys

    sessions = alloy_database.sessions
    dft = compute_formation_energies(sessions, "Mo-W-S", "dft")
    ce = compute_formation_energies(sessions, "Mo-W-S", fitted.ref, alloy_database.artifacts_dir)
    result = compare_alloys(sessions, ["Mo-S-W"], TRAINING_SET, tmp_path / "report")
    rows = result.errors[result.errors.energy_source == fitted.ref].set_index("split")
    assert rows.n_alloys.sum() == 8 and list(rows.index) == ["train", "val", "test"]
    # Test split by hand: |CE − DFT| over its alloys.
    with sessions.begin() as session:
        splits = splits_of(session, TRAINING_SET)
    test_keys = [k for k, s in splits.items() if s == "test"]
    by_key = dft.set_index("material_key").formation_energy_mev_per_site
    predicted = ce.set_index("material_key").formation_energy_mev_per_site
    expected = (predicted[test_keys] - by_key[test_keys]).abs().mean()
    assert rows.loc["test", "mae_mev_per_site"] == pytest.approx(expected)
    assert rows.loc["test", "mae_mev_per_atom"] == pytest.approx(expected / 3)
    assert {"dft", fitted.ref} <= set(result.ground_states.energy_source)
    assert (tmp_path / "report" / "alloys.md").is_file()
    assert (tmp_path / "report" / "parity_Mo-W-S.png").stat().st_size > 0
    with alloy_database.engine.connect() as connection:
        metrics = connection.execute(
            text(
                "SELECT e.metrics FROM evaluations e JOIN model_versions m"
                " ON m.id = e.model_version_id WHERE e.kind = 'alloy' AND m.name = 'ce-mows'"
            )
        ).scalar_one()
    assert metrics["Mo-W-S"]["test"]["n_alloys"] == len(test_keys)


def test_compare_refuses_an_expansion_fitted_on_another_training_set(
    alloy_database: AlloyDatabase, fitted: ModelVersionDetails
) -> None:
    from atlas2d.services.alloy_compare import compare_alloys

    sessions = alloy_database.sessions
    other = "ce-alloys-resplit"
    create_training_set(
        sessions,
        other,
        SelectionParameters(ecut=1e6, split=(60.0, 20.0, 20.0), seed=7, chemsys=("Mo-S-W",)),
    )
    compute_formation_energies(sessions, "Mo-W-S", "dft")
    compute_formation_energies(sessions, "Mo-W-S", fitted.ref, alloy_database.artifacts_dir)
    with pytest.raises(InvalidInput) as raised:
        compare_alloys(sessions, ["Mo-W-S"], other, energy_sources=[fitted.ref])
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"Cluster expansion {fitted.ref} was fitted on training set {TRAINING_SET!r}, not {other!r}"
    )
    # Not named, it is left out of a comparison on another set, and said so (in the
    # error when, as the shared database may be, nothing else is left to compare).
    try:
        left_out = compare_alloys(sessions, ["Mo-W-S"], other).left_out
    except NotFound as err:
        assert f"{fitted.ref} left out: fitted on training set {TRAINING_SET!r}" in str(err)
    else:
        assert fitted.ref in left_out
    # On its own training set it compares.
    own = compare_alloys(sessions, ["Mo-W-S"], TRAINING_SET)
    assert fitted.ref not in own.left_out
    assert fitted.ref in set(own.errors.energy_source)
