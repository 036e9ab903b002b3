"""Paths, limits and settings shared by the app, the CLI and the tests, each overridable by an
environment variable. A value that cannot be used is a ConfigError naming the variable; an
empty variable counts as unset. `check_environment` checks every PARALLAX_ setting the code
reads, so each entry point can refuse a bad one up front (exit 2, or a message on the page)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MAX_PROMPT_CHARS = 32_000


class ConfigError(ValueError):
    """An environment setting that cannot be used; the message names the variable and a fix."""


def _env(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    value = os.environ.get(name)
    return value if value and value.strip() else None


def _path(name: str, default: Path) -> Path:
    value = _env(name)
    if value is None:
        return Path(default)
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ConfigError(f"{name} contains a control character; give a plain path")
    return Path(value)


def _whole_number(name: str, default: int | None, minimum: int = 1) -> int | None:
    value = _env(name)
    if value is None:
        return default
    try:
        number = int(value.strip().replace("_", ""))
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise ConfigError(f"{name} must be a whole number of at least {minimum}, not {value!r}")
    return number


def data_dir() -> Path:
    """Folder for the local database and server state (PARALLAX_DATA_DIR, default ./data)."""
    path = _path("PARALLAX_DATA_DIR", ROOT / "data")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"PARALLAX_DATA_DIR is {path}, which is not a folder")
    return path


def database_url() -> str:
    """The database URL: PARALLAX_DATABASE_URL, else a SQLite file in the data folder.

    ConfigError when the URL cannot be parsed, names no database type SQLAlchemy knows, or is
    an in-memory SQLite database (every answer would be lost when the process ends). The
    message never repeats the URL, which may hold a password."""
    url = _env("PARALLAX_DATABASE_URL")
    if url is None:
        return f"sqlite:///{data_dir() / 'parallax.db'}"
    check_database_url(url)
    return url


def check_database_url(url: str) -> None:
    """ConfigError (naming PARALLAX_DATABASE_URL, not the URL) for a URL that cannot be used."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    example = "use e.g. sqlite:////abs/path/parallax.db or postgresql+psycopg://user@host/db"
    name = "PARALLAX_DATABASE_URL"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"{name} is not a usable database URL (it cannot be parsed); {example}") from None
    try:
        parsed.get_dialect()  # an unknown database type or driver name fails here
    except NoSuchModuleError:
        unknown = parsed.drivername
        raise ConfigError(f"{name} names a database type SQLAlchemy does not know ({unknown!r}); {example}") from None
    except ValueError:  # a port that is not a number, say
        raise ConfigError(f"{name} is not a usable database URL (it cannot be parsed); {example}") from None
    except ImportError as exc:  # a known database whose driver is not installed
        raise ConfigError(f"{name} needs a driver that is not installed ({exc}); {example}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(
            f"{name} names an in-memory SQLite database: every answer would be lost when the process ends; {example}"
        )


_SECRET_PARAMS = ("password", "passwd", "pwd", "pass", "secret", "token", "key", "sslpassword", "auth")


def _secret_param(name: str) -> bool:
    """Whether a database URL's query parameter holds a secret (`password`, `sslpassword`, `...token`)."""
    return any(word in name.lower() for word in _SECRET_PARAMS)


def database_secrets(url: str) -> list[str]:
    """The secret values in a database URL: the password before the host and the values of query
    parameters that hold one (`?password=`, `sslpassword=`, `...token=`, `...key=`)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - an unparseable URL has no secrets we could name
        return []
    found = [parsed.password] if parsed.password else []
    for name, value in parsed.query.items():
        if _secret_param(name):
            found += [value] if isinstance(value, str) else list(value)
    return [str(s) for s in found if s]


def display_database_url(url: str) -> str:
    """The database URL for messages and pages: the password and secret query values as ***."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - a display helper must not fail
        return "(unreadable database URL)"
    query = {k: ("***" if _secret_param(k) else v) for k, v in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def hide_database_secrets(text: str, url: str) -> str:
    """`text` (a driver's error message) with the database URL's secret values replaced by ***."""
    for secret in sorted(database_secrets(url), key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def max_prompt_chars() -> int:
    """Longest prompt accepted, in characters (PARALLAX_MAX_PROMPT_CHARS, default 32000)."""
    return _whole_number("PARALLAX_MAX_PROMPT_CHARS", DEFAULT_MAX_PROMPT_CHARS)


def endpoints_file() -> Path:
    """The shipped endpoint presets."""
    return _path("PARALLAX_ENDPOINTS", ROOT / "endpoints.toml")


def user_endpoints_file() -> Path:
    """The user's overrides and additions, beside the shipped file."""
    default = endpoints_file().with_name("endpoints.user.toml")
    return _path("PARALLAX_USER_ENDPOINTS", default)


def secrets_file() -> Path:
    """Streamlit's secrets file, read by name for API keys when no variable is set."""
    return _path("PARALLAX_SECRETS", ROOT / ".streamlit" / "secrets.toml")


def _not_a_file(name: str, path: Path, must_exist: bool) -> None:
    try:
        exists = path.exists()
    except OSError as exc:  # a name too long for the file system ("File name too long") was a traceback
        raise ConfigError(f"{name} is {str(path)[:200]!r}, which cannot be used ({exc.strerror})") from None
    if must_exist and not exists:
        raise ConfigError(f"{name} is {path}, which does not exist")
    if exists and not path.is_file():
        raise ConfigError(f"{name} is {path}, which is not a file")


def _check_secrets(path: Path) -> None:
    """ConfigError naming the file and line when the secrets file is not UTF-8 TOML (keys and
    sign-in settings are read from it by name; a broken file would read as 'no key')."""
    import tomllib

    if not path.is_file():
        return
    data = path.read_bytes()
    try:
        tomllib.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text; save the secrets file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except ValueError:  # an integer of more than 4,300 digits (Python refuses to read it)
        raise ConfigError(f"{path}: holds a number too long to read") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None


def check_environment() -> None:
    """Check every PARALLAX_ setting the code reads; the first problem as a ConfigError."""
    data_dir()
    database_url()
    max_prompt_chars()
    _not_a_file("PARALLAX_ENDPOINTS", endpoints_file(), must_exist=True)
    _not_a_file("PARALLAX_USER_ENDPOINTS", user_endpoints_file(), must_exist=False)
    _not_a_file("PARALLAX_SECRETS", secrets_file(), must_exist=False)
    _check_secrets(secrets_file())
    if (gguf := _env("PARALLAX_GGUF")) is not None:
        _not_a_file("PARALLAX_GGUF", _path("PARALLAX_GGUF", Path(gguf)), must_exist=True)
    _whole_number("PARALLAX_LLAMA_THREADS", None)
    _whole_number("PARALLAX_ANALYSIS_THREADS", None)
    if (server := _env("PARALLAX_LLAMA_SERVER")) is not None and server != "off":
        path = _path("PARALLAX_LLAMA_SERVER", Path(server))
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"PARALLAX_LLAMA_SERVER must be 'off' or an executable llama-server file, not {server!r}")
    if (local := _env("PARALLAX_LOCAL_URL")) is not None:
        parsed = urlparse(local)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(
                f"PARALLAX_LOCAL_URL must be an http:// URL such as http://127.0.0.1:8765/v1, not {local!r}"
            )
    _path("PARALLAX_EMBEDDER", Path("."))  # any model name or folder; only control characters are refused
