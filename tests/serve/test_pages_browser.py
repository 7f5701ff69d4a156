"""The web pages in a real browser: Playwright drives Debian's chromium against a live
``atlas2d serve`` (the installed entry point, in a subprocess) on a demo-like database.
Each page is opened, a search is run and a result followed to its material page; the
content is checked, the browser console must stay free of errors, and every page is
saved as a screenshot under the test's temporary folder.

``ATLAS2D_SCREENSHOTS=DIR`` also writes small copies of the screenshots to DIR (the
README's come from ``ATLAS2D_SCREENSHOTS=docs/screenshots``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.entry_point import atlas2d_script, user_environment
from tests.support.pages import CAMPAIGN, MODEL, PagesDatabase

CHROMIUM = shutil.which("chromium")
SCREENSHOT_WIDTH_PX = 1000
"""Width of the README's copies (the originals are 1280 px)."""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(
    pages_database: PagesDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``atlas2d serve`` on a free port; its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    environment = user_environment(
        ATLAS2D_HOME=str(pages_database.home),
        ATLAS2D_DATABASE_URL=pages_database.url,
        ATLAS2D_READER_DATABASE_URL=pages_database.reader_url,
    )
    with log.open("w") as output:
        process = subprocess.Popen(
            [atlas2d_script(), "serve", "--port", str(port)],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/campaigns", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"atlas2d serve did not start: {log.read_text()}")
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that records console errors and uncaught exceptions."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.console_errors = []
    opened.on(
        "console",
        lambda message: (
            opened.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    opened.on("pageerror", lambda error: opened.console_errors.append(str(error)))
    yield opened
    context.close()


def _screenshot(page: Any, folder: Path, name: str) -> Path:
    """Save the whole page as ``name``.png; with ATLAS2D_SCREENSHOTS, a small copy too."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    copies = os.environ.get("ATLAS2D_SCREENSHOTS")
    if copies:
        from PIL import Image

        Path(copies).mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            height = round(image.height * SCREENSHOT_WIDTH_PX / image.width)
            small = image.convert("RGB").resize((SCREENSHOT_WIDTH_PX, height), Image.LANCZOS)
            small.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(
                Path(copies) / f"{name}.png", optimize=True
            )
    return path


def _images_loaded(page: Any) -> int:
    """How many of the page's images decoded (a broken SVG has natural width 0)."""
    broken = page.eval_on_selector_all("img", "els => els.filter(e => !e.naturalWidth).length")
    assert broken == 0
    return int(page.eval_on_selector_all("img", "els => els.length"))


def _relaxed_mos2(db: PagesDatabase) -> str:
    """A bundled MoS2 layer within 250 meV/atom of the DFT hull that the model relaxed."""
    with db.engine.connect() as connection:
        return str(
            connection.execute(
                text(
                    "SELECT e.material_key FROM relaxation_errors e"
                    " JOIN materials m ON m.key = e.material_key"
                    " JOIN stability s ON s.material_id = m.id AND s.energy_source = 'dft'"
                    " WHERE m.formula = 'MoS2' AND m.key LIKE 'demo-%' AND s.e_above_hull <= 0.25"
                    " ORDER BY m.key LIMIT 1"
                )
            ).scalar_one()
        )


def test_search_then_material(
    page: Any, server: str, pages_database: PagesDatabase, tmp_path: Path
) -> None:
    page.goto(f"{server}/")
    assert page.title() == "Search · atlas2d"
    assert page.locator("table.results tbody tr").count() == 25
    _screenshot(page, tmp_path, "search")

    page.fill("input[name=formula]", "MoS2")
    page.fill("input[name=max_ehull]", "250")
    page.select_option("select[name=ehull_unit]", "mev")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "formula=MoS2" in page.url and "max_ehull=250" in page.url
    formulas = page.locator("table.results tbody tr td:nth-child(2)").all_inner_texts()
    assert formulas and set(formulas) == {"MoS2"}
    # Sorting by e_above_hull, highest first, through the header link (twice: asc, desc).
    page.click("th >> text=e_above_hull (meV/atom)")
    page.click("th >> text=e_above_hull (meV/atom)")
    assert "order=desc" in page.url
    values = [
        float(v) for v in page.locator("table.results tbody tr td:nth-child(6)").all_inner_texts()
    ]
    assert values == sorted(values, reverse=True) and values[0] <= 250
    _screenshot(page, tmp_path, "search-results")

    key = _relaxed_mos2(pages_database)
    page.click(f"table.results a >> text={key}")
    page.wait_for_load_state()
    assert page.url.endswith(f"/materials/{key}")
    assert page.locator("h1").inner_text() == f"MoS2 {key}"
    assert _images_loaded(page) == 3
    body = page.locator("main").inner_text()
    for expected in (
        "Convex hull of Mo-S",
        "DFT trajectory",
        "Training sets holding it",
        "al-base",
    ):
        assert expected in body
    assert MODEL in body.split("Machine-learned")[1].split("Training sets")[0]
    _screenshot(page, tmp_path, "material")
    assert page.console_errors == []


def test_models_and_campaigns(page: Any, server: str, tmp_path: Path) -> None:
    page.goto(f"{server}/models")
    assert page.locator("h1").inner_text() == "Model registry"
    assert page.locator("tbody tr").count() >= 2
    _screenshot(page, tmp_path, "models")
    page.click(f"td >> text={MODEL}")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text().startswith(MODEL)
    assert _images_loaded(page) == 3
    assert "relaxation" in page.locator("main").inner_text()
    _screenshot(page, tmp_path, "model")

    page.click("nav >> text=Campaigns")
    page.wait_for_load_state()
    page.click(f"td >> text={CAMPAIGN}")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text().startswith(f"Campaign {CAMPAIGN}")
    assert page.locator("table tbody tr").count() == 1  # one iteration
    assert _images_loaded(page) == 1
    _screenshot(page, tmp_path, "campaign")
    assert page.console_errors == []
