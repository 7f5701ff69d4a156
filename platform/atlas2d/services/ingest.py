"""Ingest use case: read a file, validate it, write it in one transaction.

One file = one transaction: a bad record aborts that file and nothing of it is
written. Re-ingesting the same content is a no-op (``sources.sha256``); a trajectory
already stored through another file is skipped (``relaxations.content_hash``).

A large Alexandria trajectory file is read, validated and written in batches of
``ATLAS2D_INGEST_BATCH_FRAMES`` frames inside that one transaction, so memory is
bounded by the batch, not by the file: a bad record in a later batch rolls back the
batches written before it. Its content hash is known only once it is all read, so a
file ingested before is recognised at the end, and its transaction rolled back.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import AlreadyExists, InvalidInput
from atlas2d.io.readers import InputFile, ReadOptions
from atlas2d.io.records import ParsedFile
from atlas2d.io.validate import validate_entry, validate_trajectory
from atlas2d.io.vasp_inputs import LABEL_TICKET, LabelTicket
from atlas2d.queries import al_campaigns as al_queries
from atlas2d.queries import energy_entries as energy_entries_queries
from atlas2d.queries import frames as frames_queries
from atlas2d.queries import materials as materials_queries
from atlas2d.queries import relaxations as relaxations_queries
from atlas2d.queries import sources as sources_queries
from atlas2d.queries.row_encoding import (
    FrameBlock,
    PreparedEntry,
    build_blocks,
    encode_frames,
    entry_row,
    material_rows,
    prepare_entry,
    relaxation_row,
)
from atlas2d.queries.statistics import refresh_if_grown

log = logging.getLogger(__name__)

INGESTED, ALREADY_PRESENT, REJECTED = "ingested", "already present", "rejected"


@dataclass
class FileResult:
    """What ingesting one file did."""

    path: str
    format: str | None
    status: str
    materials_new: int = 0
    relaxations: int = 0
    relaxations_present: int = 0
    frames: int = 0
    entries: int = 0
    message: str = ""


@dataclass
class IngestSummary:
    """Totals over the files of one ``ingest`` call."""

    results: list[FileResult] = field(default_factory=list)

    def count(self, attribute: str) -> int:
        return sum(getattr(r, attribute) for r in self.results)

    def with_status(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.status == status]


@lru_cache(maxsize=1)
def parser_versions() -> dict[str, str]:
    """Versions of the packages that parse and convert input files."""
    from atlas2d.provenance import package_versions

    versions = package_versions(("atlas2d", "ase", "pymatgen", "numpy"))
    return {package: version or "unknown" for package, version in versions.items()}


def _batch_sha256(blocks: list[FrameBlock], entries: list[PreparedEntry]) -> str:
    digest = hashlib.sha256()
    for content_hash in sorted(
        [h for b in blocks for h in b.hashes] + [e.content_hash for e in entries]
    ):
        digest.update(content_hash.encode())
    return digest.hexdigest()


@dataclass
class _FileState:
    """What the batches of one file have written so far, for checks across batches."""

    source_id: int
    relaxation_hashes: set[str] = field(default_factory=set)
    formulas: dict[str, str] = field(default_factory=dict)


class _IngestedBefore(Exception):
    """Rolls back a streamed file whose content turned out to be stored already."""


def _prepared(parsed: ParsedFile) -> tuple[list[FrameBlock], list[PreparedEntry]]:
    """Validate a parsed file (or batch) and encode its rows.

    Raises:
        InvalidInput: a record is malformed.
    """
    for traj in parsed.trajectories:
        validate_trajectory(traj, parsed.path)
    for entry in parsed.entries:
        validate_entry(entry, parsed.path)
    blocks = build_blocks(parsed.trajectories, parsed.path)
    entries = list({e.content_hash: e for e in map(prepare_entry, parsed.entries)}.values())
    return blocks, entries


def _no_records(path: str) -> InvalidInput:
    return InvalidInput(
        f"{path}: holds no trajectory and no energy entry; check the file and --format."
    )


def ingest_parsed(sessions: sessionmaker[Session], parsed: ParsedFile) -> FileResult:
    """Validate, prepare and write one parsed file in one transaction.

    Raises:
        InvalidInput: a record is malformed or contradicts stored data; nothing written.
    """
    if not parsed.trajectories and not parsed.entries:
        raise _no_records(parsed.path)
    blocks, entries = _prepared(parsed)
    sha256 = parsed.sha256 or _batch_sha256(blocks, entries)
    result = FileResult(parsed.path, parsed.format, INGESTED)
    try:
        with sessions.begin() as session:
            if sources_queries.source_id_by_sha256(session, sha256) is not None:
                result.status = ALREADY_PRESENT
                return result
            state = _FileState(_insert_source(session, parsed, sha256))
            _write(session, parsed, state, blocks, entries, result)
            _record_counts(session, state, result)
    except IntegrityError as err:
        return _conflict(parsed, err)
    _refresh_statistics(sessions, result)
    return result


def _ingest_streamed(
    sessions: sessionmaker[Session], reading: InputFile, batch_frames: int
) -> FileResult:
    """Read, validate and write a file batch by batch, in one transaction.

    Raises:
        InvalidInput: a record is malformed or contradicts stored data; nothing written.
    """
    path = str(reading.path)
    result = FileResult(path, reading.format, INGESTED)
    try:
        with sessions.begin() as session:
            state: _FileState | None = None
            for batch in reading.batches(batch_frames):
                blocks, entries = _prepared(batch)
                if state is None:
                    # A placeholder until the content's hash is known, at the end.
                    state = _FileState(_insert_source(session, batch, f"reading {uuid.uuid4()}"))
                _write(session, batch, state, blocks, entries, result)
            if state is None:
                raise _no_records(path)
            sha256 = reading.sha256()
            if sources_queries.source_id_by_sha256(session, sha256) is not None:
                raise _IngestedBefore
            sources_queries.update_source_sha256(session, state.source_id, sha256)
            _record_counts(session, state, result)
    except _IngestedBefore:
        return FileResult(path, reading.format, ALREADY_PRESENT)
    except IntegrityError as err:
        return _conflict(ParsedFile(path, reading.format, "", ""), err)
    _refresh_statistics(sessions, result)
    return result


def _refresh_statistics(sessions: sessionmaker[Session], result: FileResult) -> None:
    """Analyse the tables this file grew a lot, after its commit (an ANALYZE holds a
    lock that would serialise concurrent ingests until they commit). Best effort: the
    file is stored by then, and autovacuum analyses later anyway, so a failure here
    (a lock timeout, a lost connection) is logged and the ingest goes on."""
    added = {
        "frames": result.frames,
        "relaxations": result.relaxations,
        "materials": result.materials_new,
        "energy_entries": result.entries,
    }
    try:
        with sessions.begin() as session:
            for table, rows in added.items():
                refresh_if_grown(session, table, rows)
    except DBAPIError as err:
        log.warning("%s: stored; analysing the tables it grew failed: %s", result.path, err)


def _conflict(parsed: ParsedFile, err: IntegrityError) -> FileResult:
    if "uq_sources_sha256" in str(err):  # the same file ingested concurrently
        return FileResult(parsed.path, parsed.format, ALREADY_PRESENT)
    raise AlreadyExists(f"{parsed.path}: conflicts with stored data: {err.orig}") from err


def _insert_source(session: Session, parsed: ParsedFile, sha256: str) -> int:
    return sources_queries.insert_source(
        session,
        {
            "format": parsed.format,
            "path": parsed.path,
            "sha256": sha256,
            "parser": parsed.parser,
            "versions": parser_versions(),
            "options": parsed.options,
        },
    )


def _record_counts(session: Session, state: _FileState, result: FileResult) -> None:
    sources_queries.update_source_counts(
        session,
        state.source_id,
        {
            "n_materials": len(state.formulas),
            "n_relaxations": result.relaxations,
            "n_frames": result.frames,
            "n_entries": result.entries,
        },
    )


def _write(
    session: Session,
    parsed: ParsedFile,
    state: _FileState,
    blocks: list[FrameBlock],
    entries: list[PreparedEntry],
    result: FileResult,
) -> None:
    """Write one file's (or batch's) rows under ``state.source_id``; add to ``result``."""
    rows = material_rows(parsed, blocks, entries)
    for row in rows:
        known = state.formulas.setdefault(row["key"], row["formula"])
        if known != row["formula"]:  # given in an earlier batch of the file
            raise InvalidInput(
                f"{parsed.path}: material {row['key']!r} has formula {row['formula']} here but "
                f"{known} elsewhere in the file. Give the two different keys; nothing from "
                "this file was written."
            )
    ticket = (
        None
        if parsed.label_ticket is None
        else LabelTicket.from_json(parsed.label_ticket, parsed.path)
    )
    if ticket is not None:
        _check_ticket(parsed.path, ticket, rows)
    stored = materials_queries.upsert_materials(session, rows)
    for row in rows:
        if stored[row["key"]].formula != row["formula"]:
            raise InvalidInput(
                f"{parsed.path}: material {row['key']!r} has formula {row['formula']} in this "
                f"file but {stored[row['key']].formula} in the database. Use another key for a "
                "different compound; nothing from this file was written."
            )
    # The same trajectory twice in one file is stored once.
    seen = state.relaxation_hashes
    relaxation_rows = []
    for block in blocks:
        for t, traj in enumerate(block.trajectories):
            if block.hashes[t] not in seen:
                seen.add(block.hashes[t])
                relaxation_rows.append(
                    relaxation_row(block, t, stored[traj.material_key].id, state.source_id)
                )
    inserted = relaxations_queries.insert_relaxations(session, relaxation_rows)
    ids_per_block = []
    for block in blocks:
        ids: list[int | None] = []
        for content_hash in block.hashes:
            ids.append(inserted.pop(content_hash, None))  # pop: a duplicate gets None
        ids_per_block.append(ids)
    frames_queries.copy_frames(
        session,
        (
            chunk
            for block, ids in zip(blocks, ids_per_block, strict=True)
            for chunk in encode_frames(block, ids)
        ),
    )
    result.entries += energy_entries_queries.insert_entries(
        session,
        [entry_row(e, stored[e.source.material_key].id, state.source_id) for e in entries],
    )
    if ticket is not None:
        _attach_label(session, parsed.path, ticket, blocks, ids_per_block)
    relaxations = sum(i is not None for ids in ids_per_block for i in ids)
    result.materials_new += sum(m.inserted for m in stored.values())
    result.relaxations += relaxations
    result.relaxations_present += len(relaxation_rows) - relaxations
    result.frames += sum(
        int(block.offsets[t + 1] - block.offsets[t])
        for block, ids in zip(blocks, ids_per_block, strict=True)
        for t, i in enumerate(ids)
        if i is not None
    )


def _check_ticket(path: str, ticket: LabelTicket, rows: list[dict[str, Any]]) -> None:
    """A VASP label must be the calculation of the candidate its ticket names."""
    for row in rows:
        if row["formula"] != ticket.formula:
            raise InvalidInput(
                f"{path}: its folder's {LABEL_TICKET} names candidate "
                f"{ticket.material_key} ({ticket.formula}) of campaign {ticket.campaign} "
                f"iteration {ticket.iteration}, but the file holds {row['formula']}; put the "
                "candidate's own calculation there. Nothing from this file was written."
            )


def _attach_label(
    session: Session,
    path: str,
    ticket: LabelTicket,
    blocks: list[FrameBlock],
    ids_per_block: list[list[int | None]],
) -> None:
    """Mark the ticket's candidate labelled by the relaxation just stored; refuse (and
    so write nothing) when it is not a candidate waiting for its label."""
    named = (
        f"{path}: its folder's {LABEL_TICKET} names candidate {ticket.material_key} "
        f"of campaign {ticket.campaign} iteration {ticket.iteration}"
    )
    target = al_queries.label_target(
        session, ticket.campaign, ticket.iteration, ticket.material_key
    )
    if target is None or target.label_status is None:
        raise InvalidInput(
            f"{named}, which was not chosen for a label there (`atlas2d al status "
            f"{ticket.campaign}`). Nothing from this file was written."
        )
    if target.label_status != "pending" or target.stage != "label":
        raise InvalidInput(
            f"{named}, which is {target.label_status} already (its iteration is at stage "
            f"{target.stage}): a candidate takes one label, while its iteration waits for "
            "it. Nothing from this file was written."
        )
    found = [
        relaxation_id
        for block, ids in zip(blocks, ids_per_block, strict=True)
        for traj, relaxation_id in zip(block.trajectories, ids, strict=True)
        if traj.material_key == ticket.material_key and relaxation_id is not None
    ]
    if not found:
        raise InvalidInput(
            f"{named}, but its calculation is stored already (from another file: a copy?). "
            "Nothing from this file was written."
        )
    al_queries.attach_label(
        session, ticket.campaign, ticket.iteration, ticket.material_key, found[-1]
    )


def ingest_file(
    sessions: sessionmaker[Session],
    path: Path,
    options: ReadOptions,
    batch_frames: int | None = None,
) -> FileResult:
    """Read and ingest one file in one transaction (see ``ingest_parsed``).

    Args:
        batch_frames: frames read, validated and written at a time from a streamed
            format (``io.readers.STREAMED_FORMATS``); None: the
            ``ATLAS2D_INGEST_BATCH_FRAMES`` setting.

    Raises:
        InvalidInput: the file is unreadable, malformed or contradicts stored data;
            nothing of it written.
    """
    with InputFile(path, options) as reading:
        if not reading.streamed:
            (parsed,) = reading.batches(batch_frames=0)
            parsed.sha256 = reading.sha256()
            return ingest_parsed(sessions, parsed)
        if batch_frames is None:
            from atlas2d.config import get_settings

            batch_frames = get_settings().ingest_batch_frames
        return _ingest_streamed(sessions, reading, batch_frames)


def ingest_paths(
    sessions: sessionmaker[Session],
    paths: Iterable[Path],
    options: ReadOptions,
    skip_bad: bool = False,
    on_file: Callable[[FileResult], None] | None = None,
    batch_frames: int | None = None,
) -> IngestSummary:
    """Ingest files, one transaction per file.

    Without ``skip_bad`` the first bad file stops the run (files before it stay
    ingested; re-running skips them). With ``skip_bad`` bad files are reported and the
    rest are ingested.

    Raises:
        InvalidInput: a file is bad and ``skip_bad`` is False.
    """
    summary = IngestSummary()
    for path in paths:
        try:
            result = ingest_file(sessions, path, options, batch_frames)
        except InvalidInput as err:
            if not skip_bad:
                raise
            result = FileResult(str(path), None, REJECTED, message=str(err))
        summary.results.append(result)
        if on_file is not None:
            on_file(result)
    return summary
