"""The ``al_campaigns``, ``al_iterations`` and ``al_candidates`` tables and the
``al_iteration_summary`` view. Functions take ``session`` first and never commit.
Energies are eV/atom."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy.orm import Session

from atlas2d.db.models import AlCampaign, AlCandidate, AlIteration


@dataclass(frozen=True)
class CampaignRow:
    """A campaign's own columns."""

    id: int
    name: str
    model_version_id: int
    parameters: dict[str, Any]
    status: str
    created_at: datetime


@dataclass(frozen=True)
class IterationRow:
    """An iteration's own columns (see :class:`atlas2d.db.models.AlIteration`)."""

    id: int
    campaign_id: int
    index: int
    screening_model_id: int
    stage: str
    status: str
    stage_times: dict[str, Any]
    pool_id: int | None
    counts: dict[str, Any]
    metrics: dict[str, Any]
    training_set_id: int | None
    produced_model_id: int | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None


@contextmanager
def campaign_lock(bind: Engine | Connection, name: str) -> Iterator[bool]:
    """Hold the campaign's session-level advisory lock for the block, on a connection
    of its own (stages commit on others). Yields False, holding nothing, when another
    run holds it. The server releases it too when the connection dies (``kill -9``)."""
    key = {"key": f"atlas2d al {name}"}
    own = isinstance(bind, Engine)
    with bind.connect() if isinstance(bind, Engine) else nullcontext(bind) as connection:
        taken = bool(
            connection.execute(
                text("SELECT pg_try_advisory_lock(hashtext(:key))"), key
            ).scalar_one()
        )
        if own:
            connection.commit()  # the lock is the connection's, not the transaction's
        try:
            yield taken
        finally:
            if taken:
                connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), key)
                if own:
                    connection.commit()


def campaign_row(session: Session, name: str) -> CampaignRow | None:
    row = session.execute(select(AlCampaign).where(AlCampaign.name == name)).scalar()
    if row is None:
        return None
    return CampaignRow(
        row.id, row.name, row.model_version_id, row.parameters, row.status, row.created_at
    )


def insert_campaign(
    session: Session, name: str, model_version_id: int, parameters: dict[str, Any]
) -> int:
    """Insert a campaign (status ``created``); its id. A taken name raises IntegrityError."""
    return int(
        session.execute(
            insert(AlCampaign)
            .values(
                name=name,
                model_version_id=model_version_id,
                parameters=parameters,
                status="created",
            )
            .returning(AlCampaign.id)
        ).scalar_one()
    )


def set_campaign_status(session: Session, campaign_id: int, status: str) -> None:
    session.execute(
        update(AlCampaign)
        .where(AlCampaign.id == campaign_id)
        .values(status=status, updated_at=text("now()"))
    )


def list_campaigns(session: Session) -> pd.DataFrame:
    """One row per campaign: name, starting model, status, iterations, created."""
    result = session.execute(
        text(
            "SELECT c.name, m.name || ':' || m.version AS model, c.status,"
            " count(i.id) FILTER (WHERE i.stage = 'done') AS iterations_done,"
            " c.created_at FROM al_campaigns c"
            " JOIN model_versions m ON m.id = c.model_version_id"
            " LEFT JOIN al_iterations i ON i.campaign_id = c.id"
            " GROUP BY c.id, m.id ORDER BY c.name"
        )
    )
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def _iteration(row: AlIteration) -> IterationRow:
    return IterationRow(**{name: getattr(row, name) for name in IterationRow.__dataclass_fields__})


def iteration_by_id(session: Session, iteration_id: int) -> IterationRow:
    return _iteration(session.get_one(AlIteration, iteration_id, populate_existing=True))


def iterations(session: Session, campaign_id: int) -> list[IterationRow]:
    """The campaign's iterations by index."""
    rows = session.execute(
        select(AlIteration)
        .where(AlIteration.campaign_id == campaign_id)
        .order_by(AlIteration.index)
    ).scalars()
    return [_iteration(row) for row in rows]


def insert_iteration(
    session: Session, campaign_id: int, index: int, screening_model_id: int
) -> IterationRow:
    """Start iteration ``index`` at stage ``generate``."""
    row = AlIteration(
        campaign_id=campaign_id,
        index=index,
        screening_model_id=screening_model_id,
        stage="generate",
        status="running",
        stage_times={},
        counts={},
        metrics={},
    )
    session.add(row)
    session.flush()
    return _iteration(row)


def update_iteration(session: Session, iteration_id: int, **values: Any) -> None:
    """Set columns of one iteration (``finished_at=text("now()")`` for the clock)."""
    session.execute(update(AlIteration).where(AlIteration.id == iteration_id).values(**values))


def finish_iteration(session: Session, iteration_id: int) -> None:
    """Mark an iteration done now."""
    session.execute(
        update(AlIteration)
        .where(AlIteration.id == iteration_id)
        .values(status="done", error=None, finished_at=func.now())
    )


def merge_iteration_json(
    session: Session, iteration_id: int, column: str, values: dict[str, Any]
) -> None:
    """Merge keys into one JSONB column (``stage_times``, ``counts`` or ``metrics``)."""
    if column not in ("stage_times", "counts", "metrics"):  # a column name, never user text
        raise ValueError(f"not a JSON column of al_iterations: {column!r}")
    session.execute(
        text(f"UPDATE al_iterations SET {column} = {column} || CAST(:v AS jsonb) WHERE id = :id"),
        {"v": json.dumps(values), "id": iteration_id},
    )


# --- candidates ------------------------------------------------------------------------


