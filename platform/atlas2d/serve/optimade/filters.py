"""OPTIMADE filters to SQL: the ``optimade`` package's grammar and parser make the tree,
our transformer turns it into a WHERE clause over ``materials m`` (and the joins the
properties need) in which every value the user wrote is a bound parameter.

The SQL text is put together from the property table (``properties.py``), fixed
operators and generated parameter names (``:f0``, ``:f1``, …) only; no user text ever
becomes SQL. Comparisons follow two-valued logic, as the reference implementation
does: a comparison with an unknown (NULL) value is false, so ``NOT nsites = 3`` keeps
the entries whose nsites is unknown. Comparisons stay bare (``m.elements @> :f0``, so
that indexes serve them) and the NULL of an unknown value becomes false where it
matters, under NOT. Without NOT, AND and OR are monotone: a NULL result is one that
false in place of every unknown would make false too, and WHERE drops it.
"""

from __future__ import annotations

import builtins
import functools
import operator
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ase.data import atomic_numbers
from lark import Token, Transformer, Tree, v_args
from lark.exceptions import VisitError

from atlas2d.serve.optimade.errors import BadRequest, NotImplementedFilter
from atlas2d.serve.optimade.properties import BY_NAME, PROVIDER_PREFIX, Join, Property

MAX_FILTER_CHARS = 8000
"""Longest filter accepted (characters); parsing time grows with length."""

_OPERATORS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_REVERSED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ARRAY_TYPES = {"string": "text[]", "integer": "integer[]", "float": "float8[]"}
_ARRAY_TYPES["element"] = "smallint[]"
_INT4_MIN, _INT4_MAX = -(2**31), 2**31 - 1
"""The range of the ``integer[]`` items binds as; PostgreSQL refuses the cast past it."""


@dataclass(frozen=True)
class SqlFilter:
    """A filter as SQL.

    Attributes:
        where: a boolean SQL expression over ``m`` and the aliases in ``joins``.
        params: the bound parameters it names.
        joins: the joins it reads (``structure`` → ``s``, ``stability`` → ``st``).
    """

    where: str
    params: dict[str, Any]
    joins: frozenset[Join]


NO_FILTER = SqlFilter("true", {}, frozenset())


@dataclass(frozen=True)
class _Unknown:
    """A property of another provider: every comparison on it is false (it is unknown)."""

    name: str


@dataclass(frozen=True)
class _Condition:
    sql: str
    joins: frozenset[Join]


_FALSE = _Condition("false", frozenset())
_TRUE = _Condition("true", frozenset())


def _unescape(token: str) -> str:
    """The value of an OPTIMADE string token: quotes stripped, ``\\"`` and ``\\\\`` undone."""
    return re.sub(r"\\(.)", r"\1", token[1:-1], flags=re.DOTALL)


def _integer(token: Token) -> int:
    """An integer token's value; Python refuses to read one of thousands of digits."""
    try:
        return int(token)
    except ValueError as err:
        raise BadRequest(f"the number {str(token)[:20]}… has too many digits") from err


