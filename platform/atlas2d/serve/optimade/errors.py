"""OPTIMADE errors: the exceptions the API raises on purpose, and the JSON:API error
documents (``{"errors": [...], "meta": {...}}``) they become."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from atlas2d.serve.optimade.meta import response_meta

MEDIA_TYPE = "application/vnd.api+json"
"""The JSON:API media type OPTIMADE responses carry."""


class OptimadeError(Exception):
    """An error the API answers with an OPTIMADE error document.

    Attributes:
        status: the HTTP status.
        title: the status in words.
        detail: one sentence saying what was wrong and what to do.
    """

    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(OptimadeError):
    """The request is malformed: a filter that does not parse, a bad page_limit."""

    status = 400
    title = "Bad Request"


class NotFoundError(OptimadeError):
    status = 404
    title = "Not Found"


class NotImplementedFilter(OptimadeError):
    """Valid OPTIMADE this server does not support (zipped HAS, booleans)."""

    status = 501
    title = "Not Implemented"


class VersionNotSupported(OptimadeError):
    """A request for an API version other than v1 (OPTIMADE's 553)."""

    status = 553
    title = "Version Not Supported"


class QueryTimedOut(OptimadeError):
    """The query ran past the server's statement timeout."""

    status = 503
    title = "Service Unavailable"


def error_response(request: Request, error: OptimadeError) -> JSONResponse:
    """``error`` as an OPTIMADE error document with its HTTP status."""
    document: dict[str, Any] = {
        "errors": [{"status": str(error.status), "title": error.title, "detail": error.detail}],
        "meta": response_meta(request, more_data_available=False),
    }
    return JSONResponse(document, status_code=error.status, media_type=MEDIA_TYPE)
