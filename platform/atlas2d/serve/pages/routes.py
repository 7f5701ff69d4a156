"""The pages' routes: each reads in the request's READ ONLY session, renders a Jinja2
template, and answers bad input with a 400 page, an unknown key with a 404 page and a
query past the statement timeout with a 503 page, each one line long."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from atlas2d.cli.output import readable_float
from atlas2d.errors import Atlas2dError, InvalidInput, MissingExtra, NotFound
from atlas2d.serve.database import read_session
from atlas2d.serve.pages import figures
from atlas2d.serve.pages.campaigns import campaign_page
from atlas2d.serve.pages.hull_data import hull_points
from atlas2d.serve.pages.labels import metric_rows, spacegroup_label
from atlas2d.serve.pages.material import material_page
from atlas2d.serve.pages.models import model_page, registry
from atlas2d.serve.pages.search import (
    COLUMN_LABELS,
    COLUMNS,
    DOWNLOAD_MAX_ROWS,
    EHULL_UNITS,
    SearchQuery,
    count_results,
    energy_sources,
    parse_search,
    search_rows,
)
from atlas2d.vocabulary import DFT

QUERY_CANCELED = "57014"
"""PostgreSQL's SQLSTATE for a statement stopped by ``statement_timeout``."""

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")


def _number(value: Any) -> str:
    """A number as the tables show it (``cli.output.readable_float``); missing → ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return readable_float(float(value))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


templates.env.filters["num"] = _number
templates.env.filters["spacegroup"] = spacegroup_label
templates.env.globals["metric_rows"] = lambda values: metric_rows(values, _number)


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict(orient="records")  # type: ignore[return-value]


def _page(request: Request, template: str, build: Callable[[], dict[str, Any]]) -> HTMLResponse:
    """Render ``template`` with what ``build`` returns, or the page of its error."""
    try:
        context = build()
    except Atlas2dError as err:
        return _error(request, err)
    except OperationalError as err:
        return _timed_out(request, err)
    return templates.TemplateResponse(request, template, context)


def _timed_out(request: Request, err: OperationalError) -> HTMLResponse:
    """The 503 page of a query stopped by the statement timeout; any other operational
    error goes on to the app's one-line 500."""
    if getattr(err.orig, "sqlstate", None) != QUERY_CANCELED:
        raise err
    return _error_page(
        request, 503, "The query ran past the server's statement timeout; narrow it."
    )


def _error(request: Request, err: Atlas2dError) -> HTMLResponse:
    status = 404 if isinstance(err, NotFound) else 400 if isinstance(err, InvalidInput) else 500
    return _error_page(request, status, str(err))


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def _figure(draw: Callable[..., str], *args: Any) -> str | None:
    """``draw(*args)``, a figure's data URI, or None without matplotlib (the page says so)."""
    try:
        return draw(*args)
    except MissingExtra:
        return None


@router.get("/", response_class=HTMLResponse)
def search_page(request: Request, session: Session = Depends(read_session)) -> HTMLResponse:
    """The front page: the search form and one page of results."""

    def build() -> dict[str, Any]:
        sources = energy_sources(session)
        query = parse_search(request.query_params, sources)
        total = count_results(session, query)
        pages = max(1, math.ceil(total / query.per_page))
        return {
            "query": query,
            "sources": sources or [DFT],
            "units": EHULL_UNITS,
            "columns": list(COLUMNS),
            "labels": COLUMN_LABELS,
            "rows": _rows(search_rows(session, query)),
            "total": total,
            "pages": pages,
            "download_max": DOWNLOAD_MAX_ROWS,
        }

    return _page(request, "search.html", build)


def _download(
    request: Request, session: Session, render: Callable[[SearchQuery, pd.DataFrame], Response]
) -> Response:
    try:
        query = parse_search(request.query_params, energy_sources(session))
        return render(query, search_rows(session, query, download=True))
    except InvalidInput as err:
        return _error(request, err)
    except OperationalError as err:
        return _timed_out(request, err)


