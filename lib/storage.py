"""The database and settings as the pages and the CLI see them: check the environment, open
(and migrate) the database, and name it safely."""

from __future__ import annotations

from db import config
from db.config import ConfigError
from db.engine import DatabaseUnavailable, get_engine

__all__ = ["ConfigError", "DatabaseUnavailable", "check_settings", "database_label", "open_database"]


def check_settings() -> None:
    """Check every PARALLAX_ environment setting; ConfigError names the first bad one."""
    config.check_environment()


def open_database() -> None:
    """Open and migrate the configured database; DatabaseUnavailable says why it cannot be used."""
    get_engine()


def database_label() -> str:
    """The configured database URL with any password hidden, for display."""
    try:
        return config.display_database_url(config.database_url())
    except ConfigError:
        return "(unusable PARALLAX_DATABASE_URL)"
