"""Queries: every read and write the app, the CLI and the analyses make, in one place."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session, aliased, selectinload

from db.models import Conversation, Exchange, Label, Response, SuitePrompt, Thumb, Vote, utcnow

USABLE = ("ok", "interrupted")


def create_conversation(
    session: Session,
    mode: str = "compare",
    title: str = "",
    meta: dict | None = None,
    suite_run_id: int | None = None,
) -> Conversation:
    """A new, empty conversation."""
    conv = Conversation(mode=mode, title=title[:200], meta=meta or {}, suite_run_id=suite_run_id)
    session.add(conv)
    session.flush()
    return conv


def add_exchange(
    session: Session,
    conversation_id: int,
    prompt: str,
    system_prompt: str | None = None,
    language: str | None = None,
    suite_prompt_id: int | None = None,
    sample_index: int | None = None,
) -> Exchange:
    """Append a user turn to a conversation (turn index is the next free one)."""
    turn = session.scalar(
        select(func.coalesce(func.max(Exchange.turn_index) + 1, 0)).where(Exchange.conversation_id == conversation_id)
    )
    exchange = Exchange(
        conversation_id=conversation_id,
        turn_index=turn,
        prompt=prompt,
        system_prompt=system_prompt or None,
        language=language,
        suite_prompt_id=suite_prompt_id,
        sample_index=sample_index,
    )
    session.add(exchange)
    conv = session.get(Conversation, conversation_id)
    if conv is not None:
        conv.updated_at = utcnow()
        if not conv.title:
            conv.title = prompt.strip().splitlines()[0][:200] if prompt.strip() else ""
    session.flush()
    return exchange


def add_response(session: Session, exchange_id: int, slot: str, endpoint, outcome) -> Response:
    """Store one finished (or failed) answer with a snapshot of the endpoint that gave it."""
    row = Response(
        exchange_id=exchange_id,
        slot=slot,
        endpoint_id=endpoint.id,
        display_name=endpoint.name,
        model=endpoint.model,
        base_host=endpoint.host,
        params=dict(outcome.params),
        text=outcome.text,
        reasoning=outcome.reasoning or None,
        status=outcome.status,
        error_kind=outcome.error_kind,
        error_message=outcome.error_message,
        finish_reason=outcome.finish_reason,
        latency_ms=outcome.latency_ms,
        ttft_ms=outcome.ttft_ms,
        input_tokens=outcome.input_tokens,
        output_tokens=outcome.output_tokens,
        tokens_counted=outcome.tokens_counted,
        cost_usd=outcome.cost_usd,
    )
    session.add(row)
    session.flush()
    return row


def history_messages(session: Session, conversation_id: int, slot: str, before_turn: int | None = None) -> list[dict]:
    """The earlier turns of one column as chat messages, rebuilt from the database.

    Each exchange contributes the user prompt and that column's latest usable answer; turns the
    column has no answer for are left out, so the history never holds two user turns in a row."""
    query = (
        select(Exchange)
        .where(Exchange.conversation_id == conversation_id)
        .options(selectinload(Exchange.responses))
        .order_by(Exchange.turn_index)
    )
    if before_turn is not None:
        query = query.where(Exchange.turn_index < before_turn)
    messages: list[dict] = []
    for exchange in session.scalars(query):
        answers = [r for r in exchange.responses if r.slot == slot and r.status in USABLE and r.text]
        if answers:
            messages.append({"role": "user", "content": exchange.prompt})
            messages.append({"role": "assistant", "content": answers[-1].text})
    return messages


def load_conversation(session: Session, conversation_id: int) -> Conversation | None:
    """A conversation with its exchanges and responses loaded."""
    return session.scalar(
        select(Conversation)
        .where(Conversation.id == conversation_id)
        .options(selectinload(Conversation.exchanges).selectinload(Exchange.responses).selectinload(Response.labels))
    )


def remember_slots(session: Session, conversation_id: int, slots: list[str]) -> None:
    """Keep the order the columns were chosen in, so they render in that order every time."""
    conv = session.get(Conversation, conversation_id)
    known = list(conv.meta.get("slots", []))
    if any(slot not in known for slot in slots):
        conv.meta = {**conv.meta, "slots": known + [slot for slot in slots if slot not in known]}


def conversation_slots(conv: Conversation) -> list[str]:
    """The columns of a conversation, in the order they were chosen (then any others)."""
    slots: list[str] = [s for s in conv.meta.get("slots", [])]
    for exchange in conv.exchanges:
        for response in exchange.responses:
            if response.slot not in slots:
                slots.append(response.slot)
    return slots


def _fts_ready(session: Session) -> bool:
    if session.bind.dialect.name != "sqlite":
        return False
    return bool(session.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'search_fts'")).first())


def search_conversation_ids(session: Session, query: str):
    """A subquery of conversation ids whose prompts or answers contain `query`.

    Uses the FTS5 trigram index when it exists and the query is long enough for it (3+
    characters), else a LIKE scan."""
    query = query.strip()
    if len(query) >= 3 and _fts_ready(session):
        phrase = '"' + query.replace('"', '""') + '"'
        return (
            select(text("conversation_id"))
            .select_from(text("search_fts"))
            .where(text("search_fts MATCH :q"))
            .params(q=phrase)
        )
    pattern = f"%{query.replace('%', '').replace('_', '')}%"
    in_prompts = select(Exchange.conversation_id).where(Exchange.prompt.ilike(pattern))
    in_answers = (
        select(Exchange.conversation_id)
        .join(Response, Response.exchange_id == Exchange.id)
        .where(Response.text.ilike(pattern))
    )
    return in_prompts.union(in_answers)


def list_conversations(
    session: Session,
    query: str = "",
    mode: str | None = None,
    label: str | None = None,
    page: int = 0,
    per_page: int = 20,
) -> tuple[list[dict], int]:
    """One page of conversations, newest first, with a total count for paging."""
    stmt = select(Conversation)
    if query.strip():
        stmt = stmt.where(Conversation.id.in_(search_conversation_ids(session, query)))
    if mode:
        stmt = stmt.where(Conversation.mode == mode)
    if label:
        # the effective label: a human one where it exists, else the detector's (see effective_label)
        corrected = select(Label.response_id).where(Label.source == "human")
        counts = or_(
            Label.source == "human",
            and_(Label.source.like("parallax-deflection%"), Label.response_id.not_in(corrected)),
        )
        labelled = select(Exchange.conversation_id).join(Response).join(Label).where(Label.label == label, counts)
        stmt = stmt.where(Conversation.id.in_(labelled))
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = session.scalars(
        stmt.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).offset(page * per_page).limit(per_page)
    ).all()
    ids = [c.id for c in rows]
    counts = (
        dict(
            session.execute(
                select(Exchange.conversation_id, func.count())
                .where(Exchange.conversation_id.in_(ids))
                .group_by(Exchange.conversation_id)
            ).all()
        )
        if ids
        else {}
    )
    models: dict[int, set] = {}
    if ids:
        for cid, name in session.execute(
            select(Exchange.conversation_id, Response.display_name)
            .join(Response)
            .where(Exchange.conversation_id.in_(ids))
            .distinct()
        ):
            models.setdefault(cid, set()).add(name)
    out = [
        {
            "id": c.id,
            "mode": c.mode,
            "title": c.title,
            "updated_at": c.updated_at,
            "turns": counts.get(c.id, 0),
            "models": sorted(models.get(c.id, set())) if c.mode != "arena" or c.meta.get("revealed") else [],
        }
        for c in rows
    ]
    return out, total or 0


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
    """Record a preference between two answers to the same exchange."""
    if winner not in ("a", "b", "tie", "both_bad"):
        raise ValueError(f"winner must be a, b, tie or both_bad, not {winner!r}")
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


def set_label(
    session: Session, response_id: int, label: str, source: str, confidence: float = 1.0, rule: str = ""
) -> Label:
    """Store (or replace) the label one source gives a response."""
    row = session.scalar(select(Label).where(Label.response_id == response_id, Label.source == source))
    if row is None:
        row = Label(response_id=response_id, source=source)
        session.add(row)
    row.label, row.confidence, row.rule, row.created_at = label, confidence, rule, utcnow()
    session.flush()
    return row


def effective_label(labels: Iterable[Label]) -> Label | None:
    """The label that counts: a human one, else the detector's newest, else any other (a judge)."""

    def rank(lab: Label) -> tuple:
        priority = 2 if lab.source == "human" else 1 if lab.source.startswith("parallax-deflection") else 0
        return priority, lab.created_at or datetime.min, lab.id or 0

    labels = list(labels)
    return max(labels, key=rank) if labels else None


