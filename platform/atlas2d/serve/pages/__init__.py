"""The web pages of ``atlas2d serve``: server-rendered HTML (Jinja2) with plots drawn on
the server (matplotlib, SVG); every asset ships in the package."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"


def add_pages(app: FastAPI) -> None:
    """Route the pages (``/``, ``/materials/…``, ``/models…``, ``/campaigns…``) and serve
    their static files under ``/static``."""
    from atlas2d.serve.pages.routes import router

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
