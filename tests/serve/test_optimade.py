"""The OPTIMADE API of a live ``atlas2d serve`` (the installed command, over the demo
dataset read through the reader login): the official validator, the filters against
the database's own answers, paging, errors, and what hostile requests cannot do."""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.support.entry_point import atlas2d_script, user_environment
from tests.support.served import ServedDatabase, demo_database, free_port, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(
    database_server: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedDatabase]:
    from tests.conftest import _drop_database, _migrated_database

    url = _migrated_database(database_server, "atlas2d_optimade")
    database = demo_database(database_server, url, tmp_path_factory.mktemp("optimade_home"))
    yield database
    database.engine.dispose()
    _drop_database(database_server, url)


@pytest.fixture(scope="module")
def api(served: ServedDatabase) -> Iterator[httpx.Client]:
    with running_server(served) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def _keys(served: ServedDatabase, where: str, **params: object) -> set[str]:
    with served.engine.connect() as connection:
        return set(
            connection.execute(text(f"SELECT key FROM materials WHERE {where}"), params).scalars()
        )


def _all_ids(api: httpx.Client, filter_: str) -> set[str]:
    """Every id the filter returns, following the pages."""
    ids: set[str] = set()
    url: str | None = f"/v1/structures?page_limit=500&response_fields=nsites&filter={filter_}"
    while url:
        body = api.get(url).json()
        ids |= {entry["id"] for entry in body["data"]}
        url = body["links"]["next"]
    return ids


def test_the_official_validator_finds_no_failure(served: ServedDatabase, api: httpx.Client) -> None:
    from optimade.validator import ImplementationValidator

    n_materials = served.counts()["materials"]
    assert n_materials >= 50
    validator = ImplementationValidator(base_url=f"{api.base_url}/v1", verbosity=-1)
    with contextlib.redirect_stdout(io.StringIO()):
        validator.validate_implementation()
    results = validator.results
    print(
        f"\noptimade-validator on {n_materials} materials: "
        f"{results.success_count} passed, {results.failure_count} failed, "
        f"{results.internal_failure_count} internal failures; optional: "
        f"{results.optional_success_count} passed, {results.optional_failure_count} failed"
    )
    for summary, message in (
        results.failure_messages
        + results.internal_failure_messages
        + results.optional_failure_messages
    ):
        print(f"{summary}\n{message}")
    assert results.failure_messages == []
    assert results.internal_failure_messages == []
    assert results.optional_failure_messages == []
    assert validator.valid
    assert results.success_count > 30 and results.optional_success_count > 5


@pytest.mark.parametrize(
    ("filter_", "where"),
    [
        (
            'elements HAS ALL "Mo","S" AND nelements=2',
            "elements @> ARRAY['Mo','S'] AND n_elements = 2",
        ),
        ('chemical_formula_reduced="MoS2"', "formula_alphabetical = 'MoS2'"),
        ('chemical_formula_reduced="Se2W"', "formula = 'WSe2'"),
        ('elements HAS ANY "Te","Se"', "elements && ARRAY['Te','Se']"),
        ('elements HAS ONLY "Mo","S","Se"', "elements <@ ARRAY['Mo','S','Se']"),
        ("elements LENGTH 3", "n_elements = 3"),
        ('chemical_formula_anonymous="ABC"', "formula_anonymous = 'ABC'"),
        ('chemical_formula_descriptive STARTS WITH "Mo"', "formula LIKE 'Mo%'"),
        ('chemical_formula_descriptive ENDS "Se2"', "formula LIKE '%Se2'"),
        ('id CONTAINS "1"', "key LIKE '%1%'"),
        ("nperiodic_dimensions=3", "dimensionality = 3"),
        ('NOT elements HAS "S" AND nelements<=2', "NOT 'S' = ANY(elements) AND n_elements <= 2"),
        (
            "_atlas2d_e_above_hull <= 0 OR _atlas2d_spacegroup IS UNKNOWN",
            "id IN (SELECT material_id FROM stability WHERE energy_source = 'dft' AND e_above_hull <= 0)"
            " OR spacegroup_number IS NULL",
        ),
        # Two-valued logic: a comparison on an unknown value is false, so NOT keeps all.
        ("NOT _crazyprovider_field = 2", "true"),
        ("_crazyprovider_field = 2", "false"),
        ("_crazyprovider_field IS UNKNOWN", "true"),
    ],
)
def test_filters_return_what_sql_on_the_tables_returns(
    served: ServedDatabase, api: httpx.Client, filter_: str, where: str
) -> None:
    expected = _keys(served, where)
    assert _all_ids(api, filter_) == expected
    if "_crazy" not in filter_ and "UNKNOWN" not in filter_:
        assert expected  # the filter is tested on entries it matches


