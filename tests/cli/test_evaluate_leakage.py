"""``atlas2d evaluate`` on leaked materials, through the installed console script: exit
code 1 and one line naming the count, nothing stored; ``--allow-leakage`` exits 0 and
stores the flag. On a database of its own (the subprocess sees committed rows only)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from atlas2d.db.session import make_engine, make_sessions
from tests.cli.test_exit_codes import one_error_line
from tests.support.entry_point import atlas2d_script, user_environment
from tests.support.leakage import (
    PARENT,
    PARENT_SET,
    add_ml_relaxations,
    default_parameters,
    make_lineage,
    splits_of,
)


@pytest.fixture(scope="module")
def leaky_database(
    database_server: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """The lineage of tests/support/leakage.py, committed, with the parent's relaxations
    of its own training set; yields the URL and the parent's train-split size."""
    from tests.conftest import _drop_database, _migrated_database

    url = _migrated_database(database_server, "atlas2d_leakage")
    engine = make_engine(url)
    sessions = make_sessions(engine)
    lineage = make_lineage(sessions, tmp_path_factory.mktemp("leakage"))
    with sessions.begin() as session:
        splits = splits_of(session, PARENT_SET)
        add_ml_relaxations(session, lineage.parent_id, list(splits), default_parameters(PARENT))
    engine.dispose()
    yield url, sum(1 for s in splits.values() if s == "train")
    _drop_database(database_server, url)


def _evaluate(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            atlas2d_script(),
            "evaluate",
            *("--model", PARENT, "--trainset", PARENT_SET, "--split", "train"),
            *extra,
        ],
        env=user_environment(ATLAS2D_DATABASE_URL=url, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_evaluating_on_the_train_split_exits_1_and_allow_leakage_stores_the_flag(
    leaky_database: tuple[str, int],
) -> None:
    url, n_train = leaky_database
    refused = _evaluate(url)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    line = one_error_line(refused)
    assert f"Model {PARENT} has seen {n_train} of the {n_train} materials" in line
    assert "--allow-leakage" in line

    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM evaluations")).scalar_one() == 0
    allowed = _evaluate(url, "--allow-leakage")
    assert allowed.returncode == 0, allowed.stderr
    assert f"leakage: {n_train} of {n_train} materials" in allowed.stdout
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT leakage, leaked_materials, ancestor_val_materials FROM evaluations")
        ).one()
    engine.dispose()
    assert tuple(stored) == (True, n_train, 0)
