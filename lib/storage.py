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
    a SQLite database and the files beside it, the endpoints files, the secrets file, and the
    embedded server's state in the data folder (its record, locks and log: an output written over
    the record or a lock let a second server start or named a wrong one). Settings that cannot be
    used give none (they are refused before any command runs)."""
    try:
        found = [
            (config.endpoints_file(), "the endpoints file"),
            (config.user_endpoints_file(), "the user's endpoints file"),
            (config.secrets_file(), "the secrets file"),
        ]
        data = config.data_dir()
        url = make_url(config.database_url())
    except (ConfigError, ValueError):
        return []
    server_files = {data / f"local_server.{end}" for end in ("json", "lock", "failed", "log")}
    try:  # a users file and a suite run's log are named by a port and a run: those there now
        server_files |= {*data.glob("local_server.*.users"), *data.glob("suite_run_*.log")}
    except OSError:
        pass
    found += [(path, "a state file of Parallax's embedded server or suite runs") for path in sorted(server_files)]
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        found += [(database, "the database")]
        found += [(Path(f"{database}{end}"), "a file of the database") for end in SQLITE_SIDECARS]
    return found