def test_site_filters_read_the_served_structure(api: httpx.Client) -> None:
    body = api.get('/v1/structures?filter=species_at_sites HAS ALL "Mo","S" AND nsites=3').json()
    assert body["data"]
    for entry in body["data"]:
        attributes = entry["attributes"]
        assert attributes["nsites"] == 3 == len(attributes["cartesian_site_positions"])
        assert {"Mo", "S"} <= set(attributes["species_at_sites"])
    assert api.get("/v1/structures?filter=nsites>3 AND nsites<3").json()["data"] == []


def test_an_entry_carries_its_structure_and_provider_fields(api: httpx.Client) -> None:
    entry = api.get('/v1/structures?filter=chemical_formula_reduced="MoS2"&page_limit=1').json()
    key = entry["data"][0]["id"]
    one = api.get(f"/v1/structures/{key}").json()["data"]
    attributes = one["attributes"]
    assert one["id"] == key and one["type"] == "structures"
    assert attributes["elements"] == ["Mo", "S"] and attributes["elements_ratios"] == [1 / 3, 2 / 3]
    assert attributes["chemical_formula_anonymous"] == "A2B"
    assert attributes["dimension_types"] == [1, 1, 0] and attributes["nperiodic_dimensions"] == 2
    assert len(attributes["lattice_vectors"]) == 3
    assert len(attributes["species_at_sites"]) == attributes["nsites"]
    assert attributes["_atlas2d_energy_sources"] == ["dft"]
    assert attributes["_atlas2d_e_above_hull"] >= 0
    assert isinstance(attributes["_atlas2d_formation_energy"], float)
    missing = api.get("/v1/structures/no-such-material")
    assert (
        missing.status_code == 404 and "no-such-material" in missing.json()["errors"][0]["detail"]
    )


def test_sort_page_offset_and_response_fields(served: ServedDatabase, api: httpx.Client) -> None:
    first = api.get("/v1/structures?sort=-nsites,id&page_limit=5&response_fields=nsites").json()
    sizes = [e["attributes"]["nsites"] for e in first["data"]]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == 5
    assert set(first["data"][0]["attributes"]) == {"nsites"}
    assert first["meta"]["data_returned"] == served.counts()["materials"]
    second = api.get(first["links"]["next"]).json()
    assert second["meta"]["query"]["representation"].startswith("/structures?")
    assert not {e["id"] for e in first["data"]} & {e["id"] for e in second["data"]}
    by_key = api.get("/v1/structures?sort=id&page_offset=2&page_limit=3").json()["data"]
    assert [e["id"] for e in by_key] == sorted(_keys(served, "true"))[2:5]


def test_an_over_large_page_limit_is_capped_with_a_warning(api: httpx.Client) -> None:
    body = api.get("/v1/structures?page_limit=100000000000000000000&response_fields=nsites").json()
    assert len(body["data"]) == body["meta"]["data_returned"] <= 500  # the demo has fewer
    assert "maximum; pages hold 500 entries" in body["meta"]["warnings"][0]["detail"]
    capped = api.get("/v1/structures?page_limit=100000&response_fields=nsites&page_offset=1")
    assert capped.json()["links"]["next"] is None


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("filter=nsites<", 400),
        ("filter=crazyfield=2", 400),
        ('filter=nsites="3"', 400),
        ("filter=elements=3", 400),
        ('filter=elements:nsites HAS "Mo":3', 501),
        ('filter=species_at_sites:species_at_sites HAS "Mo":"S"', 501),
        ("filter=nsites=TRUE", 501),
        ("page_limit=-1", 400),
        ("page_limit=ten", 400),
        ("page_offset=99999999999999999999", 400),
        ("sort=elements", 400),
        ("response_fields=password", 400),
        ("response_format=xml", 400),
    ],
)
def test_bad_requests_get_an_optimade_error_document(
    api: httpx.Client, query: str, status: int
) -> None:
    response = api.get(f"/v1/structures?{query}")
    assert response.status_code == status
    body = response.json()
    assert body["errors"][0]["status"] == str(status) and body["errors"][0]["detail"]
    assert body["meta"]["api_version"] == "1.2.0"
    assert "Traceback" not in response.text


