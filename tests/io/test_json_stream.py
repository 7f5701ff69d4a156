"""Cutting a top-level JSON object into its members, chunk by chunk."""

from __future__ import annotations

import io
import json

import pytest

from atlas2d.errors import InvalidInput
from atlas2d.io.json_stream import object_members

# Keys and values whose strings hold every byte the cutter looks at: quotes escaped
# after odd and even runs of backslashes, brackets, braces and commas.
TRICKY = {
    'a"b': [{"x": 'q"}],[{,'}, 1.5, None],
    "c\\": ["\\", "\\\\", '\\"]', "]"],
    "{[,": {"nested": [[1, 2], {"k": "v,]"}], "e": '\\\\\\"}'},
    "plain": [],
    "é ü": "ünïcødé ]",
    "n": -1e-300,
}


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_members_are_cut_exactly_at_any_chunk_size(chunk_bytes: int) -> None:
    for indent in (None, 2):
        text = json.dumps(TRICKY, indent=indent, ensure_ascii=False).encode()
        members = list(object_members(io.BytesIO(b"\n " + text + b" \n"), "f.json", chunk_bytes))
        decoded = {}
        for member in members:
            decoded.update(json.loads(member))
        # Cut after each array or object value; scalar values ride with their neighbours.
        assert len(members) == 5
        assert decoded == TRICKY


def test_an_empty_object_has_no_member() -> None:
    assert list(object_members(io.BytesIO(b" { } "), "f.json")) == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"a": [1, 2], "b": [3', "ends inside the top-level object"),
        (b'{"a": [1], }', "a member is missing"),
        (b'{"a": [1] "b": [2]}', "a comma is missing"),
        (b'{"a": [1]} {"b": 2}', "data after the top-level object"),
        (b'[{"a": 1}]', "expected layout"),
        (b"\x00garbage", "does not start with"),
        (b"", "ends inside"),
    ],
)
def test_what_the_cutting_can_tell_is_refused(content: bytes, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem) as error:
        list(object_members(io.BytesIO(content), "f.json", chunk_bytes=4))
    assert str(error.value).startswith("f.json")
    assert "\n" not in str(error.value)
