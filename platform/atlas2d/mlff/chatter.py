"""Other libraries' output, kept off the screen: written to a log file instead.

Lightning prints banners and tips ("GPU available: False"), matgl and PyTorch Geometric
print "Processing..." and tqdm bars while they build graphs, mace prints that
cuequivariance is missing and makes e3nn warn about ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
when it is imported. None of it is atlas2d's progress or results. :func:`quiet` wraps
the library calls (training, graph building, model loading) and sends, while it runs:

- writes to ``sys.stdout`` and ``sys.stderr`` (``print``, tqdm),
- ``warnings`` shown (formatted as Python would show them),
- records of every ``logging`` handler that writes to the terminal (Lightning's own
  ``StreamHandler``; ``logging.lastResort``),

to a log file, appended to under a header line for each block that printed
anything. Where the output goes:

- a training run: ``chatter.log`` (:data:`TRAINING_LOG`) in the run's work folder
  (``$ATLAS2D_HOME/artifacts/models/NAME/vN-…/``), passed by the caller;
- anything else (loading a model for ``predict``, ``relax``, ``al run``, …): the file
  named by ``ATLAS2D_LOG_FILE``. The CLI sets it, for the duration of a command, to
  ``$ATLAS2D_HOME/logs/COMMAND.log`` (``COMMAND`` the first word: ``relax.log``,
  ``al.log``, ``demo.log``) unless it is already set; worker processes inherit it.
  Without it (atlas2d used as a library) nothing is redirected.

``ATLAS2D_VERBOSE=1`` (set by ``atlas2d --verbose``) turns every block into a no-op:
everything is shown as the libraries print it. Blocks nest: an inner block writes to
the outer block's file. Output written below Python (C code writing to file
descriptors 1 and 2, processes started by a library) is not redirected.

atlas2d's own lines are printed outside these blocks, so they stay on screen.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

VERBOSE_VARIABLE = "ATLAS2D_VERBOSE"
LOG_VARIABLE = "ATLAS2D_LOG_FILE"
TRAINING_LOG = "chatter.log"
"""The file, in a training run's work folder, that holds its libraries' output."""
LOGS_FOLDER = "logs"
"""The folder under ``$ATLAS2D_HOME`` of the commands' logs (``COMMAND.log``)."""

_active: list[Path] = []
"""The log file of the block running now (nested blocks add nothing)."""


def verbose() -> bool:
    """Whether other libraries' output is shown (``ATLAS2D_VERBOSE`` set, not 0/false)."""
    value = os.environ.get(VERBOSE_VARIABLE, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def command_log() -> Path | None:
    """The log file outside a training run (``ATLAS2D_LOG_FILE``), or None."""
    value = os.environ.get(LOG_VARIABLE, "").strip()
    return Path(value) if value else None


@contextlib.contextmanager
def for_command(default_log: Path, show: bool) -> Iterator[None]:
    """Set :data:`LOG_VARIABLE` (unless set already) and, with ``show``,
    :data:`VERBOSE_VARIABLE` while a command runs; restore both afterwards.

    Environment variables, not module state, so that worker processes a command starts
    (Dask's local workers) keep the same choice.
    """
    wanted = {LOG_VARIABLE: os.environ.get(LOG_VARIABLE) or str(default_log)}
    if show:
        wanted[VERBOSE_VARIABLE] = "1"
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Log:
    """One block's log file, opened (appended to, under a header line) at its first
    write: a block whose libraries print nothing leaves no trace."""

    def __init__(self, path: Path, title: str) -> None:
        self.path = path
        self.title = title
        self.file: IO[str] | None = None

    def opened(self) -> IO[str]:
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.path.open("a", encoding="utf-8", errors="replace", buffering=1)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self.file.write(f"--- {stamp} pid {os.getpid()}: {self.title} ---\n")
        return self.file

    def write(self, text: str) -> None:
        if text:
            self.opened().write(text)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class _LogStream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` while a block runs: writes go to the log, and
    after the block to the stream it replaced (for anything that kept a reference, such
    as a logging handler a library created during the block)."""

    def __init__(self, log: _Log, replaced: Any) -> None:
        super().__init__()
        self.log: _Log | None = log
        self.replaced = replaced

    def write(self, text: str) -> int:
        if self.log is None:
            return int(self.replaced.write(text))
        self.log.write(text)
        return len(text)

    def flush(self) -> None:
        if self.log is None:
            self.replaced.flush()
        elif self.log.file is not None:
            self.log.file.flush()

    def fileno(self) -> int:
        return self.replaced.fileno() if self.log is None else self.log.opened().fileno()

    def isatty(self) -> bool:
        return self.log is None and bool(self.replaced.isatty())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8" if self.log is not None else str(self.replaced.encoding)


def _stream_handlers() -> list[logging.StreamHandler[Any]]:
    """Every ``StreamHandler`` attached to a logger (the root and every named one)."""
    loggers: list[Any] = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        handler
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
    ]


@contextlib.contextmanager
def quiet(log_file: Path | None = None, title: str = "") -> Iterator[Path | None]:
    """Send other libraries' output to a log file while the block runs.

    Args:
        log_file: the file to append to; None: ``ATLAS2D_LOG_FILE`` (see the module
            docstring), and when that is unset too the block changes nothing.
        title: what the block does, written in its header line.

    Yields:
        The log file written to (an outer block's, when blocks nest), or None when
        nothing is redirected (``--verbose``, or no log file). The file is created at
        the first write: a block whose libraries print nothing leaves none.

    An exception leaving the block is written to the log with its traceback and goes
    on unchanged, with a note naming the log.
    """
    if verbose():
        yield None
        return
    if _active:
        yield _active[-1]
        return
    target = log_file or command_log()
    if target is None:
        yield None
        return
    log = _Log(target, title or "library output")
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err, saved_show = sys.stdout, sys.stderr, warnings.showwarning
    out, err = _LogStream(log, saved_out), _LogStream(log, saved_err)
    terminal = {id(saved_out): out, id(saved_err): err}
    terminal.setdefault(id(sys.__stdout__), out)
    terminal.setdefault(id(sys.__stderr__), err)
    moved = [(handler, handler.stream) for handler in _stream_handlers()]
    moved = [(handler, stream) for handler, stream in moved if id(stream) in terminal]
    for handler, stream in moved:
        handler.setStream(terminal[id(stream)])

    def show_warning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        log.write(warnings.formatwarning(message, category, filename, lineno, line))

    _active.append(target)
    # Only where warnings are shown changes: not warnings.catch_warnings(), which would
    # also undo the filters a library installs when it is imported in the block.
    warnings.showwarning = show_warning
    sys.stdout, sys.stderr = out, err
    try:
        yield target
    except BaseException as error:
        log.write("".join(traceback.format_exception(error)))
        if isinstance(error, Exception):
            error.add_note(f"Other libraries' output: {target}")
        raise
    finally:
        sys.stdout, sys.stderr, warnings.showwarning = saved_out, saved_err, saved_show
        _active.pop()
        for handler, stream in moved:
            handler.setStream(stream)
        # Handlers a library created during the block hold our streams: point them where
        # they would point had the library been imported outside it.
        for handler in _stream_handlers():
            if isinstance(handler.stream, _LogStream):
                handler.setStream(handler.stream.replaced)
        out.log = err.log = None
        log.close()
