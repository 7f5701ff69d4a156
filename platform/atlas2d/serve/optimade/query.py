"""The query parameters of an entry request: ``filter``, ``page_limit``, ``page_offset``,
``response_fields``, ``sort``, ``response_format``, checked into one value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from atlas2d.serve.optimade.entries import SortKey
from atlas2d.serve.optimade.errors import BadRequest
from atlas2d.serve.optimade.properties import BY_NAME, PROVIDER_PREFIX

DEFAULT_PAGE_LIMIT = 20
MAX_PAGE_LIMIT = 500
"""The most entries one page holds; a larger page_limit is cut to this, with a warning."""
MAX_PAGE_OFFSET = 1_000_000_000


@dataclass(frozen=True)
class EntryQuery:
    """What an entry request asks for.

    Attributes:
        filter: the OPTIMADE filter ("" for none).
        page_limit: entries per page, 1 … ``MAX_PAGE_LIMIT``.
        page_offset: entries to skip.
        response_fields: the attributes to return (None: all).
        sort: the sort keys, then the id.
        warnings: what was changed about the request (a cut page_limit).
    """

    filter: str = ""
    page_limit: int = DEFAULT_PAGE_LIMIT
    page_offset: int = 0
    response_fields: tuple[str, ...] | None = None
    sort: tuple[SortKey, ...] = ()
    warnings: tuple[str, ...] = field(default=())


@cache
def _standard_fields() -> frozenset[str]:
    """The structure attributes the OPTIMADE specification defines (some of which this
    server does not serve: they are answered null when asked for)."""
    from optimade.models import StructureResourceAttributes

    return frozenset(StructureResourceAttributes.model_fields)


def _integer(
    params: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise BadRequest(f"{name} must be a whole number, not '{raw}'") from err
    if value < minimum:
        raise BadRequest(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise BadRequest(f"{name} must be at most {maximum}, not {value}")
    return value


def _response_fields(raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    fields = []
    for name in (n.strip() for n in raw.split(",")):
        if not name or name in ("id", "type"):
            continue  # id and type are always there, outside attributes
        if name in BY_NAME or name in _standard_fields():
            fields.append(name)
        elif name.startswith("_") and not name.startswith(f"_{PROVIDER_PREFIX}_"):
            continue  # another provider's field: unknown here, left out
        else:
            raise BadRequest(f"response_fields names '{name}', which no structure has")
    return tuple(dict.fromkeys(fields))


def _sort(raw: str | None) -> tuple[SortKey, ...]:
    if not raw:
        return ()
    keys = []
    for item in (i.strip() for i in raw.split(",")):
        descending = item.startswith("-")
        name = item.removeprefix("-")
        prop = BY_NAME.get(name)
        if prop is None or not prop.sortable:
            raise BadRequest(
                f"cannot sort by '{name}'; /v1/info/structures marks the sortable properties"
            )
        keys.append(SortKey(prop, descending))
    return tuple(keys)


def parse_entry_query(params: Mapping[str, str]) -> EntryQuery:
    """``params`` (the URL's query) checked.

    Raises:
        BadRequest: a page_limit or page_offset that is no whole number or too small, an
            unknown response field, an unsortable sort key, a format other than json.
    """
    response_format = params.get("response_format", "json")
    if response_format != "json":
        raise BadRequest(f"response_format '{response_format}' is not served; use json")
    limit = _integer(params, "page_limit", DEFAULT_PAGE_LIMIT, 1)
    warnings = []
    if limit > MAX_PAGE_LIMIT:
        warnings.append(
            f"page_limit {limit} is over this server's maximum; pages hold {MAX_PAGE_LIMIT} entries"
        )
        limit = MAX_PAGE_LIMIT
    return EntryQuery(
        filter=params.get("filter", ""),
        page_limit=limit,
        page_offset=_integer(params, "page_offset", 0, 0, MAX_PAGE_OFFSET),
        response_fields=_response_fields(params.get("response_fields")),
        sort=_sort(params.get("sort")),
        warnings=tuple(warnings),
    )