class _ToSql(Transformer[Token, _Condition | None]):
    """Lark transformer from the OPTIMADE v1.2 filter tree to a :class:`_Condition`,
    collecting bound parameters in ``params``."""

    def __init__(self) -> None:
        super().__init__()
        self.params: dict[str, Any] = {}

    # --- values ------------------------------------------------------------------

    def _bind(self, value: Any, cast: str | None = None) -> str:
        name = f"f{len(self.params)}"
        self.params[name] = value
        return f"CAST(:{name} AS {cast})" if cast else f":{name}"

    @v_args(inline=True)
    def string(self, token: Token) -> str:
        return _unescape(str(token))

    @v_args(inline=True)
    def number(self, token: Token) -> int | float:
        return _integer(token) if token.type == "SIGNED_INT" else float(token)

    @v_args(inline=True)
    def signed_int(self, token: Token) -> int:
        return _integer(token)

    def bool(self, _children: list[Any]) -> Any:
        raise NotImplementedFilter(
            "boolean values (TRUE, FALSE) are not supported: no property is boolean"
        )

    def property(self, children: list[Token]) -> Property | _Unknown:
        if len(children) > 1:
            raise BadRequest(f"'{'.'.join(children)}' is not a known property: none is nested")
        name = str(children[0])
        known = BY_NAME.get(name)
        if known is not None:
            return known
        if name.startswith("_") and not name.startswith(f"_{PROVIDER_PREFIX}_"):
            return _Unknown(name)
        raise BadRequest(f"'{name}' is not a known property; /v1/info/structures lists them")

    @v_args(inline=True)
    def value(self, value: Any) -> Any:
        return value

    @v_args(inline=True)
    def constant(self, value: Any) -> Any:
        return value

    @v_args(inline=True)
    def non_string_value(self, value: Any) -> Any:
        return value

    @v_args(inline=True)
    def not_implemented_string(self, value: Any) -> Any:
        return value

    def value_list(self, children: list[Any]) -> list[Any]:
        if any(isinstance(c, Token) and c.type == "OPERATOR" for c in children):
            raise NotImplementedFilter("operators inside HAS ALL/ANY/ONLY lists are not supported")
        return children

    # --- comparisons ---------------------------------------------------------------

    def _scalar(self, prop: Property | _Unknown, operator: str, value: Any) -> _Condition:
        if isinstance(prop, _Unknown):
            return _FALSE
        if isinstance(value, (Property, _Unknown)):
            raise NotImplementedFilter("comparing one property with another is not supported")
        sql = self._queryable(prop)
        if prop.kind == "list":
            raise BadRequest(
                f"'{prop.name}' is a list: filter it with HAS, HAS ALL, HAS ANY, HAS ONLY or LENGTH"
            )
        bound = self._bind(self._typed(prop, value))
        return _Condition(f"{sql} {_OPERATORS[operator]} {bound}", prop.joins)

    def _queryable(self, prop: Property) -> str:
        if prop.sql is None:
            raise NotImplementedFilter(f"filters on '{prop.name}' are not supported")
        return prop.sql

    @staticmethod
    def _typed(prop: Property, value: Any) -> Any:
        """``value`` as ``prop``'s type, or a 400 naming both."""
        if prop.kind == "string":
            if not isinstance(value, str):
                raise BadRequest(
                    f"'{prop.name}' is a string: compare it with a quoted value, not {value}"
                )
            return value
        if prop.kind == "timestamp":
            if not isinstance(value, str):
                raise BadRequest(
                    f"'{prop.name}' is a timestamp: give it quoted, e.g. \"2026-12-01T00:00:00Z\""
                )
            try:
                moment = datetime.fromisoformat(value)
            except ValueError as err:
                raise BadRequest(
                    f"'{value}' is not an RFC 3339 timestamp (e.g. \"2026-12-01T00:00:00Z\")"
                ) from err
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if isinstance(value, str):
            raise BadRequest(
                f"'{prop.name}' is a number: compare it with a number, not \"{value}\""
            )
        return value

    @v_args(inline=True)
    def value_op_rhs(self, operator: Token, value: Any) -> tuple[str, str, Any]:
        return ("value", str(operator), value)

    def known_op_rhs(self, children: list[Token]) -> tuple[str, str]:
        return ("known", str(children[-1]))

    def fuzzy_string_op_rhs(self, children: list[Any]) -> tuple[str, str, Any]:
        return ("fuzzy", str(children[0]), children[-1])

    def set_op_rhs(self, children: list[Any]) -> tuple[str, str, Any]:
        kind = children[1]
        if isinstance(kind, Token) and kind.type in ("ALL", "ANY", "ONLY"):
            return ("set", str(kind), children[2])
        if isinstance(kind, Token) and kind.type == "OPERATOR":
            if str(kind) != "=":
                raise NotImplementedFilter(f"HAS {kind} is not supported: use HAS (equality)")
            return ("set", "HAS", [children[2]])
        return ("set", "HAS", [kind])

    def length_op_rhs(self, children: list[Any]) -> tuple[str, str, int]:
        operator = str(children[1]) if len(children) == 3 else "="
        return ("length", operator, children[-1])

    def set_zip_op_rhs(self, _children: list[Any]) -> Any:
        raise NotImplementedFilter('zipped HAS (a:b HAS "x":"y") is not supported')

    def property_zip_addon(self, _children: list[Any]) -> Any:
        raise NotImplementedFilter('zipped HAS (a:b HAS "x":"y") is not supported')

    def value_zip(self, _children: list[Any]) -> Any:
        raise NotImplementedFilter('zipped HAS (a:b HAS "x":"y") is not supported')

    def value_zip_list(self, _children: list[Any]) -> Any:
        raise NotImplementedFilter('zipped HAS (a:b HAS "x":"y") is not supported')

    @v_args(inline=True)
    def property_first_comparison(
        self, prop: Property | _Unknown, rhs: tuple[Any, ...]
    ) -> _Condition:
        kind = rhs[0]
        if kind == "value":
            return self._scalar(prop, rhs[1], rhs[2])
        if kind == "known":
            return self._known(prop, rhs[1] == "KNOWN")
        if isinstance(prop, _Unknown):
            return _FALSE
        if kind == "fuzzy":
            return self._fuzzy(prop, rhs[1], rhs[2])
        if kind == "set":
            return self._set(prop, rhs[1], rhs[2])
        return self._length(prop, rhs[1], rhs[2])

    @v_args(inline=True)
    def constant_first_comparison(self, constant: Any, operator: Token, other: Any) -> _Condition:
        if isinstance(other, (Property, _Unknown)):
            return self._scalar(other, _REVERSED[str(operator)], constant)
        if isinstance(constant, str) or isinstance(other, str):
            raise BadRequest("comparing a string constant with another constant is not supported")
        # Two numbers (``1 = 1``): the comparison is decided here.
        return _TRUE if _COMPARE[str(operator)](constant, other) else _FALSE

    def _known(self, prop: Property | _Unknown, known: builtins.bool) -> _Condition:
        if isinstance(prop, _Unknown):
            return _FALSE if known else _TRUE
        sql = self._queryable(prop)
        return _Condition(f"({sql} IS {'NOT ' if known else ''}NULL)", prop.joins)

    def _fuzzy(self, prop: Property, operator: str, value: Any) -> _Condition:
        sql = self._queryable(prop)
        if prop.kind != "string" or not isinstance(value, str):
            raise BadRequest(f"{operator} compares strings: '{prop.name}' with a quoted value")
        bound = self._bind(value)
        # Functions, not LIKE: a % or _ in the value is literal text.
        expression = {
            "CONTAINS": f"strpos({sql}, {bound}) > 0",
            "STARTS": f"starts_with({sql}, {bound})",
            "ENDS": f"right({sql}, char_length({bound})) = {bound}",
        }[operator]
        return _Condition(f"({expression})", prop.joins)

    def _set(self, prop: Property, operator: str, values: list[Any]) -> _Condition:
        sql = self._queryable(prop)
        if prop.kind != "list":
            raise BadRequest(f"'{prop.name}' is not a list: HAS applies to lists")
        if prop.item == "float":
            raise NotImplementedFilter(f"HAS on '{prop.name}' is not supported; LENGTH is")
        items = [self._item(prop, v) for v in values]
        if None in items:
            # A symbol that names no element, or an integer past the column's range, is
            # in no list.
            if operator in ("HAS", "ALL"):
                return _FALSE
            items = [i for i in items if i is not None]
        array = self._bind(items, _ARRAY_TYPES[prop.item])
        expression = {
            "HAS": f"{sql} @> {array}",
            "ALL": f"{sql} @> {array}",
            "ANY": f"{sql} && {array}",
            "ONLY": f"{sql} <@ {array}",
        }[operator]
        return _Condition(f"({expression})", prop.joins)

    @staticmethod
    def _item(prop: Property, value: Any) -> Any:
        if isinstance(value, (Property, _Unknown)):
            raise NotImplementedFilter("properties inside HAS lists are not supported")
        if prop.item in ("string", "element"):
            if not isinstance(value, str):
                raise BadRequest(f"'{prop.name}' holds strings: give quoted values, not {value}")
            if prop.item == "element":
                # A symbol of no element (ASE gives its dummy symbol "X" the number
                # 0, as for an unknown one): it is in no list.
                return atomic_numbers.get(value) or None
            return value
        if isinstance(value, str) or (isinstance(value, float) and not value.is_integer()):
            raise BadRequest(f"'{prop.name}' holds integers, not {value!r}")
        number = int(value)
        return number if _INT4_MIN <= number <= _INT4_MAX else None

    def _length(self, prop: Property, operator: str, length: int) -> _Condition:
        if prop.kind != "list":
            raise BadRequest(f"'{prop.name}' is not a list: LENGTH applies to lists")
        if prop.length_sql is None:
            sql = f"cardinality({self._queryable(prop)})"
        else:
            sql = prop.length_sql
        bound = self._bind(length)
        return _Condition(f"{sql} {_OPERATORS[operator]} {bound}", prop.joins)

    # --- logic ---------------------------------------------------------------------

    @v_args(inline=True)
    def comparison(self, condition: _Condition) -> _Condition:
        return condition

    def expression_phrase(self, children: list[Any]) -> _Condition:
        inner: _Condition = children[-1]
        if len(children) == 2:  # NOT
            # Under NOT an unknown comparison must count as false, not stay unknown.
            return _Condition(f"(NOT COALESCE({inner.sql}, false))", inner.joins)
        return inner

    def expression_clause(self, children: list[_Condition]) -> _Condition:
        return _combine(children, "AND")

    def expression(self, children: list[_Condition]) -> _Condition:
        return _combine(children, "OR")

    def filter(self, children: list[_Condition]) -> _Condition | None:
        return children[0] if children else None


