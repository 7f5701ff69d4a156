"""The leakage guard of ``evaluate``: a model is not scored on materials in a train split
of its training set or of an ancestor's (a whole formula or chemsys group where the set
was split by group); val-split materials are allowed and counted; ``allow_leakage``
stores the evaluation flagged. Registry rows and ML relaxations stand in for training
and ``relax`` (tests/support/leakage.py); the evaluations run for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.models import HullRun, Stability
from atlas2d.errors import InvalidInput
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.evaluate import evaluate_relaxations
from atlas2d.services.evaluate_stability import evaluate_stability
from atlas2d.services.trainsets import create_training_set
from tests.support.leakage import (
    CHILD,
    CHILD_SET,
    PARENT,
    PARENT_SET,
    Lineage,
    add_ml_relaxations,
    default_parameters,
    ingest_layers,
    make_lineage,
    register_model,
    splits_of,
)


@pytest.fixture
def lineage(sessions: sessionmaker[Session], tmp_path: Path) -> Lineage:
    return make_lineage(sessions, tmp_path)


def _splits(sessions: sessionmaker[Session]) -> tuple[dict[str, str], dict[str, str]]:
    with sessions.begin() as session:
        return splits_of(session, PARENT_SET), splits_of(session, CHILD_SET)


def _relax(sessions: sessionmaker[Session], model_id: int, model: str, keys: list[str]) -> None:
    with sessions.begin() as session:
        add_ml_relaxations(session, model_id, keys, default_parameters(model))


def _evaluations(sessions: sessionmaker[Session]) -> list[tuple[int, bool, int, int]]:
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT model_version_id, leakage, leaked_materials, ancestor_val_materials"
                " FROM evaluations ORDER BY id"
            )
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_the_model_s_own_train_split_is_refused_and_its_test_split_is_not(
    sessions: sessionmaker[Session], lineage: Lineage
) -> None:
    parent_splits, _ = _splits(sessions)
    _relax(sessions, lineage.parent_id, PARENT, list(parent_splits))
    train = sorted(k for k, s in parent_splits.items() if s == "train")

    with pytest.raises(InvalidInput) as refused:
        evaluate_relaxations(sessions, PARENT, PARENT_SET, "train")
    message = str(refused.value)
    assert f"Model {PARENT} has seen {len(train)} of the {len(train)} materials" in message
    assert ", ".join(train[:5]) + ", …" in message and train[5] not in message
    assert f"train split of {PARENT_SET} (its own)" in message
    assert f"model_training_materials({lineage.parent_id})" in message
    assert "--allow-leakage" in message
    assert _evaluations(sessions) == []  # nothing stored

    held_out = evaluate_relaxations(sessions, PARENT, PARENT_SET, "test")
    assert held_out.leakage.leaked == () and held_out.leakage.ancestor_val == ()
    assert _evaluations(sessions) == [(lineage.parent_id, False, 0, 0)]


def test_a_parent_s_train_split_is_refused_for_its_fine_tuned_child(
    sessions: sessionmaker[Session], lineage: Lineage
) -> None:
    parent_splits, child_splits = _splits(sessions)
    _relax(sessions, lineage.child_id, CHILD, list(child_splits))
    child_test = {k for k, s in child_splits.items() if s == "test"}
    leaked = sorted(k for k in child_test if parent_splits[k] == "train")
    validated = sorted(k for k in child_test if parent_splits[k] == "val")
    assert leaked  # the seeds put some of the child's test split in the parent's train split

    with pytest.raises(InvalidInput, match=f"has seen {len(leaked)} of the") as refused:
        evaluate_relaxations(sessions, CHILD, CHILD_SET, "test")
    assert f"{PARENT_SET} (of its ancestor {PARENT})" in str(refused.value)
    assert leaked[0] in str(refused.value)
    assert _evaluations(sessions) == []

    evaluation = evaluate_relaxations(sessions, CHILD, CHILD_SET, "test", allow_leakage=True)
    assert list(evaluation.leakage.leaked) == leaked
    assert list(evaluation.leakage.ancestor_val) == validated
    assert evaluation.metrics["n_materials"] == len(child_test)  # evaluated anyway
    assert _evaluations(sessions) == [(lineage.child_id, True, len(leaked), len(validated))]
    notes = evaluation.leakage.notes(len(child_test))
    assert notes[0].startswith(f"leakage: {len(leaked)} of {len(child_test)} materials")


def test_val_split_materials_are_allowed_and_counted(
    sessions: sessionmaker[Session], lineage: Lineage
) -> None:
    parent_splits, child_splits = _splits(sessions)
    never_trained = [k for k in child_splits if "train" not in (parent_splits[k], child_splits[k])]
    validated = sorted(k for k in never_trained if "val" in (parent_splits[k], child_splits[k]))
    # The child's own val split counts too (documented), the parent's more so.
    assert any(parent_splits[k] == "val" for k in validated)
    assert len(validated) < len(never_trained)  # some are in test splits only
    _relax(sessions, lineage.child_id, CHILD, never_trained)

    evaluation = evaluate_relaxations(sessions, CHILD, None, None)
    assert evaluation.leakage.leaked == ()
    assert list(evaluation.leakage.ancestor_val) == validated
    assert _evaluations(sessions) == [(lineage.child_id, False, 0, len(validated))]
    assert evaluation.leakage.notes(len(never_trained)) == [
        f"ancestor val: {len(validated)} of {len(never_trained)} materials were in a val "
        "split of the model or an ancestor (allowed, counted)"
    ]


def test_a_set_grouped_by_formula_refuses_a_polymorph_of_a_train_material(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    ingest_layers(sessions, tmp_path, "early", 12, seed=5)
    for name, group_by in (("by-formula", "formula"), ("by-material", "material")):
        create_training_set(
            sessions,
            name,
            SelectionParameters(ecut=1e6, split=(50.0, 25.0, 25.0), seed=1, group_by=group_by),
        )
    late = ingest_layers(sessions, tmp_path, "late", 8, seed=9)  # after both sets were made
    with sessions.begin() as session:
        formulas = dict(session.execute(text("SELECT key, formula FROM materials")).all())
        trained = {formulas[k] for k, s in splits_of(session, "by-formula").items() if s == "train"}
        grouped = register_model(session, "grouped", "by-formula")
        ungrouped = register_model(session, "ungrouped", "by-material")
    polymorphs = sorted(k for k in late if formulas[k] in trained)
    assert polymorphs  # a later material shares a formula with a trained one
    for model_id, model in ((grouped, "grouped:1"), (ungrouped, "ungrouped:1")):
        _relax(sessions, model_id, model, polymorphs)

    with pytest.raises(InvalidInput, match=f"has seen {len(polymorphs)} of the") as refused:
        evaluate_relaxations(sessions, "grouped:1", None, None)
    assert polymorphs[0] in str(refused.value) and "polymorph or sibling" in str(refused.value)
    # Split by material, the same set of materials never held these ones.
    assert evaluate_relaxations(sessions, "ungrouped:1", None, None).leakage.leaked == ()


def _stability_rows(session: Session, model_id: int, model: str, keys: list[str]) -> None:
    """DFT and model hull results for ``keys`` (values made up; the guard reads keys)."""
    runs = {}
    for source, mv in (("dft", None), (model, model_id)):
        run = HullRun(
            energy_source=source,
            model_version_id=mv,
            parameters={},
            watermarks={},
            counts={},
            wall_time_s=0.0,
        )
        session.add(run)
        session.flush()
        runs[source] = run.id
    ids = dict(session.execute(text("SELECT key, id FROM materials")).all())
    for i, key in enumerate(keys):
        for source, mv, e_above_hull in (("dft", None, 0.02 * i), (model, model_id, 0.03 * i)):
            session.add(
                Stability(
                    material_id=ids[key],
                    energy_source=source,
                    model_version_id=mv,
                    hull_run_id=runs[source],
                    energy_per_atom=-5.0,
                    formation_energy_per_atom=-0.5,
                    e_above_hull=e_above_hull,
                    hull_distance=e_above_hull,
                    decomposition=[],
                )
            )


def test_stability_evaluation_is_guarded_too(
    sessions: sessionmaker[Session], lineage: Lineage
) -> None:
    parent_splits, child_splits = _splits(sessions)
    keys = sorted(child_splits)
    leaked = [k for k in keys if "train" in (parent_splits[k], child_splits[k])]
    with sessions.begin() as session:
        _stability_rows(session, lineage.child_id, CHILD, keys)

    with pytest.raises(InvalidInput, match=f"has seen {len(leaked)} of the {len(keys)}"):
        evaluate_stability(sessions, CHILD)
    assert _evaluations(sessions) == []
    evaluation = evaluate_stability(sessions, CHILD, allow_leakage=True)
    assert list(evaluation.leakage.leaked) == leaked
    validated = (
        len(keys)
        - len(leaked)
        - sum(1 for k in keys if parent_splits[k] == child_splits[k] == "test")
    )
    assert _evaluations(sessions) == [(lineage.child_id, True, len(leaked), validated)]


def test_model_training_materials_lists_the_model_s_and_its_ancestors_sets(
    sessions: sessionmaker[Session], lineage: Lineage
) -> None:
    parent_splits, child_splits = _splits(sessions)
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT m.key, t.split, t.ancestor_id, t.depth"
                " FROM model_training_materials(:child) t JOIN materials m ON m.id = t.material_id"
            ),
            {"child": lineage.child_id},
        ).all()
        of_parent = session.execute(
            text("SELECT count(*) FROM model_training_materials(:parent) WHERE depth > 0"),
            {"parent": lineage.parent_id},
        ).scalar_one()
    expected = {(k, s, lineage.child_id, 0) for k, s in child_splits.items()}
    expected |= {(k, s, lineage.parent_id, 1) for k, s in parent_splits.items()}
    assert len(rows) == len(expected) and set(rows) == expected
    assert of_parent == 0  # a model without a parent has no ancestors


def test_cli_refuses_and_allow_leakage_stores_the_flag(
    cli, sessions: sessionmaker[Session], lineage: Lineage
) -> None:  # type: ignore[no-untyped-def]
    parent_splits, _ = _splits(sessions)
    _relax(sessions, lineage.parent_id, PARENT, list(parent_splits))
    n_train = sum(1 for s in parent_splits.values() if s == "train")
    args = ("evaluate", "--model", PARENT, "--trainset", PARENT_SET, "--split", "train")

    code, _, err = cli(*args)
    assert code == 1 and f"has seen {n_train} of the {n_train} materials" in err

    code, out, err = cli(*args, "--allow-leakage", "--format", "json")
    assert code == 0, err
    stored = json.loads(out)
    assert stored["leakage"] is True and stored["leaked_materials"] == n_train
    assert len(stored["leaked_keys"]) == n_train and stored["ancestor_val_materials"] == 0
    code, out, err = cli(*args, "--allow-leakage")
    assert code == 0, err
    assert f"leakage: {n_train} of {n_train} materials were in a train split" in out
    assert _evaluations(sessions) == [(lineage.parent_id, True, n_train, 0)]  # stored once
