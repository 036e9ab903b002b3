"""Votes (a preference between two answers) and thumbs (one answer rated up or down): writes,
and the filtered reads the leaderboard and the exports stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from db.models import Conversation, Exchange, Response, SuitePrompt, Thumb, Vote, utcnow
from db.vocab import Mode, Status, Winner


def add_vote(
    session: Session,
    exchange_id: int,
    response_a_id: int,
    response_b_id: int,
    winner: str,
    blind: bool = False,
    identity_leaked: bool = False,
    voter: str = "local",
) -> Vote:
    """Record a preference between two answers to the same exchange; ValueError for a bad winner."""
    if winner not in Winner.ALL:
        raise ValueError(f"winner must be one of {', '.join(Winner.ALL)}, not {winner!r}")
    vote = Vote(
        exchange_id=exchange_id,
        response_a_id=response_a_id,
        response_b_id=response_b_id,
        winner=winner,
        blind=blind,
        identity_leaked=identity_leaked,
        voter=voter,
    )
    session.add(vote)
    session.flush()
    return vote


def add_thumb(session: Session, response_id: int, up: bool, voter: str = "local") -> Thumb:
    """Record (or change) one voter's thumbs up or down for one answer."""
    thumb = session.scalar(select(Thumb).where(Thumb.response_id == response_id, Thumb.voter == voter))
    if thumb is None:
        thumb = Thumb(response_id=response_id, voter=voter)
        session.add(thumb)
    thumb.up, thumb.created_at = up, utcnow()
    session.flush()
    return thumb


def vote_for_exchange(session: Session, exchange_id: int) -> Vote | None:
    """The first vote recorded on an exchange, if any."""
    return session.scalars(select(Vote).where(Vote.exchange_id == exchange_id).order_by(Vote.id)).first()


@dataclass
class VoteFilter:
    """Which votes count: blind only, language, date range [since, until), identity leaks, suite topic."""

    blind_only: bool = False
    language: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_leaked: bool = False
    topic: str | None = None
    suite_id: int | None = None

    def describe(self) -> dict:
        """The filter as plain values, for dataset cards and cache keys."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(self).items()}

    def key(self) -> tuple:
        """A hashable form for caches."""
        return tuple(sorted(vars(self).items()))


def _language_and_dates(stmt, f: VoteFilter, created_at):
    """The filter's language (of the exchange) and date range (on `created_at`)."""
    if f.language:
        stmt = stmt.where(Exchange.language == f.language)
    if f.since:
        stmt = stmt.where(created_at >= f.since)
    if f.until:
        stmt = stmt.where(created_at < f.until)
    return stmt


def _vote_query(f: VoteFilter, columns=None, completed_only: bool = False):
    ra, rb = aliased(Response), aliased(Response)
    stmt = (
        select(*(columns(ra, rb) if columns else (Vote, Exchange, ra, rb)))
        .select_from(Vote)
        .join(Exchange, Exchange.id == Vote.exchange_id)
        .join(ra, ra.id == Vote.response_a_id)
        .join(rb, rb.id == Vote.response_b_id)
    )
    if f.blind_only:
        stmt = stmt.where(Vote.blind.is_(True))
    if completed_only:
        stmt = stmt.where(ra.status == Status.OK, rb.status == Status.OK)
    if not f.include_leaked:
        stmt = stmt.where(Vote.identity_leaked.is_(False))
    stmt = _language_and_dates(stmt, f, Vote.created_at)
    if f.topic or f.suite_id:
        stmt = stmt.join(SuitePrompt, SuitePrompt.id == Exchange.suite_prompt_id)
        if f.topic:
            stmt = stmt.where(SuitePrompt.topic == f.topic)
        if f.suite_id:
            stmt = stmt.where(SuitePrompt.suite_id == f.suite_id)
    return stmt.order_by(Vote.id)


def iter_votes(session: Session, f: VoteFilter, batch: int = 1000) -> Iterator[tuple]:
    """(vote, exchange, response_a, response_b) for every vote that passes the filter, streamed."""
    yield from session.execute(_vote_query(f).execution_options(yield_per=batch))


def vote_battles(session: Session, f: VoteFilter) -> list[tuple[str, str, str]]:
    """(endpoint a, endpoint b, winner) for the leaderboard, without loading texts. Votes where
    either answer failed (error, blocked, interrupted) are left out: a failure is not a loss."""
    stmt = _vote_query(f, columns=lambda ra, rb: (ra.endpoint_id, rb.endpoint_id, Vote.winner), completed_only=True)
    return [tuple(row) for row in session.execute(stmt)]


def _thumb_query(f: VoteFilter, columns):
    stmt = (
        select(*columns)
        .select_from(Thumb)
        .join(Response, Response.id == Thumb.response_id)
        .join(Exchange, Exchange.id == Response.exchange_id)
        .order_by(Thumb.id)
    )
    if f.blind_only:  # only answers rated inside a blind battle (thumbs on named answers are out)
        stmt = stmt.join(Conversation, Conversation.id == Exchange.conversation_id).where(
            Conversation.mode == Mode.ARENA
        )
    return _language_and_dates(stmt, f, Thumb.created_at)


def iter_thumbs(session: Session, f: VoteFilter, batch: int = 1000) -> Iterator[tuple]:
    """(thumb, exchange, response) for single-answer ratings that pass the filter (language,
    dates; with `blind_only`, only answers given in blind battles)."""
    stmt = _thumb_query(f, (Thumb, Exchange, Response))
    yield from session.execute(stmt.execution_options(yield_per=batch))


def thumbed_responses(session: Session, f: VoteFilter) -> set[int]:
    """Ids of the answers that have a thumb passing the filter (to keep one KTO row per answer)."""
    return set(session.scalars(_thumb_query(f, (Thumb.response_id,))))


def vote_data_version(session: Session) -> tuple[int, int]:
    """(count, newest id) of votes: changes whenever a vote is added or removed."""
    return tuple(session.execute(select(func.count(Vote.id), func.coalesce(func.max(Vote.id), 0))).one())


def suite_topics(session: Session) -> list[str]:
    """Topics of stored suite prompts that have at least one vote, for leaderboard filters."""
    stmt = (
        select(SuitePrompt.topic)
        .join(Exchange, Exchange.suite_prompt_id == SuitePrompt.id)
        .join(Vote, Vote.exchange_id == Exchange.id)
        .distinct()
        .order_by(SuitePrompt.topic)
    )
    return [t for t in session.scalars(stmt) if t]
