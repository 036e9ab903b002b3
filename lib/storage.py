"""The database and settings as the pages and the CLI see them: check the environment, open
(and migrate) the database, and name it safely."""

from __future__ import annotations

import re
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


# the embedded server's record, lock, failure note, log and users files, and suite runs' logs:
# in the data folder, named by a port or a run that may not exist yet
# in any case: on macOS's and Windows' file systems LOCAL_SERVER.JSON is the same file
STATE_FILE = re.compile(r"local_server\.(?:json|lock|failed|log|[0-9]+\.users)|suite_run_[0-9]+\.log", re.I)
STATE_FILE_WHAT = "a state file of Parallax's embedded server or suite runs"


def state_file_clash(path: Path) -> str | None:
    """A message when `path` is in the data folder at a name Parallax keeps its own state under
    (STATE_FILE), whether or not that file exists yet (a future run's log, a folder made there,
    broke the Suites page); else None."""
    try:
        data = config.data_dir()
        here = path.parent.resolve() == data.resolve()
    except (ConfigError, OSError, RuntimeError):
        return None
    if here and STATE_FILE.fullmatch(path.name):
        return (
            f"{path} is {STATE_FILE_WHAT}: writing the output there would destroy it; "
            "give another output path (nothing was written)"
        )
    return None


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
    try:  # those there now (a link to one elsewhere is caught by file identity); see state_file_clash
        server_files = sorted(path for path in data.iterdir() if STATE_FILE.fullmatch(path.name))
    except OSError:
        server_files = []
    found += [(path, STATE_FILE_WHAT) for path in server_files]
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        found += [(database, "the database")]
        found += [(Path(f"{database}{end}"), "a file of the database") for end in SQLITE_SIDECARS]
    return found
