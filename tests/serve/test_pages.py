"""The web pages over HTTP (FastAPI's TestClient) on a demo-like database, read through
the reader login: status codes, content, downloads equal to the table, and bad or
hostile search values answered with a one-line 400 page that changes nothing."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from atlas2d.db.session import make_engine, make_sessions
from atlas2d.serve.app import create_app
from atlas2d.serve.database import ReadOnlyDatabase
from atlas2d.serve.pages.labels import spacegroup_label
from tests.support.pages import CAMPAIGN, MODEL, PagesDatabase

KEY_LINK = re.compile(r'<td><a href="/materials/([^"]+)">')
SVG_IMAGE = 'src="data:image/svg+xml;base64,'
PNG_IMAGE = 'src="data:image/png;base64,'
COUNTED = ("materials", "relaxations", "stability", "model_versions", "al_campaigns")


@pytest.fixture(scope="module")
def client(pages_database: PagesDatabase) -> Iterator[TestClient]:
    engine = make_engine(pages_database.reader_url)
    app = create_app(ReadOnlyDatabase(make_sessions(engine), 10_000, "reader"))
    with TestClient(app) as test_client:
        yield test_client
    engine.dispose()


def _scalar(db: PagesDatabase, sql: str) -> object:
    with db.engine.connect() as connection:
        return connection.execute(text(sql)).scalar_one()


def _counts(db: PagesDatabase) -> dict[str, int]:
    return {table: int(_scalar(db, f"SELECT count(*) FROM {table}")) for table in COUNTED}  # type: ignore[call-overload]


def _keys(html: str) -> list[str]:
    return KEY_LINK.findall(html)


def _json_rows(client: TestClient, query: str) -> list[dict[str, object]]:
    response = client.get(f"/search.json?{query}")
    assert response.status_code == 200, response.text
    return response.json()["rows"]  # type: ignore[no-any-return]


def test_front_page_lists_materials_with_units_and_links(
    client: TestClient, pages_database: PagesDatabase
) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.text
    assert "<h1>Search 2D materials</h1>" in html
    total = int(_scalar(pages_database, "SELECT count(*) FROM materials"))  # type: ignore[call-overload]
    assert f"{total} materials" in html
    assert len(_keys(html)) == 25  # the first page
    for header in ("e_above_hull (meV/atom)", "formation energy (eV/atom)", "energy (eV/atom)"):
        assert header in html
    assert 'href="/static/atlas2d.css"' in html
    assert client.get("/static/atlas2d.css").status_code == 200


def test_filters_select_what_they_name(client: TestClient) -> None:
    mos2 = _json_rows(client, "formula=S2Mo")  # normalised to MoS2
    assert mos2 and {row["formula"] for row in mos2} == {"MoS2"}
    chemsys = _json_rows(client, "chemsys=S-Mo")
    assert {row["chemsys"] for row in chemsys} == {"Mo-S"}
    assert {row["material_key"] for row in mos2} <= {row["material_key"] for row in chemsys}
    with_both = _json_rows(client, "elements=Mo,S")
    assert all(set(row["chemsys"].split("-")) >= {"Mo", "S"} for row in with_both)  # type: ignore[union-attr]
    assert len(with_both) > len(chemsys)  # ternaries too
    bulk = _json_rows(client, "dimensionality=3")
    assert bulk and {row["dimensionality"] for row in bulk} == {3}
    stable = _json_rows(client, "max_ehull=50")
    assert stable and all(row["e_above_hull_mev_per_atom"] <= 50 for row in stable)  # type: ignore[operator]
    assert _json_rows(client, "max_ehull=0.05&ehull_unit=ev") == stable
    model = _json_rows(client, f"energy_source={MODEL}&max_ehull=1e6")
    assert model and len(model) < len(stable) + len(bulk) + 1000


def test_sorting_and_paging(client: TestClient) -> None:
    rows = _json_rows(client, "sort=e_above_hull_mev_per_atom&order=desc")
    values = [row["e_above_hull_mev_per_atom"] for row in rows]
    known = [v for v in values if v is not None]
    assert known == sorted(known, reverse=True)  # type: ignore[type-var]
    assert values[: len(known)] == known  # unknown ones last
    first = _keys(client.get("/?sort=formula&per_page=5").text)
    second = _keys(client.get("/?sort=formula&per_page=5&page=2").text)
    every = [row["material_key"] for row in _json_rows(client, "sort=formula")]
    assert first + second == every[:10]
    page = client.get("/?sort=formula&per_page=5&page=2").text
    assert (
        "page 2 of" in page and "page=3" in page and "page=1" not in page.split("page 2")[0][-200:]
    )


def test_downloads_equal_the_table(client: TestClient) -> None:
    query = "elements=S&sort=formation_energy_ev_per_atom&per_page=200"
    table = _keys(client.get(f"/?{query}").text)
    as_json = _json_rows(client, query)
    response = client.get(f"/search.csv?{query}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    as_csv = list(csv.DictReader(io.StringIO(response.text)))
    assert table == [r["material_key"] for r in as_json] == [r["material_key"] for r in as_csv]
    for from_json, from_csv in zip(as_json, as_csv, strict=True):
        value = from_json["formation_energy_ev_per_atom"]
        if value is None:
            assert from_csv["formation_energy_ev_per_atom"] == ""
        else:
            assert float(from_csv["formation_energy_ev_per_atom"]) == value  # full precision
    energies = [r["formation_energy_ev_per_atom"] for r in as_json]
    assert any(isinstance(v, float) and len(repr(v)) > 8 for v in energies)  # not rounded


def test_material_page(client: TestClient, pages_database: PagesDatabase) -> None:
    key = _scalar(
        pages_database,
        f"SELECT material_key FROM relaxation_errors e JOIN materials m ON m.key = e.material_key"
        f" WHERE m.chemsys = 'Mo-S' AND m.key LIKE 'demo-%' AND e.model_name || ':' || e.model_version = '{MODEL}'"
        " ORDER BY 1 LIMIT 1",
    )
    response = client.get(f"/materials/{key}")
    assert response.status_code == 200
    html = response.text
    assert f'<span class="key">{key}</span>' in html
    assert html.count(PNG_IMAGE) == 1  # structure
    assert html.count(SVG_IMAGE) == 2  # hull, trajectory
    assert "Convex hull of Mo-S" in html and "DFT trajectory" in html
    assert (
        "energy error (meV/atom)" in html and f'href="/models/{MODEL.replace(":", "%3A")}"' in html
    )
    number = _scalar(pages_database, f"SELECT spacegroup_number FROM materials WHERE key = '{key}'")
    assert f"<dd>{spacegroup_label(number)}</dd>" in html  # type: ignore[arg-type]
    assert re.search(r"<dd>P[^<]* \(\d+\)</dd>", html)  # symbol and number
    # The demo's DFT trajectories do not say whether they converged.
    assert '<span class="empty">not recorded</span>' in html
    assert "_mev_per_atom" not in html and "<th>n_steps</th>" not in html  # headers, not names
    assert "al-base" in html and re.search(r"<td>(train|val|test)</td>", html)
    assert ">dft<" in html  # the stability table's DFT row


def test_model_and_campaign_pages(client: TestClient) -> None:
    registry = client.get("/models")
    assert registry.status_code == 200
    assert MODEL in registry.text and "<dt>E MAE (meV/atom)</dt>" in registry.text
    assert f"{CAMPAIGN}-iter1:1" in registry.text  # the campaign's retrained model, with lineage
    model = client.get(f"/models/{MODEL}")
    assert model.status_code == 200
    assert "<h2>Lineage</h2>" in model.text and ">relaxation<" in model.text
    assert model.text.count(SVG_IMAGE) == 3  # direct, relaxed, e_above_hull parity
    # The relaxation evaluation: counts, then converged as a share, then errors with units.
    evaluation = re.search(r"<td><dl class=\"metrics\">(.*?)</dl>", model.text, re.S)
    assert evaluation is not None
    labels = re.findall(r"<dt>(.*?)</dt>", evaluation.group(1))
    assert labels[:3] == ["materials", "converged", "E MAE (meV/atom)"]
    assert re.search(r"<dt>converged</dt><dd>\d+/\d+ \(\d+%\)</dd>", evaluation.group(1))
    assert "convergence_rate" not in model.text
    campaigns = client.get("/campaigns")
    assert campaigns.status_code == 200 and f'href="/campaigns/{CAMPAIGN}"' in campaigns.text
    page = client.get(f"/campaigns/{CAMPAIGN}")
    assert page.status_code == 200
    assert "hit rate (%)" in page.text and page.text.count(SVG_IMAGE) == 1


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/materials/no-such-key", 404, "No material has the key 'no-such-key'"),
        ("/models/nope:1", 404, "No model is named 'nope'"),
        ("/models/bad%20name", 400, "is not valid"),
        ("/campaigns/nope", 404, "No campaign is named 'nope'"),
        ("/materials/demo%00", 400, "A material key holds no NUL character"),
        ("/campaigns/x%00", 400, "A campaign name holds no NUL character"),
        ("/?dimensionality=7", 400, "'dimensionality' must be 2 (layers) or 3 (bulk)"),
        ("/?max_ehull=abc", 400, "'max_ehull': 'abc' is not a number (e_above_hull in meV/atom)"),
        ("/?max_ehull=nan", 400, "'max_ehull'"),
        ("/?sort=m.key;DROP%20TABLE%20materials", 400, "'sort' must be one of"),
        ("/?order=sideways", 400, "'order' must be asc or desc"),
        ("/?page=0", 400, "'page' must be a whole number"),
        ("/?per_page=100000", 400, "'per_page' must be a whole number from 1 to 200"),
        ("/?elements=Xx", 400, "'Xx' is not a chemical element"),
        ("/search.csv?ehull_unit=kcal", 400, "'ehull_unit' must be mev"),
        (
            "/search.json?energy_source=x%27%3B%20DELETE%20FROM%20stability",
            400,
            "has no convex hull",
        ),
        ("/?formula=%27%3B%20DROP%20TABLE%20materials%3B%20--", 400, "is not a chemical formula"),
        ("/?chemsys=Mo-S%27%29%20OR%201%3D1--", 400, "is not a chemical element"),
    ],
)
def test_bad_values_get_one_line(
    client: TestClient, pages_database: PagesDatabase, path: str, status: int, says: str
) -> None:
    before = _counts(pages_database)
    response = client.get(path)
    assert response.status_code == status, response.text
    errors = re.findall(r'<p class="error">(.*?)</p>', response.text.replace("&#39;", "'"))
    assert len(errors) == 1 and says in errors[0] and "Traceback" not in response.text
    assert _counts(pages_database) == before


@pytest.mark.parametrize(
    "query",
    ["elements=Mo%3BS", "elements=S%20Mo", "formula=MoS2%20", "chemsys=%20S-Mo%20"],
)
def test_odd_but_valid_values_are_data(client: TestClient, query: str) -> None:
    response = client.get(f"/?{query}")
    assert response.status_code == 200
    assert _keys(response.text)


def test_pages_only_read(client: TestClient) -> None:
    assert client.post("/").status_code == 405
    assert client.delete("/materials/x").status_code == 405


def test_a_query_past_the_statement_timeout_is_a_503_page_and_download(
    pages_database: PagesDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search (page or download) stopped by the server's statement timeout answers a
    one-line 503, not the generic 500."""
    from atlas2d.serve.pages import routes

    def sleeping(session, query, download=False):  # type: ignore[no-untyped-def]
        session.execute(text("SELECT pg_sleep(5)"))

    monkeypatch.setattr(routes, "search_rows", sleeping)
    engine = make_engine(pages_database.reader_url)
    app = create_app(ReadOnlyDatabase(make_sessions(engine), 200, "reader"))
    with TestClient(app) as impatient:
        for path in ("/", "/search.csv", "/search.json"):
            response = impatient.get(path)
            assert response.status_code == 503, (path, response.text)
            assert "statement timeout" in response.text
    engine.dispose()
