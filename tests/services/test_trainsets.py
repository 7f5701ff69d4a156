"""Training sets against a real PostgreSQL: the thesis's rules, outlier filters, splits,
immutability and verification."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.splits import assign_splits, parse_ratios
from atlas2d.db.session import make_engine
from atlas2d.errors import AlreadyExists, InvalidInput, NotFound
from atlas2d.io.readers import ReadOptions
from atlas2d.io.records import ParsedFile, Trajectory
from atlas2d.queries import training_sets as queries
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.ingest import ingest_file, ingest_parsed
from atlas2d.services.trainsets import (
    create_training_set,
    list_training_sets,
    preview_training_set,
    show_training_set,
    verify_training_set,
)
from atlas2d.vocabulary import GROUP_BYS, OUTLIER_SCOPES, RULES
from tests.conftest import _drop_database, _migrated_database, rolled_back_sessions
from tests.support.synthetic import alexandria_document, synthetic_trajectories

# Lengths cover the corner cases of the fallback {0, ⌊(N−1)/2⌋, N−1}.
LENGTHS = [1, 2, 3, 4, 5, 7, 12, 25, 40]


def _trajectories(seed: int = 3) -> list[Trajectory]:
    rng = np.random.default_rng(seed)
    trajectories = []
    for k, n_steps in enumerate(LENGTHS * 2):
        (traj,) = synthetic_trajectories(1, n_steps, 6, seed=seed * 100 + k, key_prefix=f"m{k:02d}")
        # Energy steps of mixed sizes around the ecut of the tests (eV/atom).
        steps = rng.choice([0.001, 0.004, 0.02, 0.3], size=n_steps)
        traj.energies = -4.0 * 6 - 6 * np.cumsum(steps)
        trajectories.append(traj)
    return trajectories


@pytest.fixture
def alexandria_data(sessions: sessionmaker[Session], tmp_path: Path) -> list[Trajectory]:
    trajectories = _trajectories()
    path = tmp_path / "alex.json"
    path.write_text(json.dumps(alexandria_document(trajectories)))
    ingest_file(sessions, path, ReadOptions())
    return trajectories


def _expected_ecut(
    energies_per_atom: np.ndarray, ecut: float, include_final: bool = False
) -> set[int]:
    """The thesis's rule, written plainly."""
    n = len(energies_per_atom)
    keep = {i for i in range(n - 1) if abs(energies_per_atom[i] - energies_per_atom[i + 1]) > ecut}
    if not keep:
        keep = {0, (n - 1) // 2, n - 1}
    if include_final:
        keep.add(n - 1)
    return keep


def _selected_steps(sessions: sessionmaker[Session], name: str) -> dict[str, set[int]]:
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT m.key, f.step FROM training_set_frames t JOIN training_sets s ON s.id = t.training_set_id"
                " JOIN frames f ON f.id = t.frame_id JOIN relaxations r ON r.id = f.relaxation_id"
                " JOIN materials m ON m.id = r.material_id WHERE s.name = :name"
            ),
            {"name": name},
        ).all()
    steps: dict[str, set[int]] = {}
    for key, step in rows:
        steps.setdefault(key, set()).add(step)
    return steps