def responses_without_label(session: Session, source: str, limit: int | None = None) -> list[Response]:
    """Responses that have no label from `source` yet, oldest first."""
    labelled = select(Label.response_id).where(Label.source == source)
    stmt = (
        select(Response)
        .options(selectinload(Response.exchange))
        .where(Response.id.not_in(labelled))
        .order_by(Response.id)
    )
    if limit:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def vote_for_exchange(session: Session, exchange_id: int) -> Vote | None:
    """The first vote recorded on an exchange, if any."""
    return session.scalars(select(Vote).where(Vote.exchange_id == exchange_id).order_by(Vote.id)).first()


@dataclass
class VoteFilter:
    """Which votes count: blind only, language, date range, identity leaks, suite topic."""

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


def _language_and_dates(stmt, f: VoteFilter, created_at):
    """The filter's language (of the exchange) and date range (on `created_at`)."""
    if f.language:
        stmt = stmt.where(Exchange.language == f.language)
    if f.since:
        stmt = stmt.where(created_at >= f.since)
    if f.until:
        stmt = stmt.where(created_at < f.until)
    return stmt


def _vote_query(f: VoteFilter, columns=None):
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
    """(endpoint a, endpoint b, winner) for the leaderboard, without loading texts."""
    stmt = _vote_query(f, columns=lambda ra, rb: (ra.endpoint_id, rb.endpoint_id, Vote.winner))
    return [tuple(row) for row in session.execute(stmt)]


