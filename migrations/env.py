"""Alembic environment. Imports no application code: migrations stand on their own.

The connection comes from ``config.attributes["connection"]`` (atlas2d's own
``db upgrade`` and the tests), else from ``-x url=...`` or ``ATLAS2D_DATABASE_URL``.
"""

from __future__ import annotations

import os
from typing import Any

from alembic import context
from sqlalchemy import create_engine

config = context.config
target_metadata = None  # migrations are written by hand (autogenerate drafts are reviewed)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render atlas2d's TypeDecorators as their plain PostgreSQL types in drafts."""
    if type_ == "type" and obj.__class__.__module__ == "atlas2d.db.types":
        impl = obj.impl
        if obj.__class__.__name__ == "Vec3Array":
            return "sa.LargeBinary()"
        if obj.__class__.__name__ == "Matrix3":
            autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
            return "postgresql.ARRAY(sa.Double(), dimensions=2)"
        if obj.__class__.__name__ == "SmallIntArray":
            autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
            return "postgresql.ARRAY(sa.SmallInteger(), dimensions=1)"
        return repr(impl)
    return False


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "ATLAS2D_DATABASE_URL"
    )
    if not url:
        raise SystemExit(
            "Set ATLAS2D_DATABASE_URL or pass -x url=... (or use `atlas2d db upgrade`)."
        )
    return url


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_item=render_item
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url())
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_item=render_item)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
