"""Paths and limits shared by the app, the CLI and the tests, each overridable by environment."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Folder for the local database and server state (PARALLAX_DATA_DIR, default ./data)."""
    path = Path(os.environ.get("PARALLAX_DATA_DIR", ROOT / "data"))
    return path


def database_url() -> str:
    """The database URL: PARALLAX_DATABASE_URL, else a SQLite file in the data folder."""
    url = os.environ.get("PARALLAX_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{data_dir() / 'parallax.db'}"


def max_prompt_chars() -> int:
    """Longest prompt accepted, in characters (PARALLAX_MAX_PROMPT_CHARS, default 32000)."""
    return int(os.environ.get("PARALLAX_MAX_PROMPT_CHARS", "32000"))


def endpoints_file() -> Path:
    """The shipped endpoint presets."""
    return Path(os.environ.get("PARALLAX_ENDPOINTS", ROOT / "endpoints.toml"))


def user_endpoints_file() -> Path:
    """The user's overrides and additions, beside the shipped file."""
    default = endpoints_file().with_name("endpoints.user.toml")
    return Path(os.environ.get("PARALLAX_USER_ENDPOINTS", default))


def secrets_file() -> Path:
    """Streamlit's secrets file, read by name for API keys when no variable is set."""
    return Path(os.environ.get("PARALLAX_SECRETS", ROOT / ".streamlit" / "secrets.toml"))
