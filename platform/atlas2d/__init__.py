"""atlas2d: a PostgreSQL-backed platform for 2D materials and machine-learned force fields."""

from __future__ import annotations

__version__ = "0.1.0"
