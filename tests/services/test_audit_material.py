"""``audit material``: a material's sources, relaxations, stability, training sets and the
models trained on it, directly or through an ancestor."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import NotFound
from atlas2d.services.audit_material import audit_material
from atlas2d.services.audit_source import resolve_source, retract_source
from tests.support.provenance import Provenance, build_provenance


@pytest.fixture
def graph(sessions: sessionmaker[Session], tmp_path: Path) -> Provenance:
    return build_provenance(sessions, tmp_path)


def test_a_material_trained_on_through_an_ancestor(sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    audit = audit_material(sessions, "b-000000")
    assert audit.material.key == "b-000000"
    assert audit.sources.path.tolist() == [str(graph.b_path)]
    assert audit.sources.relaxations.tolist() == [1]
    assert audit.sources.retracted_at.isna().all()
    assert len(audit.dft_relaxations) == 1
    assert sorted(audit.ml_relaxations.model) == ["base:1", "tuned:1"]
    assert audit.ml_relaxations.relaxation_id.tolist() == sorted(
        [graph.ml_relaxations["base:1@b-000000"], graph.ml_relaxations["tuned:1@b-000000"]]
    )
    assert audit.stability.energy_source.tolist() == ["dft", "base:1", "tuned:1"]
    ehull = dict(
        zip(audit.stability.energy_source, audit.stability.e_above_hull_mev_per_atom, strict=False)
    )
    assert ehull["base:1"] == pytest.approx(12.0) and ehull["tuned:1"] == pytest.approx(-3.0)

    # Only "both" holds b-000000: "a-only" was cut to file a.
    assert audit.training_sets.training_set.tolist() == ["both"]
    (split,) = audit.training_sets.split
    models = audit.models.set_index("model")
    assert sorted(models.index) == ["base:1", "tuned:1"]  # not other:1, which never saw it
    assert models.loc["base:1", "depth"] == 0
    assert pd.isna(models.loc["base:1", "through_ancestor"])  # trained on it directly
    # tuned:1 was trained on "a-only", without b-000000: it learnt it from its parent.
    assert models.loc["tuned:1", "depth"] == 1
    assert models.loc["tuned:1", "through_ancestor"] == "base:1"
    assert (models.split == split).all() and (models.training_set == "both").all()
    assert not models.tainted.any()
    decisions = audit.campaign_decisions
    assert decisions.empty  # the campaign decided about b-000001, not this one


def test_a_material_in_two_sets_counts_each_path_to_a_model(sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    audit = audit_material(sessions, "a-000000")
    sets = dict(zip(audit.training_sets.training_set, audit.training_sets.split, strict=False))
    assert set(sets) == {"both", "a-only"} and sets["a-only"] == "train"
    paths = {(row.model, row.training_set, row.depth) for row in audit.models.itertuples()}
    assert paths == {
        ("base:1", "both", 0),
        ("tuned:1", "a-only", 0),  # directly …
        ("tuned:1", "both", 1),  # … and through base:1
        ("other:1", "a-only", 0),
    }
    assert audit.ml_relaxations.model.tolist() == ["other:1"]


def test_models_reached_by_a_retracted_source_are_tainted(sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    retract_source(sessions, resolve_source(sessions, str(graph.b_path)).id, "wrong ENCUT")
    audit = audit_material(sessions, "a-000000")
    tainted = dict(zip(audit.models.model, audit.models.tainted, strict=False))
    # base:1 and its child saw file b ("both"); other:1 did not.
    assert tainted == {"base:1": True, "tuned:1": True, "other:1": False}
    sources = audit_material(sessions, "b-000000").sources
    assert sources.retraction_reason.tolist() == ["wrong ENCUT"]


def test_an_unknown_material_is_named(sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound, match=r"'nope'.*`atlas2d materials list`"):
        audit_material(sessions, "nope")