def _combine(conditions: list[_Condition], operator: str) -> _Condition:
    if len(conditions) == 1:
        return conditions[0]
    joins: frozenset[Join] = frozenset().union(*(c.joins for c in conditions))
    return _Condition("(" + f" {operator} ".join(c.sql for c in conditions) + ")", joins)


_parsers = threading.local()


def _parse(text: str) -> Tree[Token]:
    """The filter's tree, by a parser of this thread (a lark parser keeps state)."""
    from optimade.filterparser import LarkParser

    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = LarkParser(version=(1, 2, 0))
    try:
        return parser.lark.parse(text)
    except RecursionError as err:
        raise BadRequest("the filter nests too deeply") from err
    except Exception as err:  # lark's UnexpectedInput and its kin
        where = getattr(err, "column", None)
        at = f" at character {where}" if isinstance(where, int) and where > 0 else ""
        raise BadRequest(f"the filter is not OPTIMADE filter grammar (v1.2){at}") from err


@functools.lru_cache(maxsize=1024)
def compile_filter(text: str) -> SqlFilter:
    """``text`` (an OPTIMADE filter) as SQL with bound parameters; cached per text.

    Raises:
        BadRequest: the filter does not parse, names an unknown property, or compares
            values of the wrong type.
        NotImplementedFilter: it uses something this server does not support
            (zipped HAS, booleans, property-to-property comparisons).
    """
    if len(text) > MAX_FILTER_CHARS:
        raise BadRequest(
            f"the filter is {len(text)} characters long; at most {MAX_FILTER_CHARS} are accepted"
        )
    if "\x00" in text:
        raise BadRequest("the filter holds a NUL character, which no value can contain")
    if not text.strip():
        return NO_FILTER
    tree = _parse(text)
    transformer = _ToSql()
    try:
        condition = transformer.transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, (BadRequest, NotImplementedFilter)):
            raise err.orig_exc from None
        raise
    except RecursionError as err:
        raise BadRequest("the filter nests too deeply") from err
    if condition is None:
        return NO_FILTER
    return SqlFilter(condition.sql, transformer.params, condition.joins)
