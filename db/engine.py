"""Engine and sessions: SQLite (WAL, foreign keys, busy timeout) by default, any SQLAlchemy URL
by PARALLAX_DATABASE_URL; Alembic migrations are applied when an engine is first opened.

A SQLite database file gets a reserve beside it (`<database>-reserve`, RESERVE_BYTES of allocated
space): when the disk fills up, a worker deletes it to record why its run failed (see
`release_reserve`); the next engine opened on the database puts it back when there is room."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from db import config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


class DatabaseUnavailable(RuntimeError):
    """The configured database cannot be opened or created."""


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _prepare_sqlite_path(url: str) -> None:
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    path = Path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUnavailable(f"cannot create the database folder {path.parent}: {exc.strerror}") from exc
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise DatabaseUnavailable(f"the database {path} is not writable")


RESERVE_BYTES = 1 << 20  # room to record a failure on a full disk (a few WAL frames; ample)


def _reserve_path(url: str) -> Path | None:
    """Where the reserve of a SQLite database file lies; None for other databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(f"{parsed.database}-reserve")


def _ensure_reserve(url: str) -> None:
    """Allocate the reserve if it is missing; best effort (a full disk leaves it missing)."""
    path = _reserve_path(url)
    if path is None or path.exists():
        return
    try:
        with open(path, "wb") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, RESERVE_BYTES)
            except OSError:  # a file system without fallocate: write the bytes
                f.write(b"\0" * RESERVE_BYTES)
                f.flush()
                os.fsync(f.fileno())
    except OSError:
        path.unlink(missing_ok=True)


def release_reserve(url: str | None = None) -> bool:
    """Delete the reserve of the configured (or given) SQLite database, freeing RESERVE_BYTES so
    that a failure can still be recorded on a full disk; False when there was none to release."""
    try:
        path = _reserve_path(url or config.database_url())
    except (config.ConfigError, ArgumentError):
        return False
    if path is None or not path.exists():
        return False
    path.unlink(missing_ok=True)
    return True


MIGRATION_LOCK = 7_351_902_113  # PostgreSQL advisory lock key: one migrating process at a time


def migrate(engine: Engine) -> None:
    """Bring the schema of `engine` to the newest Alembic revision. Processes that start at the
    same moment (the app and a CLI, two team members) take turns: an advisory lock on
    PostgreSQL, a lock file beside the database on SQLite; the second finds the schema current."""
    with _migration_lock(engine):
        _upgrade(engine)


def _upgrade(engine: Engine) -> None:
    """The migration itself; the caller holds the migration lock."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def get_engine(url: str | None = None) -> Engine:
    """The engine for `url` (default: the configured database), migrated on first use."""
    try:
        url = url or config.database_url()
    except config.ConfigError as exc:
        raise DatabaseUnavailable(str(exc)) from None
    with _lock:
        if url in _engines:
            return _engines[url]
        try:
            is_sqlite = make_url(url).get_backend_name() == "sqlite"
            if is_sqlite:
                _prepare_sqlite_path(url)
            kwargs = {"connect_args": {"timeout": 10, "check_same_thread": False}} if is_sqlite else {}
            engine = create_engine(url, **kwargs)
        except (ArgumentError, ImportError, ValueError) as exc:
            # the parser's message repeats the URL, password included: name the problem only
            why = "it cannot be parsed" if isinstance(exc, ArgumentError) else f"{type(exc).__name__}: {exc}"
            raise DatabaseUnavailable(
                f"PARALLAX_DATABASE_URL is not a usable database URL ({why}); "
                "use e.g. sqlite:////abs/path/parallax.db or postgresql+psycopg://user@host/db"
            ) from None
        if is_sqlite:
            event.listen(engine, "connect", _sqlite_pragmas)
        # the first connection to a new SQLite file switches it to WAL, which another process's
        # migration would refuse at once ("database is locked"): opening waits its turn too
        with _migration_lock(engine):
            try:
                with engine.connect():  # can we reach it at all? (a migration bug must not read as this)
                    pass
            except Exception as exc:
                engine.dispose()
                cause = getattr(exc, "orig", None) or exc  # the driver's words, not SQLAlchemy's link line
                why = config.hide_database_secrets((str(cause).strip().splitlines() or [type(cause).__name__])[0], url)
                raise DatabaseUnavailable(
                    f"cannot open the database {config.display_database_url(url)}: {why}"
                ) from None
            try:
                _upgrade(engine)
            except Exception:
                engine.dispose()
                raise  # a migration error keeps its own message and traceback
        if is_sqlite:
            _ensure_reserve(url)
        _engines[url] = engine
        return engine


def dispose_all() -> None:
    """Close every cached engine (tests switch databases between cases)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope(url: str | None = None, beside: Session | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error: on the database of `url`
    (default: the configured one), or on the same engine as the open session `beside` — a short
    write of its own while that session goes on reading (SQLite holds its write lock only for
    this transaction)."""
    factory = sessionmaker(beside.get_bind() if beside is not None else get_engine(url), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
