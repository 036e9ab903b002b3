"""The database and settings as the pages and the CLI see them: check the environment, open
(and migrate) the database, and name it safely."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from db import config
from db.config import ConfigError
from db.engine import DatabaseUnavailable, get_engine

__all__ = ["ConfigError", "DatabaseUnavailable", "check_settings", "database_label", "files_read", "open_database"]
SQLITE_SIDECARS = ("-wal", "-shm", "-journal", "-reserve", ".migrate-lock")  # SQLite's, and db/engine's own


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


def files_read() -> list[tuple[Path, str]]:
    """The files Parallax itself reads, as (path, what it is), so no output is written over one:
    a SQLite database and the files beside it, the endpoints files and the secrets file. Settings
    that cannot be used give none (they are refused before any command runs)."""
    try:
        found = [
            (config.endpoints_file(), "the endpoints file"),
            (config.user_endpoints_file(), "the user's endpoints file"),
            (config.secrets_file(), "the secrets file"),
        ]
        url = make_url(config.database_url())
    except (ConfigError, ValueError):
        return []
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        found += [(database, "the database")]
        found += [(Path(f"{database}{end}"), "a file of the database") for end in SQLITE_SIDECARS]
    return found
