"""The ``meta`` object every OPTIMADE response carries: the query, the API version, the
provider and the implementation."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from fastapi import Request

from atlas2d.serve.optimade.properties import PROVIDER_PREFIX

API_VERSION = "1.2.0"
"""The OPTIMADE specification version served, under ``/v1``."""

SCHEMA_URL = "https://schemas.optimade.org/openapi/v1.2/optimade.json"

PROVIDER = {
    "name": "atlas2d",
    "description": "2D materials relaxed by DFT and machine-learned force fields",
    "prefix": PROVIDER_PREFIX,
    "homepage": None,
}

IMPLEMENTATION = {"name": "atlas2d", "version": version("atlas2d")}


def utc_timestamp(moment: datetime) -> str:
    """``moment`` as RFC 3339 in UTC with microseconds (``2026-12-01T12:00:00.123456Z``)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def response_meta(request: Request, more_data_available: bool, **extra: Any) -> dict[str, Any]:
    """The ``meta`` object of a response to ``request``; ``extra`` adds members
    (``data_returned``, ``data_available``, ``warnings``)."""
    path = request.url.path.removeprefix("/v1")
    query = f"?{request.url.query}" if request.url.query else ""
    return {
        "query": {"representation": f"{path}{query}"},
        "api_version": API_VERSION,
        "more_data_available": more_data_available,
        "time_stamp": utc_timestamp(datetime.now(UTC)),
        "schema": SCHEMA_URL,
        "provider": PROVIDER,
        "implementation": IMPLEMENTATION,
        **extra,
    }
