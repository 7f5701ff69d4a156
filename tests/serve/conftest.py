"""The web pages' database, filled once per test run (tests/support/pages.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.conftest import _drop_database, _migrated_database
from tests.support.pages import PagesDatabase, make_pages_database


@pytest.fixture(scope="session")
def pages_database(
    database_server: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PagesDatabase]:
    url = _migrated_database(database_server, "atlas2d_pages")
    made = make_pages_database(database_server, url, tmp_path_factory.mktemp("pages"))
    yield made
    made.engine.dispose()
    _drop_database(database_server, url)
