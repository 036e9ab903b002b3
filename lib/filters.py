"""Filters from what a user picks (days, language, models) to the query filters of db/: the one
place where inclusive days become a half-open datetime range, for every page and the CLI."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from db.answers import AnswerScope
from db.vocab import LANGUAGES
from db.votes import VoteFilter

__all__ = ["AnswerScope", "FilterError", "VoteFilter", "answer_scope", "day_range", "parse_day", "vote_filter"]


class FilterError(ValueError):
    """A filter value a user can fix (a date that is not a date, an unknown language)."""


def parse_day(text: str | None, name: str) -> date | None:
    """A YYYY-MM-DD day from text (None for empty); FilterError naming the option otherwise."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise FilterError(f"--{name} must be a date like 2026-11-28, not {text!r}") from None


def day_range(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """Inclusive days [first, last] as a half-open datetime range [since, until)."""
    since = datetime.combine(first, time.min) if first else None
    until = datetime.combine(last, time.min) + timedelta(days=1) if last else None
    return since, until


def _language(language: str | None) -> str | None:
    if language in (None, "", "any"):
        return None
    if language not in LANGUAGES:
        raise FilterError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    return language


def vote_filter(
    *,
    blind_only: bool = False,
    include_leaked: bool = False,
    language: str | None = None,
    first: date | None = None,
    last: date | None = None,
    topic: str | None = None,
) -> VoteFilter:
    """Which votes count, from a page's or the CLI's choices (language 'any' or None = all)."""
    since, until = day_range(first, last)
    return VoteFilter(
        blind_only=blind_only,
        include_leaked=include_leaked,
        language=_language(language),
        since=since,
        until=until,
        topic=None if topic in (None, "", "any") else topic,
    )


def answer_scope(
    *,
    suite_run_id: int | None = None,
    endpoint_ids: list[str] | None = None,
    language: str | None = None,
    first: date | None = None,
    last: date | None = None,
) -> AnswerScope:
    """Which stored answers an analysis looks at, from a page's or the CLI's choices."""
    since, until = day_range(first, last)
    return AnswerScope(
        suite_run_id=suite_run_id or None,
        endpoint_ids=list(endpoint_ids) if endpoint_ids else None,
        language=_language(language),
        since=since,
        until=until,
    )
