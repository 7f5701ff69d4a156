"""The search page's query: materials by formula, chemical system, elements,
dimensionality and e_above_hull by one energy source, sorted and paged. Every value a
user typed reaches SQL as a bound parameter; sort columns come from a fixed list."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import pandas as pd
from ase.data import chemical_symbols
from sqlalchemy.orm import Session

from atlas2d.errors import InvalidInput
from atlas2d.queries.tabular import query_frame
from atlas2d.vocabulary import DFT

PER_PAGE_DEFAULT = 25
PER_PAGE_MAX = 200
DOWNLOAD_MAX_ROWS = 100_000
"""The most rows a CSV or JSON download holds (the table's sort order)."""
MAX_VALUE_LENGTH = 200
"""Longest text a search field takes, characters."""

EHULL_UNITS = {"mev": ("meV/atom", 1e-3), "ev": ("eV/atom", 1.0)}
"""The unit choices of the e_above_hull limit: value → (label, eV/atom per unit)."""

COLUMNS: dict[str, str] = {
    "material_key": "m.key",
    "formula": "m.formula",
    "chemsys": "m.chemsys",
    "dimensionality": "m.dimensionality",
    "spacegroup": "m.spacegroup_number",
    "e_above_hull_mev_per_atom": "s.e_above_hull",
    "formation_energy_ev_per_atom": "s.formation_energy_per_atom",
    "energy_per_atom_ev": "s.energy_per_atom",
}
"""The result columns (names carry units) and the SQL each sorts by: the only text of
an ORDER BY clause, chosen from here by name."""

COLUMN_LABELS: dict[str, str] = {
    "material_key": "material",
    "formula": "formula",
    "chemsys": "chemsys",
    "dimensionality": "dimensionality",
    "spacegroup": "space group",
    "e_above_hull_mev_per_atom": "e_above_hull (meV/atom)",
    "formation_energy_ev_per_atom": "formation energy (eV/atom)",
    "energy_per_atom_ev": "energy (eV/atom)",
}
"""The table's headers (the downloads keep the column names)."""

_SELECT = """
SELECT m.key AS material_key, m.formula, m.chemsys, m.dimensionality,
       m.spacegroup_number AS spacegroup,
       1000 * s.e_above_hull AS e_above_hull_mev_per_atom,
       s.formation_energy_per_atom AS formation_energy_ev_per_atom,
       s.energy_per_atom AS energy_per_atom_ev
"""
_FROM_WHERE = """
FROM materials m
LEFT JOIN stability s ON s.material_id = m.id AND s.energy_source = :source
WHERE (CAST(:formula AS text) IS NULL OR m.formula = :formula)
  AND (CAST(:chemsys AS text) IS NULL OR m.chemsys = :chemsys)
  AND (CAST(:elements AS text[]) IS NULL OR m.elements @> CAST(:elements AS text[]))
  AND (CAST(:dimensionality AS int) IS NULL OR m.dimensionality = :dimensionality)
  AND (CAST(:max_ehull_ev AS float8) IS NULL OR s.e_above_hull <= :max_ehull_ev)
"""

_ELEMENT_SEPARATORS = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class SearchQuery:
    """One search, as the form and the links carry it.

    Attributes:
        formula: reduced formula (``MoS2``), normalised. chemsys: ``Mo-S`` (sorted).
        elements: the materials must hold all of these. dimensionality: 2 or 3.
        energy_source: ``dft`` or ``NAME:VERSION``: the e_above_hull shown and limited.
        max_ehull: the e_above_hull limit in ``ehull_unit`` (``mev`` or ``ev``).
        sort: a key of :data:`COLUMNS`; descending: its direction.
        page: 1-based; per_page: rows per page.
    """

    formula: str | None = None
    chemsys: str | None = None
    elements: tuple[str, ...] = ()
    dimensionality: int | None = None
    energy_source: str = DFT
    max_ehull: float | None = None
    ehull_unit: str = "mev"
    sort: str = "material_key"
    descending: bool = False
    page: int = 1
    per_page: int = PER_PAGE_DEFAULT

    @property
    def max_ehull_ev(self) -> float | None:
        """The e_above_hull limit, eV/atom."""
        if self.max_ehull is None:
            return None
        return self.max_ehull * EHULL_UNITS[self.ehull_unit][1]

    def parameters(self, **changes: Any) -> dict[str, str]:
        """The query string's parameters (defaults left out), with ``changes``."""
        query = replace(self, **changes)
        values = {
            "formula": query.formula or "",
            "chemsys": query.chemsys or "",
            "elements": ",".join(query.elements),
            "dimensionality": "" if query.dimensionality is None else str(query.dimensionality),
            "energy_source": "" if query.energy_source == DFT else query.energy_source,
            "max_ehull": "" if query.max_ehull is None else repr(query.max_ehull),
            "ehull_unit": "" if query.ehull_unit == "mev" else query.ehull_unit,
            "sort": "" if query.sort == "material_key" else query.sort,
            "order": "desc" if query.descending else "",
            "page": "" if query.page == 1 else str(query.page),
            "per_page": "" if query.per_page == PER_PAGE_DEFAULT else str(query.per_page),
        }
        return {k: v for k, v in values.items() if v}

    def link(self, path: str = "/", **changes: Any) -> str:
        """``path`` with this query (and ``changes``) as its query string."""
        encoded = urlencode(self.parameters(**changes))
        return f"{path}?{encoded}" if encoded else path


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidInput(f"Search field {name!r} is longer than {MAX_VALUE_LENGTH} characters.")
    return value or None


def _integer(params: Mapping[str, str], name: str, low: int, high: int, default: int) -> int:
    value = _text(params, name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidInput(f"Search field {name!r} must be a whole number from {low} to {high}.")
    return int(value)


def _element(symbol: str, field: str) -> str:
    if symbol not in chemical_symbols[1:]:
        raise InvalidInput(
            f"Search field {field!r}: {symbol!r} is not a chemical element (write Mo, S, …)."
        )
    return symbol


def _formula(value: str | None) -> str | None:
    if value is None:
        return None
    from pymatgen.core import Composition

    try:
        composition = Composition(value)
        for element in composition.elements:
            _element(str(element), "formula")
        if composition.num_atoms <= 0:
            raise ValueError(value)
        return str(composition.reduced_formula)
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidInput(
            f"Search field 'formula': {value!r} is not a chemical formula (write MoS2)."
        ) from err


def parse_search(params: Mapping[str, str], energy_sources: list[str]) -> SearchQuery:
    """The search the query string asks for.

    Args:
        params: the request's query parameters.
        energy_sources: the sources with a hull (``dft`` first), which
            ``energy_source`` must name.

    Raises:
        InvalidInput: a value out of range or unknown; one line naming the field.
    """
    chemsys = _text(params, "chemsys")
    if chemsys is not None:
        chemsys = "-".join(
            sorted({_element(e.strip(), "chemsys") for e in chemsys.split("-") if e.strip()})
        )
    elements_text = _text(params, "elements")
    elements = tuple(
        sorted(
            {_element(e, "elements") for e in _ELEMENT_SEPARATORS.split(elements_text or "") if e}
        )
    )
    dimensionality_text = _text(params, "dimensionality")
    if dimensionality_text not in (None, "2", "3"):
        raise InvalidInput("Search field 'dimensionality' must be 2 (layers) or 3 (bulk).")
    source = _text(params, "energy_source") or DFT
    if source not in energy_sources and source != DFT:
        raise InvalidInput(
            f"Search field 'energy_source': {source!r} has no convex hull; "
            f"choose one of {', '.join(energy_sources) or DFT}."
        )
    unit = _text(params, "ehull_unit") or "mev"
    if unit not in EHULL_UNITS:
        raise InvalidInput("Search field 'ehull_unit' must be mev (meV/atom) or ev (eV/atom).")
    max_text = _text(params, "max_ehull")
    max_ehull = None
    if max_text is not None:
        try:
            max_ehull = float(max_text)
        except ValueError:
            max_ehull = math.nan
        if not math.isfinite(max_ehull):
            raise InvalidInput(
                f"Search field 'max_ehull': {max_text!r} is not a number "
                f"(e_above_hull in {EHULL_UNITS[unit][0]})."
            )
    sort = _text(params, "sort") or "material_key"
    if sort not in COLUMNS:
        raise InvalidInput(f"Search field 'sort' must be one of {', '.join(COLUMNS)}.")
    order = _text(params, "order") or "asc"
    if order not in ("asc", "desc"):
        raise InvalidInput("Search field 'order' must be asc or desc.")
    return SearchQuery(
        formula=_formula(_text(params, "formula")),
        chemsys=chemsys or None,
        elements=elements,
        dimensionality=None if dimensionality_text is None else int(dimensionality_text),
        energy_source=source,
        max_ehull=max_ehull,
        ehull_unit=unit,
        sort=sort,
        descending=order == "desc",
        page=_integer(params, "page", 1, 10**6, 1),
        per_page=_integer(params, "per_page", 1, PER_PAGE_MAX, PER_PAGE_DEFAULT),
    )


def energy_sources(session: Session) -> list[str]:
    """The energy sources with a hull run, ``dft`` first."""
    return query_frame(
        session,
        "SELECT energy_source FROM hull_runs GROUP BY energy_source"
        " ORDER BY energy_source <> :dft, energy_source",
        {"dft": DFT},
    )["energy_source"].tolist()


def _bound(query: SearchQuery) -> dict[str, Any]:
    return {
        "source": query.energy_source,
        "formula": query.formula,
        "chemsys": query.chemsys,
        "elements": list(query.elements) or None,
        "dimensionality": query.dimensionality,
        "max_ehull_ev": query.max_ehull_ev,
    }


def count_results(session: Session, query: SearchQuery) -> int:
    """How many materials match (all pages)."""
    return int(query_frame(session, "SELECT count(*) AS n" + _FROM_WHERE, _bound(query))["n"][0])


def search_rows(session: Session, query: SearchQuery, download: bool = False) -> pd.DataFrame:
    """The matching materials in the query's order: its page, or with ``download`` up to
    :data:`DOWNLOAD_MAX_ROWS` from the first. Columns: the keys of :data:`COLUMNS`;
    e_above_hull in meV/atom, energies in eV/atom; no stability → NaN."""
    direction = "DESC" if query.descending else "ASC"
    order = f" ORDER BY {COLUMNS[query.sort]} {direction} NULLS LAST, m.key"
    limit, offset = (
        (DOWNLOAD_MAX_ROWS, 0) if download else (query.per_page, (query.page - 1) * query.per_page)
    )
    return query_frame(
        session,
        _SELECT + _FROM_WHERE + order + " LIMIT :limit OFFSET :offset",
        {**_bound(query), "limit": limit, "offset": offset},
    )