@router.get("/search.csv")
def search_csv(request: Request, session: Session = Depends(read_session)) -> Response:
    """The search's matching rows (every page) as CSV, full precision."""
    return _download(
        request,
        session,
        lambda _, rows: Response(
            rows.to_csv(index=False),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="atlas2d-search.csv"'},
        ),
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


@router.get("/search.json")
def search_json(request: Request, session: Session = Depends(read_session)) -> Response:
    """The search's matching rows (every page) as JSON, full precision:
    ``{"query": {…}, "rows": [{column: value}]}``."""

    def render(query: SearchQuery, rows: pd.DataFrame) -> Response:
        records = [
            {k: _json_value(v) for k, v in record.items()}
            for record in rows.astype(object).to_dict(orient="records")
        ]
        body = {"query": query.parameters(page=1), "rows": records}
        return Response(
            json.dumps(body),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="atlas2d-search.json"'},
        )

    return _download(request, session, render)


@router.get("/materials/{key}", response_class=HTMLResponse)
def material(key: str, request: Request, session: Session = Depends(read_session)) -> HTMLResponse:
    """A material's page."""

    def build() -> dict[str, Any]:
        page = material_page(session, key)
        structure = page.structure
        points = hull_points(session, key, page.material.chemsys, DFT)
        return {
            "page": page,
            "m": page.material,
            "stability": _rows(page.stability),
            "dft": _rows(page.dft_relaxations),
            "ml": _rows(page.ml_relaxations),
            "training_sets": _rows(page.training_sets),
            "structure_png": None
            if structure is None
            else _figure(figures.structure_views, structure),
            "trajectory_svg": None
            if len(page.steps) == 0
            else _figure(figures.trajectory, page.steps, page.energies_ev_per_atom),
            "hull_svg": None if points is None else _figure(figures.convex_hull, points),
        }

    return _page(request, "material.html", build)


@router.get("/models", response_class=HTMLResponse)
def models(request: Request, session: Session = Depends(read_session)) -> HTMLResponse:
    """The model registry."""
    return _page(request, "models.html", lambda: {"rows": registry(session)})


@router.get("/models/{ref}", response_class=HTMLResponse)
def model(ref: str, request: Request, session: Session = Depends(read_session)) -> HTMLResponse:
    """A model version's page: lineage, metrics, evaluations, parity plots."""

    def build() -> dict[str, Any]:
        from atlas2d.services.models import resolve

        page = model_page(session, resolve(session, ref, require_ready=False))
        plots = []
        for frame, (x, y), title, unit in (
            (
                page.direct,
                ("dft_ev_per_atom", "predicted_ev_per_atom"),
                "energy (stored predictions)",
                "eV/atom",
            ),
            (
                page.relaxed,
                ("dft_ev_per_atom", "ml_ev_per_atom"),
                "final energy after relaxation",
                "eV/atom",
            ),
            (page.stability, ("dft_mev_per_atom", "ml_mev_per_atom"), "e_above_hull", "meV/atom"),
        ):
            if frame.empty:
                continue
            reference, predicted = frame[x].to_numpy(float), frame[y].to_numpy(float)
            plots.append(
                {
                    "title": title,
                    "n": len(frame),
                    "svg": _figure(figures.parity, reference, predicted, title, unit),
                }
            )
        return {
            "page": page,
            "m": page.model,
            "evaluations": _rows(page.evaluations),
            "plots": plots,
        }

    return _page(request, "model.html", build)


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns(request: Request, session: Session = Depends(read_session)) -> HTMLResponse:
    """The active-learning campaigns."""
    from atlas2d.queries.al_campaigns import list_campaigns

    return _page(request, "campaigns.html", lambda: {"rows": _rows(list_campaigns(session))})


@router.get("/campaigns/{name}", response_class=HTMLResponse)
def campaign(name: str, request: Request, session: Session = Depends(read_session)) -> HTMLResponse:
    """A campaign's per-iteration table and panels."""

    def build() -> dict[str, Any]:
        from atlas2d.analysis.campaign_plots import campaign_table

        page = campaign_page(session, name)
        table = campaign_table(page.summary) if not page.summary.empty else pd.DataFrame()
        return {
            "page": page,
            "c": page.campaign,
            "columns": [(c, c) for c in table.columns],  # the headers carry units
            "rows": _rows(table),
            "plot_svg": _figure(figures.campaign, page.summary),
        }

    return _page(request, "campaign.html", build)
