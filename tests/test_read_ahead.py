"""The read-ahead thread: order, errors, and stopping early (Ctrl-C, a failed writer)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from atlas2d.errors import InvalidInput
from atlas2d.read_ahead import read_ahead


def _items_then_error():  # type: ignore[no-untyped-def]
    yield from range(50)
    raise InvalidInput("f.json: broken after 50 items")


def test_read_ahead_keeps_order_and_raises_where_the_error_was() -> None:
    seen = []
    with pytest.raises(InvalidInput, match="broken after 50"):
        for item in read_ahead(_items_then_error(), depth=4):
            seen.append(item)
    assert seen == list(range(50))


def test_stopping_early_stops_the_read_ahead_thread() -> None:
    ahead = read_ahead(iter(range(10**9)), depth=2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()
    assert not [t for t in threading.enumerate() if t.name == "atlas2d-read-ahead"]


def test_stopping_early_ends_the_wait_and_closes_the_source_in_its_thread() -> None:
    closed_in: list[str] = []
    stopped: list[bool] = []
    release = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield 1
            release.wait(10)  # busy (a statement running) when the caller stops
            yield 2
        finally:
            closed_in.append(threading.current_thread().name)

    def end_the_wait() -> None:
        stopped.append(True)
        release.set()

    ahead = read_ahead(source(), depth=1, on_stop=end_the_wait)
    assert next(ahead) == 1
    ahead.close()
    # Cleaned up before close() returned, by the thread that read it.
    assert stopped == [True] and closed_in == ["atlas2d-read-ahead"]


def test_a_source_read_to_its_end_is_not_stopped() -> None:
    stopped: list[bool] = []
    assert list(read_ahead(iter(range(5)), depth=2, on_stop=lambda: stopped.append(True))) == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert stopped == []
