"""Training sets that keep the splits of an earlier one (``keep_splits_from``): an
active-learning campaign's sets over growing data, where a material tested on once is
never trained on later."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.splits import assign_splits
from atlas2d.errors import NotFound
from atlas2d.io.records import ParsedFile
from atlas2d.queries import training_sets as queries
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.ingest import ingest_parsed
from atlas2d.services.trainsets import (
    create_training_set,
    preview_training_set,
    split_materials,
    verify_training_set,
)
from atlas2d.vocabulary import SPLITS
from tests.support.synthetic import synthetic_trajectories

FIRST = SelectionParameters(ecut=1e6, split=(50.0, 25.0, 25.0), seed=1)
"""The earlier set: half the materials held out, so that a fresh split moves some."""


def _ingest(sessions: sessionmaker[Session], prefix: str, n_materials: int, seed: int) -> None:
    trajectories = synthetic_trajectories(n_materials, 5, 6, seed=seed, key_prefix=prefix)
    ingest_parsed(
        sessions, ParsedFile(f"{prefix}.json", "records", "", "test", trajectories=trajectories)
    )


def _membership(sessions: sessionmaker[Session], name: str) -> dict[str, str]:
    """{material key: split} of a stored set, checking one split per material."""
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT m.key, t.split FROM training_set_frames t"
                " JOIN training_sets s ON s.id = t.training_set_id"
                " JOIN relaxations r ON r.id = t.relaxation_id"
                " JOIN materials m ON m.id = r.material_id WHERE s.name = :name"
                " GROUP BY m.key, t.split"
            ),
            {"name": name},
        ).all()
    membership = dict(rows)
    assert len(membership) == len(rows), "a material in two splits"
    return membership


def _counts(sessions: sessionmaker[Session], name: str) -> dict[str, dict[str, int]]:
    """{split: {"frames": n, "materials": m}} counted from the stored frames."""
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT t.split, count(*), count(DISTINCT r.material_id) FROM training_set_frames t"
                " JOIN training_sets s ON s.id = t.training_set_id"
                " JOIN relaxations r ON r.id = t.relaxation_id WHERE s.name = :name"
                " GROUP BY t.split"
            ),
            {"name": name},
        ).all()
    counts = {split: {"frames": 0, "materials": 0} for split in SPLITS}
    for split, frames, materials in rows:
        counts[split] = {"frames": frames, "materials": materials}
    return counts


def _material_ids(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions.begin() as session:
        return dict(session.execute(text("SELECT key, id FROM materials")).tuples().all())


@pytest.fixture
def grown(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Set ``first`` over 16 materials, then 10 more materials ingested."""
    _ingest(sessions, "old", 16, seed=5)
    create_training_set(sessions, "first", FIRST)
    _ingest(sessions, "new", 10, seed=6)
    return sessions


def test_earlier_materials_keep_their_split_and_new_ones_are_split(grown) -> None:  # type: ignore[no-untyped-def]
    params = SelectionParameters(ecut=1e6, split=(80.0, 10.0, 10.0), seed=7)
    kept = create_training_set(grown, "second", replace(params, keep_splits_from="first"))
    fresh = create_training_set(grown, "fresh", params)
    first, second = _membership(grown, "first"), _membership(grown, "second")
    assert len(first) == 16 and len(second) == 26
    assert {key: second[key] for key in first} == first
    # Not vacuous: the same split without keep_splits_from moves earlier materials.
    refreshed = _membership(grown, "fresh")
    assert any(refreshed[key] != first[key] for key in first)
    # New materials get the seeded split of the new groups (group_by material).
    ids = _material_ids(grown)
    new_keys = sorted(set(second) - set(first))
    expected = assign_splits([str(ids[k]) for k in new_keys], params.split, params.seed)
    assert {k: second[k] for k in new_keys} == {k: expected[str(ids[k])] for k in new_keys}
    # The stored counts are those of the final assignment.
    assert kept.split_counts == _counts(grown, "second")
    assert kept.n_materials == 26 and kept.n_frames == fresh.n_frames
    assert kept.parameters["keep_splits_from"] == "first"
    assert kept.content_hash != fresh.content_hash


def test_a_set_keeping_splits_verifies_as_data_grows(grown) -> None:  # type: ignore[no-untyped-def]
    create_training_set(
        grown, "second", SelectionParameters(ecut=1e6, seed=3, keep_splits_from="first")
    )
    assert verify_training_set(grown, "second").reproduced
    _ingest(grown, "later", 4, seed=8)
    report = verify_training_set(grown, "second")
    assert report.reproduced, report.differences


def test_materials_that_no_longer_survive_are_left_out(grown) -> None:  # type: ignore[no-untyped-def]
    with grown.begin() as session:
        chemsys = session.execute(
            text("SELECT chemsys FROM materials GROUP BY chemsys ORDER BY count(*) DESC LIMIT 1")
        ).scalar_one()
    narrow = create_training_set(
        grown,
        "narrow",
        SelectionParameters(ecut=1e6, chemsys=(chemsys,), keep_splits_from="first"),
    )
    first, narrowed = _membership(grown, "first"), _membership(grown, "narrow")
    both = set(narrowed) & set(first)
    assert both and set(narrowed) < set(_material_ids(grown))
    assert {k: narrowed[k] for k in both} == {k: first[k] for k in both}
    assert narrow.split_counts == _counts(grown, "narrow")


