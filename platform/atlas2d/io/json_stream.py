"""The members of a large top-level JSON object, one at a time, from a byte stream.

An Alexandria geometry-optimisation file is one object ``{mat_id: [trajectory, ...],
...}`` of up to several GB. Decoding it whole held the file's bytes and every decoded
value at once (peak RSS 1.2× the unpacked file). Here the stream is read in chunks and
cut at the object's top-level commas, found with numpy over the chunk's structural
bytes (quotes, backslashes, brackets, commas): each member is handed on as a small JSON
document ``{"key": value}`` for msgspec to decode, so memory is bounded by the chunk and
the largest member, not by the file.

Only the cutting is done here; whether a member is valid JSON of the expected layout is
left to its decoder, which names the record. What the cutting itself can tell (the file
is not an object, ends inside it, or has data after it) is refused here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from atlas2d.io.validate import bad_record


class Readable(Protocol):
    """A binary stream (a file, ``io.BytesIO``, ``io.files.ContentStream``)."""

    def read(self, size: int = -1, /) -> bytes | None: ...


CHUNK_BYTES = 256 << 10
"""Bytes read from the stream at a time."""

_QUOTE, _BACKSLASH, _OPEN, _CLOSE = 1, 2, 3, 4
# bytes.translate maps every byte to its code (0: not looked at) at memory speed.
_CODES = bytes(
    {ord('"'): _QUOTE, ord("\\"): _BACKSLASH, ord("["): _OPEN, ord("{"): _OPEN}.get(
        byte, {ord("]"): _CLOSE, ord("}"): _CLOSE}.get(byte, 0)
    )
    for byte in range(256)
)
_STEPS = np.array([0, 0, 0, 1, -1], dtype=np.int8)  # bracket depth change per code
_WHITESPACE = b" \t\r\n"
_VALUE_STARTS = b'["-0123456789tfn'


def _not_json(path: str, why: str) -> Exception:
    return bad_record(path, "", "json", f"not valid JSON, the file may be truncated ({why})")


class _Cutter:
    """Scanning state carried from one chunk to the next."""

    def __init__(self) -> None:
        self.depth = 0  # bracket depth after the bytes seen so far
        self.in_string = False
        self.backslashes = 0  # backslashes ending the last chunk, inside a string

    def cuts(self, chunk: bytes) -> tuple[list[int], list[int]]:
        """Positions in ``chunk`` of the brackets that open the top-level object (depth
        0 → 1), close a member's value (→ 1) or close the object (→ 0), and the depth
        after each."""
        codes_all = np.frombuffer(chunk.translate(_CODES), dtype=np.int8)
        where = np.flatnonzero(codes_all.view(np.bool_))
        codes = codes_all[where]
        if self.backslashes or (codes == _BACKSLASH).any():
            codes = self._unescape(chunk, where, codes)
        quotes = codes == _QUOTE
        # Only the parity of the quote count matters: uint8 may wrap.
        inside = ((np.cumsum(quotes, dtype=np.uint8) + self.in_string) & 1).view(np.bool_)
        steps = _STEPS[codes]
        steps[inside] = 0  # a quote counts as inside; its step is 0 anyway
        depth = np.cumsum(steps, dtype=np.int32)
        depth += self.depth
        # Depth 1 after a step: the object opened (from 0) or a member's value closed.
        edges = (steps != 0) & ((depth == 0) | (depth == 1))
        self.depth = int(depth[-1]) if len(depth) else self.depth
        self.in_string = bool((int(quotes.sum()) + self.in_string) % 2)
        trailing = len(chunk) - len(chunk.rstrip(b"\\"))
        self.backslashes = (
            (self.backslashes + trailing if trailing == len(chunk) else trailing)
            if self.in_string
            else 0
        )
        return where[edges].tolist(), depth[edges].tolist()

    def _unescape(self, chunk: bytes, where: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``codes`` with escaped quotes (after an odd run of backslashes) and the
        backslashes themselves cleared."""
        codes = codes.copy()
        for i in np.flatnonzero(codes == _QUOTE):
            position = int(where[i])
            run = 0
            while position - run - 1 >= 0 and chunk[position - run - 1] == 0x5C:
                run += 1
            if run == position:  # the run reaches back into the previous chunk
                run += self.backslashes
            if run % 2:
                codes[i] = 0
        codes[codes == _BACKSLASH] = 0
        return codes


def object_members(stream: Readable, path: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The stream's top-level JSON object as small documents ``{"key": value}``.

    The object is cut after each member whose value is an array or object, so a
    document holds one such member (or, where values are scalars, several: their
    decoder refuses them as it would refuse the whole file).

    Args:
        stream: binary stream of the JSON text (UTF-8).
        path: the file, for messages.
        chunk_bytes: bytes read at a time.

    Raises:
        InvalidInput: the text is not a JSON object, ends inside it, has data after it
            or a missing member (``{,`` ``,,`` ``,}``). A member that is not valid JSON
            is handed on; its decoder refuses it.
    """
    cutter = _Cutter()
    pending = bytearray()  # the current member's bytes from earlier chunks
    started = ended = False
    members = 0
    while chunk := stream.read(chunk_bytes):
        if ended:
            if chunk.strip(_WHITESPACE):
                raise _not_json(path, "data after the top-level object")
            continue
        if not started:
            body = chunk.lstrip(_WHITESPACE)
            if not body:
                continue
            if body[:1] != b"{":
                if body[:1] in _VALUE_STARTS:
                    raise bad_record(
                        path,
                        "",
                        "json",
                        "does not have the expected layout: the file should hold one JSON "
                        "object, {mat_id: [trajectory, ...], ...}",
                    )
                raise _not_json(path, "it does not start with '{'")
        start = 0
        for position, depth in zip(*cutter.cuts(chunk), strict=True):
            if not started:  # the object's opening brace
                started, start = True, position + 1
                continue
            closes_object = depth == 0
            piece = bytes(pending) + chunk[start : position if closes_object else position + 1]
            pending.clear()
            start = position + 1
            member = piece.strip(_WHITESPACE)
            if members:  # members after the first follow a comma
                if not member.startswith(b","):
                    if closes_object and not member:
                        ended = True
                        break
                    raise _not_json(path, "a comma is missing between members")
                member = member[1:].strip(_WHITESPACE)
                if not member:
                    raise _not_json(path, "a member is missing between commas")
            if member:
                members += 1
                yield b"{" + member + b"}"
            if closes_object:
                ended = True
                break
        if ended:
            if chunk[start:].strip(_WHITESPACE):
                raise _not_json(path, "data after the top-level object")
        elif started:
            pending += chunk[start:]
    if not ended:
        raise _not_json(path, "it ends inside the top-level object")