def iter_thumbs(session: Session, f: VoteFilter, batch: int = 1000) -> Iterator[tuple]:
    """(thumb, exchange, response) for single-answer ratings that pass the language/date filter."""
    stmt = (
        select(Thumb, Exchange, Response)
        .join(Response, Response.id == Thumb.response_id)
        .join(Exchange, Exchange.id == Response.exchange_id)
        .order_by(Thumb.id)
    )
    stmt = _language_and_dates(stmt, f, Thumb.created_at)
    yield from session.execute(stmt.execution_options(yield_per=batch))


def vote_data_version(session: Session) -> tuple[int, int]:
    """(count, newest id) of votes: changes whenever a vote is added or removed."""
    return tuple(session.execute(select(func.count(Vote.id), func.coalesce(func.max(Vote.id), 0))).one())


def endpoint_names(session: Session) -> dict[str, str]:
    """The display name last stored for each endpoint id."""
    rows = session.execute(select(Response.endpoint_id, Response.display_name).order_by(Response.id))
    return {endpoint_id: name for endpoint_id, name in rows}


def reveal_battle(session: Session, conversation_id: int) -> None:
    """Mark a blind battle as voted, so history may show its model names."""
    conv = session.get(Conversation, conversation_id)
    conv.meta = {**conv.meta, "revealed": True}


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


@dataclass
class AnswerScope:
    """Which stored answers an analysis looks at."""

    suite_run_id: int | None = None
    models: list[str] | None = None
    language: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def key(self) -> tuple:
        """A hashable form for caches."""
        return (self.suite_run_id, tuple(self.models or ()), self.language, self.since, self.until)


def scope_answers(session: Session, scope: AnswerScope) -> list[dict]:
    """Every answer in scope with its prompt, model, language, suite topic and effective label."""
    stmt = (
        select(
            Response.id,
            Response.endpoint_id,
            Response.display_name,
            Response.text,
            Response.status,
            Exchange.id,
            Exchange.prompt,
            Exchange.language,
            Exchange.suite_prompt_id,
            SuitePrompt.topic,
            SuitePrompt.twin_key,
            SuitePrompt.kind,
            SuitePrompt.key,
            SuitePrompt.control_key,
            Conversation.suite_run_id,
        )
        .join(Exchange, Exchange.id == Response.exchange_id)
        .join(Conversation, Conversation.id == Exchange.conversation_id)
        .outerjoin(SuitePrompt, SuitePrompt.id == Exchange.suite_prompt_id)
        .order_by(Response.id)
    )
    if scope.suite_run_id is not None:
        stmt = stmt.where(Conversation.suite_run_id == scope.suite_run_id)
    if scope.models:
        stmt = stmt.where(Response.endpoint_id.in_(scope.models))
    if scope.language:
        stmt = stmt.where(Exchange.language == scope.language)
    if scope.since:
        stmt = stmt.where(Response.created_at >= scope.since)
    if scope.until:
        stmt = stmt.where(Response.created_at < scope.until)
    rows = [
        {
            "response_id": r[0],
            "model": r[1],
            "model_name": r[2],
            "text": r[3] or "",
            "status": r[4],
            "exchange_id": r[5],
            "prompt": r[6],
            "language": r[7] or "en",
            "suite_prompt_id": r[8],
            "topic": r[9] or "(chat)",
            "twin_key": r[10],
            "kind": r[11] or "chat",
            "prompt_key": r[12],
            "control_key": r[13],
            "suite_run_id": r[14],
            "label": None,
        }
        for r in session.execute(stmt)
    ]
    by_id = {row["response_id"]: row for row in rows}
    ids = list(by_id)
    labels: dict[int, list[Label]] = {}
    for start in range(0, len(ids), 900):
        for lab in session.scalars(select(Label).where(Label.response_id.in_(ids[start : start + 900]))):
            labels.setdefault(lab.response_id, []).append(lab)
    for rid, labs in labels.items():
        by_id[rid]["label"] = effective_label(labs).label
    return rows


def answers_data_version(session: Session) -> tuple:
    """Changes whenever answers or labels are added or corrected (a cache key for analyses)."""
    responses = session.execute(select(func.count(Response.id), func.max(Response.id))).one()
    labels = session.execute(select(func.count(Label.id), func.max(Label.created_at))).one()
    return tuple(responses) + (labels[0], str(labels[1]))


def list_suite_runs(session: Session) -> list[dict]:
    """Suite runs, newest first, for scope pickers."""
    from db.models import Suite, SuiteRun

    rows = session.execute(
        select(SuiteRun, Suite.name).join(Suite, Suite.id == SuiteRun.suite_id).order_by(SuiteRun.id.desc())
    )
    return [
        {
            "id": run.id,
            "suite": name,
            "status": run.status,
            "endpoints": run.endpoints,
            "samples": run.samples,
            "created_at": run.created_at,
        }
        for run, name in rows
    ]


def suite_names(session: Session) -> list[str]:
    """Names of the stored suites."""
    from db.models import Suite

    return sorted(set(session.scalars(select(Suite.name))))
