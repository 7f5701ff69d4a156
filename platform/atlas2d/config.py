"""Settings read from the environment (prefix ``ATLAS2D_``), built at the edge."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from atlas2d.vocabulary import SQL_TIMEOUT_MAX_S


class Settings(BaseSettings):
    """Runtime settings.

    Attributes:
        database_url: SQLAlchemy URL of an external PostgreSQL
            (``postgresql+psycopg://user:password@host/db``). Unset: the embedded
            PostgreSQL under ``home/pgdata`` is used.
        reader_database_url: URL of a login that can only read (a member of
            ``atlas2d_reader``, not a superuser), used for user SQL (``atlas2d sql``).
            Required with ``database_url``; the embedded server has its own
            (``atlas2d_sql``).
        sql_timeout_s: Seconds one ``atlas2d sql`` statement may run
            (``ATLAS2D_SQL_TIMEOUT_S``; PostgreSQL's ``statement_timeout``).
        home: Folder for the embedded database and the artifacts (model files).
        num_threads: BLAS/OpenMP/torch threads per process (``ATLAS2D_NUM_THREADS``,
            applied by ``atlas2d.threads`` before numpy and torch load).
        max_decompressed_mb: Largest content, MB (2**20 bytes), that ingest reads from
            one input file read whole (VASP, extxyz, convex-hull JSON), once
            decompressed (``ATLAS2D_MAX_DECOMPRESSED_MB``); a file over it is refused
            before it is held in memory. A streamed Alexandria trajectory file is not
            limited: its memory follows ``ingest_batch_frames``.
        ingest_batch_frames: Frames that ingest reads, validates and writes at a time
            from an Alexandria trajectory file (``ATLAS2D_INGEST_BATCH_FRAMES``), all in
            the file's one transaction: ingest's memory grows with it, not with the
            file (about 2 kB per frame of 12 atoms).
    """

    model_config = SettingsConfigDict(env_prefix="ATLAS2D_", extra="ignore")

    database_url: str | None = None
    reader_database_url: str | None = None
    sql_timeout_s: float = Field(default=60.0, gt=0, le=SQL_TIMEOUT_MAX_S)
    home: Path = Field(default_factory=lambda: Path.home() / ".local" / "share" / "atlas2d")
    num_threads: int = Field(default=1, ge=1)
    max_decompressed_mb: int = Field(default=2048, ge=1)
    ingest_batch_frames: int = Field(default=20_000, ge=1)

    @property
    def pgdata_dir(self) -> Path:
        """Data directory of the embedded PostgreSQL."""
        return self.home / "pgdata"

    @property
    def artifacts_dir(self) -> Path:
        """Model files and training exports, referenced from the database by relative path."""
        return self.home / "artifacts"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
