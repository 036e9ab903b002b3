"""The database as the pages and the CLI see it: open (and migrate) it, and name it safely."""

from __future__ import annotations

from db import config
from db.engine import DatabaseUnavailable, get_engine
from lib.present import safe_database_label

__all__ = ["DatabaseUnavailable", "database_label", "open_database"]


def open_database() -> None:
    """Open and migrate the configured database; DatabaseUnavailable says why it cannot be used."""
    get_engine()


def database_label() -> str:
    """The configured database URL with any password hidden, for display."""
    return safe_database_label(config.database_url())
