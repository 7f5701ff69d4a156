"""Items of an iterator produced by a background thread a few at a time ahead of use.

Used where the producer mostly waits outside the GIL: decompressing an ingest file, or
reading rows from PostgreSQL while the server computes the next ones. On two cores the
caller's own work (decoding, formatting) then runs beside it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


def read_ahead(
    items: Iterator[T], depth: int = 8, on_stop: Callable[[], None] | None = None
) -> Generator[T, None, None]:
    """``items``, produced by a background thread up to ``depth`` ahead.

    Memory grows by at most ``depth`` items. An exception in the thread is raised here,
    in order. Stopping early (the caller's break, exception or Ctrl-C) stops the thread
    and closes ``items`` in it, so that a generator's cleanup (a ``with`` block around a
    database read) runs before this returns.

    Args:
        items: the iterator; only the thread touches it.
        depth: items held ready at most.
        on_stop: called when the caller stops early while the thread still works, to
            end a wait the thread cannot see (the running statement, cancelled on the
            server); it must be safe to call from another thread.
    """
    ahead: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        """Put ``item`` in the queue unless stopped first; whether it went."""
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand_over(item):
                    return
            outcome: object = _END
        except BaseException as err:  # handed to the consumer, raised there
            outcome = err
        finally:
            close = getattr(items, "close", None)
            if stop.is_set() and close is not None:
                close()
        hand_over(outcome)

    thread = threading.Thread(target=produce, name="atlas2d-read-ahead", daemon=True)
    thread.start()
    finished = False
    try:
        while True:
            item = ahead.get()
            if item is _END:
                finished = True
                break
            if isinstance(item, BaseException):
                finished = True
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        if not finished and on_stop is not None and thread.is_alive():
            on_stop()
        thread.join()
