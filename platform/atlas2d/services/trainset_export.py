"""``trainset export``: a training set's splits as files a trainer reads.

extxyz and matgl go frame by frame in this process. MACE goes a batch of frames at a
time (``io.exporters.write_mace_extxyz_batches``) and, for a large set, by several
processes: formatting text is the export's cost (about 20 µs a frame of CPU), so each
process writes the frames of a range of ids into a part file, with its own connection,
and this process joins the parts in order. The file is the same, byte for byte.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Generator, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from itertools import pairwise
from multiprocessing.pool import IMapIterator, Pool
from multiprocessing.queues import SimpleQueue
from pathlib import Path
from typing import BinaryIO

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.session import driver_connection, make_engine, make_sessions
from atlas2d.errors import InvalidInput, WorkerDied
from atlas2d.io import exporters
from atlas2d.io.records import ExportBatch, ExportFrame
from atlas2d.mlff.forcefield import zero_out_of_plane
from atlas2d.queries import training_sets as queries
from atlas2d.queries.training_sets import FrameRange
from atlas2d.read_ahead import read_ahead
from atlas2d.services.trainsets import stored_training_set
from atlas2d.vocabulary import EXPORT_FORMATS, SPLITS, ExportFormat, Split

PARALLEL_MIN_FRAMES = 50_000
"""A set with fewer frames is written by this process alone: starting the processes
(about a second) would cost more than they save."""
DEFAULT_MAX_PROCESSES = 8
"""The default is one process per CPU, at most this many (each holds a connection, and
the server's own work grows with them)."""
FRAMES_PER_PART = 10_000
"""About how many frames one part file holds (half a second of a process's work):
many parts per process, so that the processes finish together."""


def export_training_set(
    sessions: sessionmaker[Session],
    name: str,
    fmt: ExportFormat,
    out_dir: Path,
    processes: int | None = None,
) -> dict[Split, tuple[Path, int]]:
    """Write one file (extxyz, mace) or dataset folder (matgl) per split.

    Args:
        processes: processes that write a MACE export of ``PARALLEL_MIN_FRAMES`` or more
            (default: one per CPU this process may use, at most ``DEFAULT_MAX_PROCESSES``;
            1: this process alone), each with its own connection of ``sessions``'
            engine. Other formats are written by this process.

    Returns:
        split → (path written, frames written); empty splits are skipped.

    Raises:
        NotFound: no such training set. InvalidInput: unknown format, ``processes``
            below 1, or a stored frame that cannot be written (nothing is left behind).
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(
            f"Unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}."
        )
    if processes is not None and processes < 1:
        raise InvalidInput(f"--processes {processes}: give 1 or more.")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[Split, tuple[Path, int]] = {}
    with sessions.begin() as session:
        row = stored_training_set(session, name)
        splits = [split for split in SPLITS if row.split_counts[split]["frames"] > 0]
        total = sum(row.split_counts[split]["frames"] for split in splits)
        workers = processes or min(_usable_cpus(), DEFAULT_MAX_PROCESSES)
        # Sessions on one connection (a transaction held open) are read here alone:
        # other connections would not see what that transaction holds.
        bind = sessions.kw.get("bind")
        if (
            fmt == "mace"
            and workers > 1
            and total >= PARALLEL_MIN_FRAMES
            and isinstance(bind, Engine)
        ):
            url = bind.url.render_as_string(hide_password=False)
            return _write_mace_in_parts(session, url, row.id, name, splits, out_dir, workers)
        for split in splits:
            # Closed however the writer ends: a reader left open holds the connection
            # (and its thread waits to hand over a batch), so the rollback would hang.
            if fmt == "matgl":
                path = out_dir / split
                with closing(_export_frames(session, row.id, name, split)) as frames:
                    count = exporters.write_matgl_dataset(frames, path)
            elif fmt == "mace":
                path = out_dir / f"{split}.xyz"
                batches = _read_ahead(session, _export_batches(session, row.id, name, split))
                with closing(batches):
                    count = exporters.write_mace_extxyz_batches(batches, path)
            else:
                path = out_dir / f"{split}.xyz"
                with closing(_export_frames(session, row.id, name, split)) as frames:
                    count = exporters.write_extxyz(frames, path)
            written[split] = (path, count)
    return written


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity; a container's limit may be less)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _export_batches(
    session: Session,
    training_set_id: int,
    name: str,
    split: Split,
    frames: FrameRange = FrameRange(),
) -> Iterator[ExportBatch]:
    """Stream a split's frames (those in ``frames``) from the database a batch at a
    time, a layer's stress in-plane only, each frame's identifiers in ``info``.

    Column-wise, not frame by frame: a second object per frame and zeroing one stress
    at a time were a sixth of the export's time.
    """
    for batch in queries.split_frame_batches(session, training_set_id, split, frames):
        size = len(batch.frame_ids)
        layers = np.array([d == 2 for d in batch.dimensionalities])[:, np.newaxis, np.newaxis]
        yield ExportBatch(
            species=batch.species,
            bounds=np.asarray(batch.bounds),
            cells=batch.cells,
            positions=batch.positions,
            forces=batch.forces,
            energies=np.asarray(batch.energies, dtype=np.float64),
            stresses=np.where(layers, zero_out_of_plane(batch.stresses), batch.stresses),
            has_stress=np.asarray(batch.has_stress, dtype=bool),
            info={
                "material_key": batch.material_keys,
                "relaxation_id": batch.relaxation_ids,
                "frame_id": batch.frame_ids,
                "step": batch.steps,
                "split": [split] * size,
                "training_set": [name] * size,
            },
            pbc=batch.pbc,
        )


def _read_ahead(session: Session, batches: Iterator[ExportBatch]) -> Generator[ExportBatch]:
    """``batches`` (of ``session``) read by a background thread: the server computes the
    next rows while the caller formats the last; stopping early cancels the statement."""
    return read_ahead(batches, depth=2, on_stop=driver_connection(session).cancel_safe)


def _export_frames(
    session: Session, training_set_id: int, name: str, split: Split
) -> Generator[ExportFrame]:
    """``_export_batches`` frame by frame."""
    for batch in _export_batches(session, training_set_id, name, split):
        for i in range(len(batch)):
            yield batch.frame(i)


# --- MACE by several processes ------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    """Frames ``first_index`` … of a split's file: those of ``frames``."""

    training_set_id: int
    name: str
    split: Split
    frames: FrameRange
    first_index: int
    count: int
    path: Path


def _write_mace_in_parts(
    session: Session,
    url: str,
    training_set_id: int,
    name: str,
    splits: list[Split],
    out_dir: Path,
    processes: int,
) -> dict[Split, tuple[Path, int]]:
    """Each split's MACE file joined from part files that ``processes`` processes write.

    The processes start first (they connect while this one reads the frame ids). On an
    error or Ctrl-C they are stopped at once (their statements end with their
    connections); the part files, in a hidden folder of ``out_dir``, always go.
    """
    with ExitStack() as cleanup:
        scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
        cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
        # Ctrl-C is held back until the pool's stop is registered (a Ctrl-C in between
        # would leave the workers running); the workers start with it held back too.
        with _sigint_held():
            pool, pids = _start_pool(url, processes)
            cleanup.callback(pool.join)
            cleanup.callback(pool.terminate)  # first: nothing writes once the folder goes
        parts = {
            split: _parts(
                training_set_id,
                name,
                split,
                *queries.split_frame_ids(session, training_set_id, split),
                scratch,
            )
            for split in splits
        }
        counts = pool.imap(_write_part, [part for split in splits for part in parts[split]])
        started: set[int] = set()  # the workers' pids
        written: dict[Split, tuple[Path, int]] = {}
        for split in splits:
            path = out_dir / f"{split}.xyz"
            with exporters.atomic_file(path, "wb") as handle:
                for part in parts[split]:
                    count = _next_result(counts, pids, started)
                    if count != part.count:
                        raise InvalidInput(
                            f"The {split} split's frames with ids {part.frames.first_frame} "
                            f"to {part.frames.last_frame} changed during the export "
                            f"({part.count} in the set, {count} read); run "
                            f"`atlas2d trainset verify {name}`."
                        )
                    _append(part.path, handle)
                    part.path.unlink()
            written[split] = (path, sum(part.count for part in parts[split]))
        pool.close()
        return written


def _append(path: Path, handle: BinaryIO) -> None:
    """Append the file at ``path`` to ``handle``: in the kernel on Linux (``sendfile``;
    copying through Python cost 1.3 s of CPU per 400 MB, sendfile 0.2), through Python
    elsewhere (macOS's sendfile writes to sockets only) and for whatever it left."""
    handle.flush()
    with path.open("rb") as source:
        if sys.platform.startswith("linux"):
            size, offset = os.fstat(source.fileno()).st_size, 0
            while offset < size:
                sent = os.sendfile(handle.fileno(), source.fileno(), offset, size - offset)
                if sent == 0:
                    break
                offset += sent
            source.seek(offset)
        shutil.copyfileobj(source, handle, 1 << 22)


def _parts(
    training_set_id: int,
    name: str,
    split: Split,
    frame_ids: np.ndarray,
    relaxation_ids: np.ndarray,
    folder: Path,
) -> list[_Part]:
    """The split's frames cut into parts of about ``FRAMES_PER_PART`` consecutive ids,
    their files in ``folder``.

    Args:
        frame_ids: (F,) the split's frame ids, ascending. relaxation_ids: (F,) theirs.
    """
    n_parts = max(1, round(len(frame_ids) / FRAMES_PER_PART))
    cuts = np.linspace(0, len(frame_ids), n_parts + 1).round().astype(int).tolist()
    return [
        _Part(
            training_set_id=training_set_id,
            name=name,
            split=split,
            frames=FrameRange(
                first_frame=int(frame_ids[first]),
                last_frame=int(frame_ids[last - 1]),
                first_relaxation=int(relaxation_ids[first:last].min()),
                last_relaxation=int(relaxation_ids[first:last].max()),
            ),
            first_index=first,
            count=last - first,
            path=folder / f"{split}-{k:04d}.xyz",
        )
        for k, (first, last) in enumerate(pairwise(cuts))
        if last > first
    ]


def _start_pool(url: str, processes: int) -> tuple[Pool, SimpleQueue[int]]:
    """``processes`` worker processes, each with its own engine on ``url``, and the queue
    on which each started worker puts its pid.

    Forked where the platform can (the workers then start in milliseconds with what this
    process imported); the parent's connections are inherited but never used.
    """
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    pids: SimpleQueue[int] = context.SimpleQueue()
    return context.Pool(processes, initializer=_start_worker, initargs=(url, pids)), pids


@contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT held back (delivered when the block ends) where the platform can."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _next_result(results: IMapIterator, pids: SimpleQueue[int], started: set[int]) -> int:
    """The next part's frame count, as the workers hand them over.

    Args:
        pids: where each worker puts its pid when it starts; drained into ``started``
            (the caller's, kept from call to call).

    Raises:
        WorkerDied: a worker ended without its result (killed, out of memory): the pool
            would replace it and wait for that result for ever.
    """
    while True:
        try:
            return int(results.next(timeout=0.5))
        except multiprocessing.TimeoutError:
            while not pids.empty():
                started.add(pids.get())
            for pid in started:
                if not _alive(pid):
                    raise WorkerDied(
                        f"An export process (pid {pid}) ended before its part was written "
                        "(killed, or out of memory?); nothing of the unfinished split was "
                        "kept. Run the export again, with --processes 1 to use one process."
                    ) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


_worker_sessions: sessionmaker[Session] | None = None


def _start_worker(url: str, pids: SimpleQueue[int]) -> None:
    """A worker's setup: Ctrl-C is the parent's to handle (it stops the workers), and
    SIGTERM ends a worker at once; one engine of its own; its pid to the parent."""
    global _worker_sessions
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):  # held back by the parent while it forked
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _worker_sessions = make_sessions(make_engine(url))
    pids.put(os.getpid())


def _write_part(part: _Part) -> int:
    """Write one part file in a worker; returns its frames."""
    assert _worker_sessions is not None, "_start_worker sets up every worker"
    with _worker_sessions.begin() as session:
        batches = _export_batches(session, part.training_set_id, part.name, part.split, part.frames)
        with closing(_read_ahead(session, batches)) as ahead:  # see export_training_set
            return exporters.write_mace_extxyz_batches(ahead, part.path, part.first_index)