def candidate_count(session: Session, iteration_id: int) -> int:
    return int(
        session.execute(
            text("SELECT count(*) FROM al_candidates WHERE iteration_id = :i"), {"i": iteration_id}
        ).scalar_one()
    )


def insert_candidates(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert decided candidates (dicts with the columns of ``al_candidates``)."""
    if rows:
        session.execute(insert(AlCandidate), rows)


def candidates(session: Session, iteration_id: int) -> pd.DataFrame:
    """Every candidate of an iteration with its material key and formula, best rank first."""
    result = session.execute(
        text(
            "SELECT m.key AS material_key, m.formula, k.* FROM al_candidates k"
            " JOIN materials m ON m.id = k.material_id WHERE k.iteration_id = :i"
            " ORDER BY k.rank NULLS LAST, k.ml_e_above_hull NULLS LAST, m.key"
        ),
        {"i": iteration_id},
    )
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def set_labels(session: Session, iteration_id: int, rows: Sequence[dict[str, Any]]) -> None:
    """Record labels: dicts with material_id, label_status, label_error, dft_relaxation_id."""
    for row in rows:
        session.execute(
            update(AlCandidate)
            .where(AlCandidate.iteration_id == iteration_id)
            .where(AlCandidate.material_id == row["material_id"])
            .where(AlCandidate.label_status == "pending")  # an ingest may have won the race
            .values(
                label_status=row["label_status"],
                label_error=row.get("label_error"),
                dft_relaxation_id=row.get("dft_relaxation_id"),
            )
        )


def set_dft_stability(session: Session, iteration_id: int) -> None:
    """Copy each labelled candidate's DFT e_above_hull from the ``stability`` table."""
    session.execute(
        text(
            "UPDATE al_candidates k SET dft_e_above_hull = s.e_above_hull FROM stability s"
            " WHERE k.iteration_id = :i AND k.label_status = 'labelled'"
            " AND s.material_id = k.material_id AND s.energy_source = 'dft'"
        ),
        {"i": iteration_id},
    )


@dataclass(frozen=True)
class LabelTarget:
    """The candidate a label ticket names: its label status and its iteration's stage."""

    label_status: str | None
    stage: str
    dft_relaxation_id: int | None


def label_target(
    session: Session, campaign: str, iteration: int, material_key: str
) -> LabelTarget | None:
    """The candidate of ``campaign`` iteration ``iteration`` with that material key, or
    None. Locks its row until the transaction ends (two ingests of one label)."""
    row = session.execute(
        text(
            "SELECT k.label_status, i.stage, k.dft_relaxation_id FROM al_candidates k"
            " JOIN al_iterations i ON i.id = k.iteration_id"
            " JOIN al_campaigns c ON c.id = i.campaign_id"
            " JOIN materials m ON m.id = k.material_id"
            " WHERE c.name = :c AND i.index = :n AND m.key = :k FOR UPDATE OF k"
        ),
        {"c": campaign, "n": iteration, "k": material_key},
    ).one_or_none()
    return None if row is None else LabelTarget(*row)


def attach_label(
    session: Session, campaign: str, iteration: int, material_key: str, relaxation_id: int
) -> None:
    """Mark a pending candidate labelled by an ingested DFT relaxation."""
    session.execute(
        text(
            "UPDATE al_candidates k SET label_status = 'labelled', label_error = NULL,"
            " dft_relaxation_id = :r FROM al_iterations i, al_campaigns c, materials m"
            " WHERE k.iteration_id = i.id AND i.campaign_id = c.id AND c.name = :c"
            " AND i.index = :n AND m.id = k.material_id AND m.key = :k"
            " AND k.label_status = 'pending'"
        ),
        {"c": campaign, "n": iteration, "k": material_key, "r": relaxation_id},
    )


def labelled_before(session: Session, campaign_id: int, index: int) -> set[int]:
    """Material ids that earlier iterations of a campaign stored a label for."""
    rows = session.execute(
        text(
            "SELECT k.material_id FROM al_candidates k JOIN al_iterations i ON i.id = k.iteration_id"
            " WHERE i.campaign_id = :c AND i.index < :n AND k.label_status = 'labelled'"
        ),
        {"c": campaign_id, "n": index},
    )
    return set(rows.scalars())


def campaign_pools(session: Session, campaign_id: int, index: int) -> list[str]:
    """The pools of a campaign's iterations up to ``index``, first used first."""
    rows = session.execute(
        text(
            "SELECT p.name FROM al_iterations i JOIN candidate_pools p ON p.id = i.pool_id"
            " WHERE i.campaign_id = :c AND i.index <= :n GROUP BY p.name"
            " ORDER BY min(i.index)"
        ),
        {"c": campaign_id, "n": index},
    )
    return list(rows.scalars())


# --- what the stages read --------------------------------------------------------------


def pending_labels(session: Session, campaign_id: int) -> pd.DataFrame:
    """iteration, material_key, formula of every candidate of a campaign waiting for a
    label."""
    result = session.execute(
        text(
            "SELECT i.index AS iteration, m.key AS material_key, m.formula"
            " FROM al_candidates k JOIN al_iterations i ON i.id = k.iteration_id"
            " JOIN materials m ON m.id = k.material_id"
            " WHERE i.campaign_id = :c AND k.label_status = 'pending' ORDER BY 1, 2"
        ),
        {"c": campaign_id},
    )
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def summary(session: Session, campaign: str) -> pd.DataFrame:
    """The ``al_iteration_summary`` rows of a campaign, by iteration."""
    result = session.execute(
        text("SELECT * FROM al_iteration_summary WHERE campaign = :c ORDER BY iteration"),
        {"c": campaign},
    )
    return pd.DataFrame(result.all(), columns=list(result.keys()))
