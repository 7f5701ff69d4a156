"""Relaxation chunks on Dask workers: a ``LocalCluster`` of single-threaded processes,
or an existing cluster. Each worker opens its own connection, loads the model once
(sha256 checked; fetched from the database into its own ``$ATLAS2D_HOME/artifacts``
when that machine has no copy) and writes its results to PostgreSQL itself, for the
activity of the command that submitted the chunk (``db.activity_tag``: the relaxations
it writes carry that activity and are counted in its rows written)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from atlas2d.mlff.relax import RelaxSettings
from atlas2d.queries.model_versions import ModelVersionRef

_WORKER_STATE: dict[str, Any] = {}
"""Per worker process: the engine and the loaded force field, reused across chunks."""


def _database_url(sessions: sessionmaker[Session]) -> str:
    bind = sessions.kw["bind"]
    engine = getattr(bind, "engine", bind)
    return engine.url.render_as_string(hide_password=False)


def relax_chunk_on_worker(
    relax_chunk: Callable[..., Any],
    database_url: str,
    artifacts_dir: str | None,
    model: ModelVersionRef,
    items: list[Any],
    parameters: dict[str, Any],
    engine: str,
    settings: RelaxSettings,
    device: str,
    max_atoms: int | None,
    num_threads: int,
    replace: bool = False,
    activity_id: int | None = None,
) -> Any:
    """Run in a worker process: relax one chunk with ``relax_chunk`` (the service's own
    function, handed in so that this module does not import the service) and commit it
    for ``activity_id`` (the submitting command's activity; None: for none).

    ``artifacts_dir`` None: the worker's own ``$ATLAS2D_HOME/artifacts``, where the model
    file is fetched from the database when that machine has no copy (a worker of an
    external scheduler does not see the submitting machine's folders).

    The activity is process-global (``db.activity_tag``), which is safe because a worker
    runs one task at a time (single-threaded workers, as ``run_on_dask`` and the compose
    file start them); it is cleared after the chunk, so that a later task of another
    command is not counted to this one."""
    from atlas2d.threads import apply_threads

    apply_threads(num_threads)
    from atlas2d.db import activity_tag
    from atlas2d.db.session import make_engine, make_sessions
    from atlas2d.services import models as registry

    if _WORKER_STATE.get("url") != database_url:
        _WORKER_STATE["url"] = database_url
        _WORKER_STATE["sessions"] = make_sessions(make_engine(database_url))
    cache_key = (model.artifact_sha256, device)
    if _WORKER_STATE.get("model_key") != cache_key:
        from atlas2d.config import get_settings

        directory = Path(artifacts_dir) if artifacts_dir else get_settings().artifacts_dir
        _WORKER_STATE["force_field"] = registry.load_version(
            _WORKER_STATE["sessions"], model, directory, device
        )
        _WORKER_STATE["model_key"] = cache_key  # after the load: a failed one is retried
    activity_tag.set_current(activity_id)
    try:
        return relax_chunk(
            _WORKER_STATE["sessions"],
            model,
            _WORKER_STATE["force_field"],
            items,
            parameters,
            engine,
            settings,
            max_atoms,
            replace,
        )
    finally:
        activity_tag.set_current(None)


def run_on_dask(
    relax_chunk: Callable[..., Any],
    sessions: sessionmaker[Session],
    model: ModelVersionRef,
    chunks: list[list[Any]],
    parameters: dict[str, Any],
    request: Any,
    artifacts_dir: Path,
    workers: int,
    scheduler: str | None,
    on_done: Callable[[Any], None],
) -> None:
    """Submit every chunk to ``relax_chunk`` on a worker and report each outcome as it
    completes."""
    from dask.distributed import Client, LocalCluster, as_completed

    from atlas2d.db import activity_tag
    from atlas2d.threads import configured_threads, thread_environment

    num_threads = configured_threads()
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=thread_environment(num_threads),
        )
        client = Client(cluster)
    try:
        futures = [
            client.submit(
                relax_chunk_on_worker,
                relax_chunk,
                _database_url(sessions),
                # This machine's folder for a LocalCluster; a scheduler's workers use theirs.
                None if scheduler else str(artifacts_dir),
                model,
                chunk,
                parameters,
                request.engine,
                request.settings,
                request.device,
                request.max_atoms,
                num_threads,
                request.force,
                activity_tag.current(),
                pure=False,
            )
            for chunk in chunks
        ]
        for future in as_completed(futures):
            on_done(future.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