def test_an_id_with_a_nul_character_is_a_bad_request(api: httpx.Client) -> None:
    response = api.get("/v1/structures/demo%00")
    assert response.status_code == 400
    assert "holds no NUL character" in response.json()["errors"][0]["detail"]


def test_unknown_paths_and_versions(api: httpx.Client) -> None:
    assert api.get("/versions").text == "version\n1\n"
    assert api.get("/v1/nothing").json()["errors"][0]["status"] == "404"
    assert api.get("/v2/info").status_code == 553
    assert api.post("/v1/structures").status_code == 405


HOSTILE_FILTERS = [
    # (filter, status, whether every entry comes back): values stay values.
    ('id = "\'; DROP TABLE materials; --"', 200, False),
    ('id = "x\\"; DELETE FROM frames; --"', 200, False),
    ('chemical_formula_reduced CONTAINS "%\' OR 1=1 --"', 200, False),
    ('id STARTS WITH "_%"', 200, False),
    ('elements HAS ALL "Mo\'); TRUNCATE relaxations; --", "S"', 200, False),
    ('id = "$$; DROP TABLE stability; $$"', 200, False),
    ('species_at_sites HAS "Mo\\u0000"', 200, False),
    # Symbols that are no element (ASE's placeholder "X" is 0): in no list, not a 500.
    ('species_at_sites HAS "X"', 200, False),
    ('elements HAS ONLY "X"', 200, False),
    ('_atlas2d_energy_sources HAS "dft\' UNION SELECT rolpassword FROM pg_authid --"', 200, False),
    ("nsites = 99999999999999999999999999", 200, False),
    ("nsites = 1 OR 1=1", 200, True),
    # Past integer[]'s range: in no list, rather than a cast PostgreSQL refuses (500).
    ("dimension_types HAS 3000000000", 200, False),
    ("dimension_types HAS ANY 1, -3000000000", 200, True),
    # More digits than Python reads.
    pytest.param("nsites = " + "9" * 5000, 400, False, id="nsites = 5000 digits"),
    ("nsites = 1; DELETE FROM materials", 400, False),
    ("id = 'x' OR '1'='1'", 400, False),
    ('id = "a\x00b"', 400, False),
    ('last_modified > "2026\'; DROP TABLE materials; --"', 400, False),
]


@pytest.mark.parametrize(("filter_", "status", "everything"), HOSTILE_FILTERS)
def test_hostile_filters_return_data_or_a_400_and_change_nothing(
    served: ServedDatabase, api: httpx.Client, filter_: str, status: int, everything: bool
) -> None:
    before = served.counts()
    response = api.get("/v1/structures", params={"filter": filter_})
    assert response.status_code == status, response.text
    body = response.json()
    if status == 200:
        expected = before["materials"] if everything else 0
        assert body["meta"]["data_returned"] == expected
    else:
        assert body["errors"][0]["status"] == "400"
    assert served.counts() == before


def test_a_pathological_filter_hits_the_statement_timeout(served: ServedDatabase) -> None:
    slow = " OR ".join(f'_atlas2d_energy_sources HAS "m{i}:1"' for i in range(150))
    before = served.counts()
    with running_server(served, "--timeout", "0.001") as base:
        response = httpx.get(f"{base}/v1/structures", params={"filter": slow}, timeout=60)
    assert response.status_code == 503, response.text
    detail = response.json()["errors"][0]["detail"]
    assert "statement timeout (0.001 s)" in detail and "Traceback" not in response.text
    assert served.counts() == before


def test_ctrl_c_stops_the_server_quietly(served: ServedDatabase) -> None:
    port = free_port()
    env = user_environment(
        ATLAS2D_HOME=str(served.home),
        ATLAS2D_DATABASE_URL=served.owner_url,
        ATLAS2D_READER_DATABASE_URL=served.reader_url,
    )
    process = subprocess.Popen(
        [atlas2d_script(), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/versions", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode in (0, 130), err
    assert out.startswith(f"serving http://127.0.0.1:{port}/") and err == ""


def test_the_formula_functions_reduce_and_sort(served: ServedDatabase) -> None:
    with served.engine.connect() as connection:
        values = connection.execute(
            text(
                "SELECT formula_alphabetical(f), formula_anonymous(f)"
                " FROM unnest(ARRAY['WSe2', 'Li2O2', 'MoSSe', 'H2O', 'Mo']) AS f"
            )
        ).all()
    assert [tuple(v) for v in values] == [
        ("Se2W", "A2B"),
        ("LiO", "AB"),
        ("MoSSe", "ABC"),
        ("H2O", "A2B"),
        ("Mo", "A"),
    ]
