"""``audit source``: the downstream impact of one ingested file, and its retraction.

A source is named by the path it was ingested under, by a file on disk whose content
was ingested (wherever it lay then), or by its sha256 or a prefix of it. Retracting it
deletes nothing: it marks the row, new training sets leave its relaxations out, and
the models trained on it and their descendants count as ``tainted``
(``queries.provenance.tainted_models``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import InvalidInput, NotFound
from atlas2d.io.files import content_sha256
from atlas2d.queries import audits_source as queries
from atlas2d.queries import retractions
from atlas2d.queries.audits_source import Listing
from atlas2d.queries.sources import (
    SourceRow,
    source_row,
    sources_by_path,
    sources_by_sha256_prefix,
)

RETRACT_COMMAND = "audit source --retract"
UNRETRACT_COMMAND = "audit source --unretract"
"""The activities a retraction and its undoing are logged as."""

MIN_SHA256_PREFIX = 8
"""Hex characters a sha256 prefix needs: fewer would match many files by chance."""

DEFAULT_LISTED = 10
"""Material keys and relaxation ids listed per kind unless all are asked for."""

_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass
class SourceAudit:
    """One source and everything downstream of it.

    Attributes:
        source: the file, with its retraction (if any).
        materials: keys of the materials it brought.
        training_sets: the sets holding its frames (``queries.audits_source
            .source_training_sets``: frames per split, of this source's).
        models: the versions trained on those sets, and their descendants
            (``models_trained_on``); all ``tainted`` when the source is retracted.
        ml_relaxations: per model, the ML relaxations it ran (counts);
        ml_relaxation_ids, ml_relaxed_materials: their ids and material keys.
        stability: per energy source (those models), the stability rows computed;
        stability_materials: their material keys.
        campaign_decisions: active-learning decisions those models took part in,
        counted per campaign, iteration and decision; campaign_candidates: their
        material keys.
        retractions: the activities that retracted or restored it, oldest first.
    """

    source: SourceRow
    materials: Listing
    training_sets: pd.DataFrame
    models: pd.DataFrame
    ml_relaxations: pd.DataFrame
    ml_relaxation_ids: Listing
    ml_relaxed_materials: Listing
    stability: pd.DataFrame
    stability_materials: Listing
    campaign_decisions: pd.DataFrame
    campaign_candidates: Listing
    retractions: pd.DataFrame

    @property
    def retracted(self) -> bool:
        return self.source.retracted_at is not None


def _describe(sources: list[SourceRow]) -> str:
    return ", ".join(f"id {s.id} sha256 {s.sha256[:12]}… ({s.path})" for s in sources)


def find_source(session: Session, reference: str) -> SourceRow:
    """The one source ``reference`` names, tried in this order: the exact path it was
    ingested under; a file at that path (by its content's sha256, else by its absolute
    path when the file changed since); a sha256 or its first 8+ hex characters.

    Raises:
        NotFound: nothing matches.
        InvalidInput: several sources match (a path ingested twice with different
            content, a short prefix), or a hex prefix shorter than 8 characters.
    """
    candidates = sources_by_path(session, [reference])
    if len(candidates) == 1:
        return candidates[0]
    path = Path(reference).expanduser()
    if path.is_file():
        by_content = sources_by_sha256_prefix(session, content_sha256(path))
        if by_content:  # a full sha256 is unique
            return by_content[0]
        candidates = candidates or sources_by_path(
            session, sorted({str(path.resolve()), str(path.absolute())})
        )
        if len(candidates) == 1:
            return candidates[0]
    if len(candidates) > 1:
        raise InvalidInput(
            f"{len(candidates)} sources were ingested from {reference} ({_describe(candidates)}); "
            "name one by its sha256 or its first 8+ characters."
        )
    if _HEX.fullmatch(reference):
        if len(reference) < MIN_SHA256_PREFIX:
            raise InvalidInput(
                f"{reference!r} is too short to name a source by its sha256: give at least "
                f"{MIN_SHA256_PREFIX} hex characters."
            )
        found = sources_by_sha256_prefix(session, reference.lower())
        if len(found) == 1:
            return found[0]
        if found:
            raise InvalidInput(
                f"sha256 prefix {reference} matches {len(found)} sources ({_describe(found)}); "
                "give more characters."
            )
    raise NotFound(
        f"No source matches {reference!r}: it is no path a file was ingested under, no file "
        "whose content was ingested, and no sha256 (or first 8+ hex characters) of one; "
        '`atlas2d sql "SELECT id, path, sha256 FROM sources"` lists them.'
    )


def resolve_source(sessions: sessionmaker[Session], reference: str) -> SourceRow:
    """``find_source`` in a transaction of its own. Raises as ``find_source``."""
    with sessions.begin() as session:
        return find_source(session, reference)


def audit_source(
    sessions: sessionmaker[Session], reference: str, listed: int | None = DEFAULT_LISTED
) -> SourceAudit:
    """Everything downstream of one source, read in one transaction.

    Args:
        reference: as ``find_source`` takes it.
        listed: how many material keys and relaxation ids each listing keeps (the
            counts are always complete); None keeps them all.

    Raises:
        NotFound, InvalidInput: as ``find_source``.
    """
    with sessions.begin() as session:
        source = find_source(session, reference)
        training_sets = queries.source_training_sets(session, source.id)
        models = queries.models_trained_on(session, training_sets.training_set_id.tolist())
        model_ids = models.model_version_id.tolist()
        return SourceAudit(
            source=source,
            materials=queries.source_materials(session, source.id, listed),
            training_sets=training_sets,
            models=models,
            ml_relaxations=queries.ml_relaxations_by(session, model_ids),
            ml_relaxation_ids=queries.ml_relaxation_ids(session, model_ids, listed),
            ml_relaxed_materials=queries.ml_relaxed_materials(session, model_ids, listed),
            stability=queries.stability_by(session, model_ids),
            stability_materials=queries.stability_materials(session, model_ids, listed),
            campaign_decisions=queries.campaign_decisions_by(session, model_ids),
            campaign_candidates=queries.campaign_candidates_by(session, model_ids, listed),
            retractions=queries.retraction_history(
                session, source.id, (RETRACT_COMMAND, UNRETRACT_COMMAND)
            ),
        )


@dataclass(frozen=True)
class RetractionChange:
    """The outcome of a retraction or of its undoing.

    Attributes:
        source: the source as it is now.
        changed: False when it already was in the state asked for (nothing changed).
    """

    source: SourceRow
    changed: bool


def retract_source(
    sessions: sessionmaker[Session], source_id: int, reason: str
) -> RetractionChange:
    """Mark a source retracted with ``reason`` (nothing is deleted); a source already
    retracted keeps its first time and reason.

    Raises:
        InvalidInput: an empty reason.
    """
    reason = reason.strip()
    if not reason:
        raise InvalidInput("A retraction needs a reason (--reason TEXT): say what is wrong.")
    with sessions.begin() as session:
        changed = retractions.retract(session, source_id, reason) is not None
        return RetractionChange(source_row(session, source_id), changed)


def unretract_source(sessions: sessionmaker[Session], source_id: int) -> RetractionChange:
    """Clear a source's retraction (its data enter new training sets again)."""
    with sessions.begin() as session:
        changed = retractions.unretract(session, source_id)
        return RetractionChange(source_row(session, source_id), changed)
