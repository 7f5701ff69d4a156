"""The web app: GET-only routes over a read-only database, no tracebacks in responses."""

from __future__ import annotations

import logging
from importlib.metadata import version

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from atlas2d.serve.database import ReadOnlyDatabase
from atlas2d.serve.optimade.routes import router as optimade_router
from atlas2d.serve.pages import add_pages

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD"})


class _ReadMethodsOnly(BaseHTTPMiddleware):
    """Answer anything but GET and HEAD with 405: the app never writes."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.method not in READ_METHODS:
            return PlainTextResponse(
                "405 method not allowed: this server only reads (GET)",
                status_code=405,
                headers={"Allow": "GET, HEAD"},
            )
        return await call_next(request)


async def _unexpected_error(request: Request, error: Exception) -> Response:
    """A 500 with one line and no traceback; the traceback goes to the server's log."""
    log.error("unexpected error on %s", request.url.path, exc_info=error)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def create_app(database: ReadOnlyDatabase) -> FastAPI:
    """The app over ``database``: the OPTIMADE API under ``/v1`` and ``/versions``, and
    the HTML pages."""
    app = FastAPI(
        title="atlas2d",
        version=version("atlas2d"),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.database = database
    app.add_middleware(_ReadMethodsOnly)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(optimade_router)
    add_pages(app)
    return app
