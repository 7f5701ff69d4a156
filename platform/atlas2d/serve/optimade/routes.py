"""The OPTIMADE v1.2 API: ``/versions`` and, under ``/v1``, ``info``, ``info/structures``,
``structures``, ``structures/{id}`` and ``links``. Every answer under ``/v1`` is JSON:API,
errors included (OPTIMADE error documents with their HTTP status)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from atlas2d.serve.database import read_session
from atlas2d.serve.optimade import entries
from atlas2d.serve.optimade.errors import (
    MEDIA_TYPE,
    BadRequest,
    NotFoundError,
    OptimadeError,
    QueryTimedOut,
    VersionNotSupported,
    error_response,
)
from atlas2d.serve.optimade.filters import NO_FILTER, compile_filter
from atlas2d.serve.optimade.meta import API_VERSION, response_meta
from atlas2d.serve.optimade.properties import BY_NAME, PROPERTIES
from atlas2d.serve.optimade.query import EntryQuery, parse_entry_query

log = logging.getLogger(__name__)

router = APIRouter()

_QUERY_CANCELED = "57014"


def _answer(request: Request, work: Callable[[], dict[str, Any]]) -> Response:
    """``work()``'s document as JSON:API, or the error document of what it raised."""
    try:
        return JSONResponse(work(), media_type=MEDIA_TYPE)
    except OptimadeError as error:
        return error_response(request, error)
    except DBAPIError as err:
        if getattr(err.orig, "sqlstate", None) == _QUERY_CANCELED:
            seconds = request.app.state.database.statement_timeout_ms / 1000
            return error_response(
                request,
                QueryTimedOut(
                    f"the query ran past this server's statement timeout ({seconds:g} s) and "
                    "was stopped; narrow the filter or ask for fewer entries"
                ),
            )
        log.error("database error on %s", request.url.path, exc_info=err)
        return error_response(
            request, OptimadeError("the database failed to answer; the server's log has why")
        )


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/versions")
def versions() -> Response:
    """The major API versions served, as CSV with a header line."""
    return PlainTextResponse("version\n1\n", media_type="text/csv; header=present")


@router.get("/v1/info")
def info(request: Request) -> Response:
    def document() -> dict[str, Any]:
        return {
            "data": {
                "id": "/",
                "type": "info",
                "attributes": {
                    "api_version": API_VERSION,
                    "available_api_versions": [
                        {"url": f"{_base_url(request)}/v1", "version": API_VERSION}
                    ],
                    "formats": ["json"],
                    "available_endpoints": ["info", "links", "structures"],
                    "entry_types_by_format": {"json": ["structures"]},
                    "is_index": False,
                },
            },
            "meta": response_meta(request, more_data_available=False),
        }

    return _answer(request, document)


def _property_info(name: str) -> dict[str, Any]:
    prop = BY_NAME[name]
    described: dict[str, Any] = {
        "description": prop.description,
        "type": prop.kind,
        "sortable": prop.sortable,
    }
    if prop.unit is not None:
        described["unit"] = prop.unit
    return described


@router.get("/v1/info/structures")
def info_structures(request: Request) -> Response:
    def document() -> dict[str, Any]:
        return {
            "data": {
                "id": "structures",
                "type": "info",
                "description": "One 2D material (or bulk reference) per entry: the final frame "
                "of its last DFT relaxation, else its convex-hull entry.",
                "properties": {p.name: _property_info(p.name) for p in PROPERTIES},
                "formats": ["json"],
                "output_fields_by_format": {"json": [p.name for p in PROPERTIES]},
            },
            "meta": response_meta(request, more_data_available=False),
        }

    return _answer(request, document)


def _resource(row: dict[str, Any], query: EntryQuery) -> dict[str, Any]:
    attributes = entries.entry_attributes(row)
    if query.response_fields is not None:
        attributes = {name: attributes.get(name) for name in query.response_fields}
    return {"id": row["key"], "type": "structures", "attributes": attributes}


@router.get("/v1/structures")
def structures(request: Request, session: Session = Depends(read_session)) -> Response:
    def document() -> dict[str, Any]:
        query = parse_entry_query(request.query_params)
        where = compile_filter(query.filter)
        returned = entries.count_entries(session, where)
        # data_available only where it is free (no filter: it is data_returned); a
        # second count over every material would cost each filtered request more than
        # the filter itself on 100,000 materials.
        counts = {"data_returned": returned}
        if where is NO_FILTER:
            counts["data_available"] = returned
        rows = entries.page_entries(session, where, query.sort, query.page_limit, query.page_offset)
        more = query.page_offset + len(rows) < returned
        next_url = (
            str(
                request.url.include_query_params(
                    page_offset=query.page_offset + query.page_limit,
                    page_limit=query.page_limit,
                )
            )
            if more
            else None
        )
        meta = response_meta(
            request,
            more_data_available=more,
            **counts,
        )
        if query.warnings:
            meta["warnings"] = [{"type": "warning", "detail": w} for w in query.warnings]
        return {
            "data": [_resource(row, query) for row in rows],
            "meta": meta,
            "links": {"next": next_url},
        }

    return _answer(request, document)


@router.get("/v1/structures/{entry_id}")
def structure(
    entry_id: str, request: Request, session: Session = Depends(read_session)
) -> Response:
    def document() -> dict[str, Any]:
        query = parse_entry_query(request.query_params)
        if "\x00" in entry_id:
            # PostgreSQL text cannot hold NUL: the driver would refuse the parameter.
            raise BadRequest("an id holds no NUL character; /v1/structures lists the ids")
        row = entries.one_entry(session, entry_id)
        if row is None:
            raise NotFoundError(f"no structure has id '{entry_id}'; /v1/structures lists them")
        return {
            "data": _resource(row, query),
            "meta": response_meta(request, more_data_available=False, data_returned=1),
        }

    return _answer(request, document)


@router.get("/v1/links")
def links(request: Request) -> Response:
    """No links: this database belongs to no index database and names no other."""

    def document() -> dict[str, Any]:
        return {
            "data": [],
            "meta": response_meta(
                request, more_data_available=False, data_returned=0, data_available=0
            ),
        }

    return _answer(request, document)


@router.get("/v1/{rest:path}")
def unknown_endpoint(rest: str, request: Request) -> Response:
    def document() -> dict[str, Any]:
        raise NotFoundError(f"/v1/{rest} is no endpoint of this API; /v1/info lists them")

    return _answer(request, document)


@router.get("/v{major:int}/{rest:path}")
def other_version(major: int, rest: str, request: Request) -> Response:
    def document() -> dict[str, Any]:
        raise VersionNotSupported(
            f"API version {major} is not served; /versions lists the versions (1)"
        )

    return _answer(request, document)