def test_a_group_with_earlier_members_takes_their_split(grown) -> None:  # type: ignore[no-untyped-def]
    second = create_training_set(
        grown,
        "byformula",
        SelectionParameters(
            ecut=1e6, split=(34.0, 33.0, 33.0), group_by="formula", keep_splits_from="first"
        ),
    )
    with grown.begin() as session:
        formula_of = dict(
            session.execute(text("SELECT key, formula FROM materials")).tuples().all()
        )
    first, grouped = _membership(grown, "first"), _membership(grown, "byformula")
    assert {key: grouped[key] for key in first} == first
    votes: dict[str, Counter[str]] = {}
    for key, split in first.items():
        votes.setdefault(formula_of[key], Counter())[split] += 1
    # The earlier set grouped by material, so some formulas span several splits.
    assert any(len(counts) > 1 for counts in votes.values())
    joined = [key for key in set(grouped) - set(first) if formula_of[key] in votes]
    assert joined
    for key in joined:
        counts = votes[formula_of[key]]
        top = max(counts.values())
        assert grouped[key] == next(s for s in SPLITS if counts[s] == top), key
    assert second.split_counts == _counts(grown, "byformula")
    assert verify_training_set(grown, "byformula").reproduced


def test_split_materials_keeps_earlier_splits_and_breaks_ties_in_split_order() -> None:
    material_ids = [1, 2, 3, 4, 5, 6, 7, 8]
    groups = ["a", "a", "a", "b", "b", "b", "c", "d"]
    earlier = {1: "test", 2: "val", 4: "val", 5: "val"}
    split_of = split_materials(material_ids, groups, earlier, (100.0, 0.0, 0.0), seed=0)  # type: ignore[arg-type]
    # Group a is tied (one test, one val): val comes first in train, val, test order.
    assert split_of == {1: "test", 2: "val", 3: "val", 4: "val", 5: "val", 6: "val"} | {
        7: "train",
        8: "train",
    }
    # With no earlier set it is the plain seeded split of the groups.
    plain = assign_splits(groups, (50.0, 25.0, 25.0), seed=4)
    assert split_materials(material_ids, groups, {}, (50.0, 25.0, 25.0), seed=4) == {
        m: plain[g] for m, g in zip(material_ids, groups, strict=True)
    }


def test_an_unknown_earlier_set_is_refused_and_nothing_written(grown, count_rows) -> None:  # type: ignore[no-untyped-def]
    before = count_rows("training_sets"), count_rows("training_set_relaxations")
    params = SelectionParameters(ecut=1e6, keep_splits_from="nope")
    for make in (create_training_set, preview_training_set):
        with pytest.raises(NotFound, match=r"'nope'.*`atlas2d trainset list`"):
            make(grown, "second", params)
    assert (count_rows("training_sets"), count_rows("training_set_relaxations")) == before


def test_a_preview_counts_what_create_stores(grown) -> None:  # type: ignore[no-untyped-def]
    params = SelectionParameters(ecut=1e6, seed=9, keep_splits_from="first")
    preview = preview_training_set(grown, "second", params)
    assert preview.content_hash is None
    assert preview.parameters["keep_splits_from"] == "first"
    created = create_training_set(grown, "second", params)
    for field in ("split_counts", "filter_counts", "n_frames", "n_materials"):
        assert getattr(preview, field) == getattr(created, field), field


def test_parameters_stored_before_keep_splits_from_still_load(grown) -> None:  # type: ignore[no-untyped-def]
    params = SelectionParameters(keep_splits_from="first")
    assert SelectionParameters.from_json(json.loads(json.dumps(params.to_json()))) == params
    older = {k: v for k, v in FIRST.to_json().items() if k != "keep_splits_from"}
    assert SelectionParameters.from_json(older) == FIRST
    assert SelectionParameters.from_json(older).keep_splits_from is None
    # And a stored set whose parameters lack the key verifies.
    with grown.begin() as session:
        # Past the immutability trigger, as a set stored by an older version.
        session.execute(text("ALTER TABLE training_sets DISABLE TRIGGER USER"))
        session.execute(
            text("UPDATE training_sets SET parameters = parameters - 'keep_splits_from'")
        )
        session.execute(text("ALTER TABLE training_sets ENABLE TRIGGER USER"))
        row = queries.training_set_row(session, "first")
    assert row is not None and "keep_splits_from" not in row.parameters
    assert verify_training_set(grown, "first").reproduced


def test_trainset_create_keep_splits_from_on_the_command_line(cli, sessions) -> None:  # type: ignore[no-untyped-def]
    _ingest(sessions, "old", 12, seed=5)
    code, _, err = cli("trainset", "create", "first", "--ecut", "1e6", "--split", "50:25:25")
    assert code == 0, err
    _ingest(sessions, "new", 6, seed=6)
    code, out, err = cli(
        "trainset", "create", "second", "--ecut", "1e6", "--keep-splits-from", "first"
    )
    assert code == 0, err
    first, second = _membership(sessions, "first"), _membership(sessions, "second")
    assert {key: second[key] for key in first} == first and len(second) == 18
    code, out, _ = cli("trainset", "show", "second", "--format", "json")
    assert code == 0 and json.loads(out)["parameters"]["keep_splits_from"] == "first"
    code, out, _ = cli("trainset", "show", "second")
    assert "keep_splits_from" in out
    code, out, _ = cli("trainset", "verify", "second")
    assert code == 0, out
    code, _, err = cli("trainset", "create", "third", "--keep-splits-from", "nope")
    assert code == 1 and "`atlas2d trainset list`" in err
    code, out, _ = cli("trainset", "create", "--help")
    assert "--keep-splits-from" in out