def test_ecut_1e6_keeps_the_three_fallback_steps(sessions, alexandria_data) -> None:  # type: ignore[no-untyped-def]
    create_training_set(sessions, "fallback", SelectionParameters(ecut=1e6))
    selected = _selected_steps(sessions, "fallback")
    for traj in alexandria_data:
        n = traj.n_frames
        assert selected[traj.material_key] == {0, (n - 1) // 2, n - 1}, (traj.material_key, n)
    assert {len(s) for k, s in selected.items()} == {1, 2, 3}  # N = 1, 2 give fewer


@pytest.mark.parametrize(
    ("ecut", "include_final"), [(0.01, False), (0.003, False), (0.01, True), (0.0, False)]
)
def test_ecut_keeps_the_steps_the_rule_names(
    sessions, alexandria_data, ecut, include_final
) -> None:  # type: ignore[no-untyped-def]
    create_training_set(
        sessions, "rule", SelectionParameters(ecut=ecut, include_final=include_final)
    )
    selected = _selected_steps(sessions, "rule")
    for traj in alexandria_data:
        expected = _expected_ecut(traj.energies / traj.n_sites, ecut, include_final)
        assert selected[traj.material_key] == expected, traj.material_key


def test_wang_and_all_rules(sessions, alexandria_data) -> None:  # type: ignore[no-untyped-def]
    create_training_set(sessions, "wang", SelectionParameters(rule="wang"))
    create_training_set(sessions, "all", SelectionParameters(rule="all"))
    wang, everything = _selected_steps(sessions, "wang"), _selected_steps(sessions, "all")
    for traj in alexandria_data:
        n = traj.n_frames
        assert wang[traj.material_key] == {0, n // 3, n - 1}
        assert everything[traj.material_key] == set(range(n))


@pytest.mark.parametrize("rule", ["ecut", "all"])  # steps looked up, steps scanned
def test_only_relaxations_of_the_method_enter(sessions, alexandria_data, rule) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        ml_key = session.execute(
            text(
                "UPDATE relaxations SET method = 'ml' WHERE id = (SELECT min(id) FROM relaxations)"
                " RETURNING (SELECT key FROM materials m WHERE m.id = material_id)"
            )
        ).scalar_one()
    ecut = 1e6 if rule == "ecut" else 0.01
    create_training_set(sessions, "dft", SelectionParameters(rule=rule, ecut=ecut))
    create_training_set(sessions, "ml", SelectionParameters(rule=rule, ecut=ecut, method="ml"))
    assert ml_key not in _selected_steps(sessions, "dft")
    assert len(_selected_steps(sessions, "dft")) == len(alexandria_data) - 1
    assert list(_selected_steps(sessions, "ml")) == [ml_key]


def test_a_dry_run_counts_what_create_stores_and_stores_nothing(sessions, alexandria_data) -> None:  # type: ignore[no-untyped-def]
    params = SelectionParameters(ecut=0.003, split=(60.0, 20.0, 20.0), seed=2)
    preview = preview_training_set(sessions, "later", params)
    with sessions.begin() as session:
        assert session.execute(text("SELECT count(*) FROM training_sets")).scalar_one() == 0
    created = create_training_set(sessions, "later", params)
    assert preview.content_hash is None and created.content_hash
    for field in ("split_counts", "filter_counts", "n_frames", "n_materials"):
        assert getattr(preview, field) == getattr(created, field), field
    assert preview.relaxation_watermark == created.relaxation_watermark
    with pytest.raises(AlreadyExists, match="'later' exists"):
        preview_training_set(sessions, "later", params)


def test_the_pass_over_the_frames_leaves_the_session_settings_alone(
    sessions, alexandria_data
) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        # A session's own values, not the server's defaults, must come back.
        session.execute(text("SET max_parallel_workers_per_gather = 0"))
        session.execute(text("SET work_mem = '7MB'"))
        before = {n: session.execute(text(f"SHOW {n}")).scalar_one() for n in queries.PASS_SETTINGS}
        queries.select_candidates(session, SelectionParameters(), watermark=10**9)
        after = {n: session.execute(text(f"SHOW {n}")).scalar_one() for n in queries.PASS_SETTINGS}
        session.execute(text("RESET ALL"))
    assert before["max_parallel_workers_per_gather"] == "0" and before["work_mem"] == "7MB"
    assert after == before


def test_each_relaxation_of_a_material_gets_the_rule(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    first, second = synthetic_trajectories(2, 9, 6, seed=4)
    second.material_key = first.material_key
    second.species = first.species
    second.sequence = 1
    path = tmp_path / "two_runs.json"
    path.write_text(json.dumps(alexandria_document([first, second])))
    ingest_file(sessions, path, ReadOptions())
    create_training_set(sessions, "two", SelectionParameters(ecut=1e6))
    with sessions.begin() as session:
        steps = session.execute(
            text(
                "SELECT r.sequence, f.step FROM training_set_frames t JOIN frames f ON f.id = t.frame_id"
                " JOIN relaxations r ON r.id = f.relaxation_id ORDER BY 1, 2"
            )
        ).all()
    assert [tuple(s) for s in steps] == [(0, 0), (0, 4), (0, 8), (1, 0), (1, 4), (1, 8)]


def test_splits_are_by_material_seeded_and_sized(sessions, alexandria_data) -> None:  # type: ignore[no-untyped-def]
    summary = create_training_set(
        sessions, "s1", SelectionParameters(rule="all", split=(60.0, 20.0, 20.0), seed=1)
    )
    again = create_training_set(
        sessions, "s2", SelectionParameters(rule="all", split=(60.0, 20.0, 20.0), seed=1)
    )
    other = create_training_set(
        sessions, "s3", SelectionParameters(rule="all", split=(60.0, 20.0, 20.0), seed=2)
    )
    assert summary.content_hash == again.content_hash != other.content_hash
    # 18 materials cut at the rounded cumulative ratios: 10.8 → 11, 14.4 → 14.
    assert [summary.split_counts[s]["materials"] for s in ("train", "val", "test")] == [11, 3, 4]
    with sessions.begin() as session:
        shared = session.execute(
            text(
                "SELECT r.material_id FROM training_set_frames t JOIN training_sets s ON s.id = t.training_set_id"
                " JOIN frames f ON f.id = t.frame_id JOIN relaxations r ON r.id = f.relaxation_id"
                " WHERE s.name = 's1' GROUP BY r.material_id HAVING count(DISTINCT t.split) > 1"
            )
        ).all()
    assert shared == []


def test_group_by_formula_keeps_polymorphs_together(sessions, alexandria_data) -> None:  # type: ignore[no-untyped-def]
    create_training_set(
        sessions,
        "byformula",
        SelectionParameters(rule="all", split=(50.0, 25.0, 25.0), group_by="formula"),
    )
    with sessions.begin() as session:
        split_formulas = session.execute(
            text(
                "SELECT m.formula, count(DISTINCT t.split) FROM training_set_frames t"
                " JOIN frames f ON f.id = t.frame_id JOIN relaxations r ON r.id = f.relaxation_id"
                " JOIN materials m ON m.id = r.material_id GROUP BY m.formula"
            )
        ).all()
    assert len(split_formulas) > 3 and all(n == 1 for _, n in split_formulas)


def test_split_helpers() -> None:
    assert parse_ratios("80:10:10") == (80.0, 10.0, 10.0)
    for bad in ("90:5", "90:5:6", "a:b:c", "110:-5:-5"):
        with pytest.raises(ValueError, match="split"):
            parse_ratios(bad)
    groups = [str(i) for i in range(200)]
    assignment = assign_splits(groups, (90.0, 5.0, 5.0), seed=0)
    assert [list(assignment.values()).count(s) for s in ("train", "val", "test")] == [180, 10, 10]
    assert assignment == assign_splits(list(reversed(groups)), (90.0, 5.0, 5.0), seed=0)


def _outlier_trajectories() -> list[Trajectory]:
    """Seven materials of five steps (steps 0-3 kept at ecut 0.01): four with one
    offending frame at step 0, one clean, one with 21 sites, one with an isolated atom."""
    base = synthetic_trajectories(5, 5, 6, seed=9, key_prefix="o")
    for traj in base:
        traj.energies = np.full(5, -24.0) - np.arange(5) * 0.6
    base[0].energies[0] = +1.0  # E/N > 0
    base[1].forces[0, 0] = [21.0, 0.0, 0.0]  # |F| > 20 eV/Å
    base[2].stresses[0, 0, 0] = -501.0 / 1602.1766208  # |σ| > 500 kBar
    base[3].energies[0] = -6 * 21.0  # E/N < −20
    big = synthetic_trajectories(1, 5, 21, seed=10, key_prefix="big")[0]  # > 20 sites
    big.energies = np.full(5, -21 * 4.0) - np.arange(5)
    # 12 sites: in-plane lattice 6.4 Å, so no atom sees its own image within 5 Å.
    lone = synthetic_trajectories(1, 5, 12, seed=11, key_prefix="lone")[0]
    lone.energies = np.full(5, -48.0) - np.arange(5) * 1.2
    lone.cells = lone.cells.copy()
    lone.cells[:, 2, 2] = 40.0
    lone.positions[0, 0, 2] += 8.0  # one atom 8 Å above the layer at step 0
    return [*base, big, lone]


def test_outlier_filters_at_material_and_frame_scope(sessions: sessionmaker[Session]) -> None:
    ingest_parsed(
        sessions, ParsedFile("mem", "records", "", "test", trajectories=_outlier_trajectories())
    )
    material = create_training_set(sessions, "mat", SelectionParameters(split=(100.0, 0.0, 0.0)))
    frame = create_training_set(
        sessions, "frm", SelectionParameters(split=(100.0, 0.0, 0.0), outlier_scope="frame")
    )
    flagged = {name: counts["frames"] for name, counts in material.filter_counts.items()}
    assert flagged == {
        "max_sites": 4,
        "isolated": 1,
        "energy_per_atom": 2,
        "max_force": 1,
        "max_stress": 1,
        "rule_kept": 28,
        "removed": 24,
        "retracted": 0,  # frames of retracted sources left out: none is retracted
    }
    assert material.filter_counts["removed"]["materials"] == 6
    assert material.filter_counts["energy_per_atom"]["materials"] == 2
    assert (material.n_frames, material.n_materials) == (4, 1)  # only the clean material
    assert frame.filter_counts["removed"] == {
        "frames": 9,
        "materials": 1,
    }  # 4 big + 5 single frames
    assert frame.n_frames == 19
    steps = _selected_steps(sessions, "frm")
    assert steps["o-000000"] == {1, 2, 3} and steps["lone-000000"] == {1, 2, 3}
    assert steps["o-000004"] == {0, 1, 2, 3}
    assert "big-000000" not in steps


def test_another_isolated_cutoff_is_computed(sessions: sessionmaker[Session]) -> None:
    ingest_parsed(
        sessions, ParsedFile("mem", "records", "", "test", trajectories=_outlier_trajectories())
    )
    loose = create_training_set(
        sessions,
        "loose",
        SelectionParameters(split=(100.0, 0.0, 0.0), outlier_scope="frame", isolated_cutoff=9.0),
    )
    assert loose.filter_counts["isolated"]["frames"] == 0  # 8 Å away counts as a neighbour
    with pytest.raises(
        InvalidInput, match="rule kept 28 frames"
    ):  # no atom has a neighbour within 0.5 Å
        create_training_set(
            sessions, "tight", SelectionParameters(outlier_scope="frame", isolated_cutoff=0.5)
        )


def test_verify_reproduces_then_reports_deleted_and_changed_frames(
    sessions, alexandria_data
) -> None:  # type: ignore[no-untyped-def]
    create_training_set(sessions, "v", SelectionParameters(ecut=0.01))
    assert verify_training_set(sessions, "v").reproduced
    # New data after the watermark does not change the answer.
    ingest_parsed(
        sessions,
        ParsedFile(
            "more",
            "records",
            "",
            "test",
            trajectories=synthetic_trajectories(3, 5, 6, seed=99, key_prefix="late"),
        ),
    )
    assert verify_training_set(sessions, "v").reproduced
    with sessions.begin() as session:
        changed, deleted = (
            session.execute(
                text("SELECT frame_id FROM training_set_frames ORDER BY frame_id LIMIT 2")
            )
            .scalars()
            .all()
        )
        session.execute(
            text("UPDATE frames SET energy = energy + 1e-9 WHERE id = :id"), {"id": changed}
        )
        session.execute(text("DELETE FROM frames WHERE id = :id"), {"id": deleted})
    report = verify_training_set(sessions, "v")
    assert not report.reproduced
    assert report.differences["deleted"] == {"count": 1, "first": [deleted]}
    assert report.differences["changed"] == {"count": 1, "first": [changed]}
    assert report.recomputed_hash != report.stored_hash


# One change per stored column a digest covers, each to a different frame.
_COLUMN_CHANGES = {
    "step": "step = step + 100000",
    "cell": "cell[2][2] = cell[2][2] + 1e-12",
    "positions": "positions = set_byte(positions, 0, get_byte(positions, 0) # 1)",
    "forces": "forces = set_byte(forces, 23, get_byte(forces, 23) # 128)",
    "stress": "stress = CASE WHEN stress IS NULL THEN cell ELSE NULL END",
}


def test_verify_detects_a_change_to_any_digested_column(sessions, alexandria_data) -> None:  # type: ignore[no-untyped-def]
    create_training_set(sessions, "cols", SelectionParameters(ecut=0.01))
    assert verify_training_set(sessions, "cols").differences["changed"]["count"] == 0
    with sessions.begin() as session:
        frame_ids = (
            session.execute(
                text("SELECT frame_id FROM training_set_frames ORDER BY frame_id LIMIT :n"),
                {"n": len(_COLUMN_CHANGES)},
            )
            .scalars()
            .all()
        )
        for frame_id, change in zip(frame_ids, _COLUMN_CHANGES.values(), strict=True):
            session.execute(text(f"UPDATE frames SET {change} WHERE id = :id"), {"id": frame_id})
    changed = verify_training_set(sessions, "cols").differences["changed"]
    assert changed == {"count": len(frame_ids), "first": sorted(frame_ids)}


def test_training_sets_are_immutable_and_named_once(sessions, alexandria_data) -> None:  # type: ignore[no-untyped-def]
    create_training_set(sessions, "fixed", SelectionParameters())
    with pytest.raises(AlreadyExists, match="'fixed' exists"):
        create_training_set(sessions, "fixed", SelectionParameters(ecut=0.5))
    with (
        pytest.raises(DBAPIError, match="training sets are immutable"),
        sessions.begin() as session,
    ):
        session.execute(text("UPDATE training_set_relaxations SET split = 'test'"))
    with pytest.raises(NotFound, match="No training set is named 'nope'"):
        show_training_set(sessions, "nope")
    listing = list_training_sets(sessions)
    assert listing["name"].tolist() == ["fixed"]


def test_bad_parameters_and_empty_selections_are_refused(sessions, alexandria_data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="outlier scope 'everything'"):
        create_training_set(
            sessions,
            "bad",
            SelectionParameters(outlier_scope="everything"),  # type: ignore[arg-type]
        )
    with pytest.raises(InvalidInput, match="No frame survives"):
        create_training_set(sessions, "empty", SelectionParameters(chemsys=("Au-Cu",)))
    with sessions.begin() as session:
        assert session.execute(text("SELECT count(*) FROM training_sets")).scalar_one() == 0


def test_selection_by_chemsys_and_dimensionality(sessions, alexandria_data) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        chemsys = session.execute(
            text("SELECT chemsys FROM materials ORDER BY key LIMIT 1")
        ).scalar_one()
        n_expected = session.execute(
            text("SELECT count(*) FROM materials WHERE chemsys = :c"), {"c": chemsys}
        ).scalar_one()
    summary = create_training_set(
        sessions, "one", SelectionParameters(rule="all", chemsys=(chemsys,), split=(100, 0, 0))
    )
    assert summary.n_materials == n_expected
    layers = create_training_set(
        sessions, "layers", SelectionParameters(rule="all", dimensionality=2, split=(100, 0, 0))
    )
    assert layers.n_materials == len(LENGTHS) * 2
    with pytest.raises(InvalidInput, match="No frame survives"):
        create_training_set(sessions, "bulk", SelectionParameters(rule="all", dimensionality=3))


def test_stored_rows_belong_to_a_training_set(sessions, alexandria_data) -> None:  # type: ignore[no-untyped-def]
    create_training_set(sessions, "kept", SelectionParameters())
    with pytest.raises(DBAPIError, match="refers to no training set"), sessions.begin() as session:
        session.execute(
            text("INSERT INTO training_set_relaxations VALUES (999999, 1, 'train', '{1}')")
        )
    with sessions.begin() as session:
        assert session.execute(text("SELECT count(*) FROM training_set_frames")).scalar_one() > 0
        session.execute(text("DELETE FROM training_sets WHERE name = 'kept'"))
        assert (
            session.execute(text("SELECT count(*) FROM training_set_relaxations")).scalar_one() == 0
        )


def test_every_word_of_the_vocabulary_has_its_sql() -> None:
    """A rule, outlier scope or group-by added to ``atlas2d.vocabulary`` needs its SQL."""
    assert tuple(queries.RULES_SQL) == RULES
    assert tuple(queries.SURVIVORS) == OUTLIER_SCOPES
    assert tuple(queries.GROUP_KEYS) == GROUP_BYS


def test_a_stored_set_comes_back_as_a_typed_row(sessions, alexandria_data) -> None:  # type: ignore[no-untyped-def]
    made = create_training_set(sessions, "typed", SelectionParameters(rule="wang", seed=4))
    with sessions.begin() as session:
        row = queries.training_set_row(session, "typed")
        (listed,) = queries.list_training_sets(session)
    assert isinstance(row, queries.TrainingSetRow) and listed == row
    assert (row.name, row.rule, row.content_hash, row.n_frames) == (
        "typed",
        "wang",
        made.content_hash,
        made.n_frames,
    )
    assert SelectionParameters.from_json(row.parameters) == SelectionParameters(rule="wang", seed=4)


@pytest.fixture
def stale_statistics_sessions(database_server: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions (one outer transaction, rolled back) on a fresh database whose ``frames``
    statistics say "no rows" over many pages: what autovacuum leaves after analysing a
    table whose large insert was rolled back, and CI met. The planner then takes
    ``frames`` for empty however much is inserted."""
    url = _migrated_database(database_server, "atlas2d_stale")
    engine = make_engine(url)
    try:
        with rolled_back_sessions(engine) as sessions:
            batch = synthetic_trajectories(200, 25, (3, 8), seed=99, key_prefix="gone")
            ingest_parsed(sessions, ParsedFile("gone", "records", "", "test", trajectories=batch))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM (ANALYZE, TRUNCATE false) frames"))
            believed, pages = connection.execute(
                text("SELECT reltuples, relpages FROM pg_class WHERE relname = 'frames'")
            ).one()
        assert believed == 0 and pages > 0  # the trap is armed
        with rolled_back_sessions(engine) as factory:
            yield factory
    finally:
        engine.dispose()
        _drop_database(database_server, url)


def test_a_large_set_verifies_right_after_it_is_created(
    stale_statistics_sessions: sessionmaker[Session],
) -> None:
    """200,000 frames ingested, selected and verified in one transaction, on a database
    whose statistics took ``frames`` for empty: ingest and create analyse what they
    wrote, so no comparison is planned for a tiny table (one ran past 2 minutes)."""
    sessions = stale_statistics_sessions
    with sessions.begin() as session:  # a quadratic plan fails here instead of hanging CI
        session.execute(text("SET LOCAL statement_timeout = '120s'"))
    for start in range(0, 8000, 2000):
        batch = synthetic_trajectories(2000, 25, (3, 8), seed=start, key_prefix=f"v{start}")
        ingest_parsed(sessions, ParsedFile(f"v{start}", "records", "", "test", trajectories=batch))
    summary = create_training_set(sessions, "large", SelectionParameters(rule="all"))
    assert summary.n_frames == 200_000
    report = verify_training_set(sessions, "large")
    assert report.reproduced, report.differences


def test_a_failed_statistics_refresh_leaves_the_file_ingested(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh runs after the file's commit: if ANALYZE fails (a lock timeout, a
    lost connection) the file stays stored and the ingest reports it, no traceback."""
    from atlas2d.services import ingest as ingest_service

    def failing(session: Session, table: str, rows: int) -> bool:
        raise DBAPIError("ANALYZE frames", {}, Exception("lock timeout"))

    monkeypatch.setattr(ingest_service, "refresh_if_grown", failing)
    batch = synthetic_trajectories(60, 25, (3, 8), seed=5, key_prefix="refresh")
    result = ingest_parsed(
        sessions, ParsedFile("refresh", "records", "", "test", trajectories=batch)
    )
    assert (result.status, result.frames) == ("ingested", 1500)
    with sessions.begin() as session:
        stored = session.execute(
            text(
                "SELECT count(*) FROM frames f JOIN relaxations r ON r.id = f.relaxation_id"
                " JOIN materials m ON m.id = r.material_id WHERE m.key LIKE 'refresh-%'"
            )
        ).scalar_one()
    assert stored == 1500
