"""What every command shares: the consoles, the one way to fail, and safe loading of the
endpoints file and the database (each turns a user's mistake into a message and exit 2)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)
out = Console()


def fail(message: str) -> None:
    """Print a usage error and exit 2."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def load_endpoints_or_fail():
    """The configured endpoints, or exit 2 naming the file, line and problem."""
    from lib.providers.endpoints import EndpointConfigError, load_endpoints

    try:
        return load_endpoints()
    except EndpointConfigError as exc:
        fail(str(exc))


def open_db_or_fail() -> None:
    """Open (and migrate) the database, or exit 2 saying why."""
    from db.engine import DatabaseUnavailable, get_engine

    try:
        get_engine()
    except DatabaseUnavailable as exc:
        fail(str(exc))


def vote_filter_or_fail(
    blind_only: bool, language: Optional[str], since: Optional[str], until: Optional[str], include_leaked: bool
):
    """Vote filters from command-line text, or exit 2 for a bad date or language."""
    from datetime import datetime, timedelta

    from db.repo import VoteFilter

    def day(text: Optional[str], name: str):
        if not text:
            return None
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            fail(f"--{name} must be a date like 2026-11-28, not {text!r}")

    if language not in (None, "en", "zh"):
        fail("--language must be en or zh")
    end = day(until, "until")
    return VoteFilter(
        blind_only=blind_only,
        language=language,
        since=day(since, "since"),
        until=end + timedelta(days=1) if end else None,
        include_leaked=include_leaked,
    )
