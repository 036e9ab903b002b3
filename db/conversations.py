"""Conversations, their exchanges (user turns) and responses (one model's answer each): writes,
history for the next turn, and the history page's listing and search."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session, selectinload

from db.models import Conversation, Exchange, Label, Response, utcnow
from db.vocab import LabelSource, Mode, Status


def create_conversation(
    session: Session,
    mode: str = Mode.COMPARE,
    title: str = "",
    meta: dict | None = None,
    suite_run_id: int | None = None,
) -> Conversation:
    """A new, empty conversation."""
    conv = Conversation(mode=mode, title=title[:200], meta=meta or {}, suite_run_id=suite_run_id)
    session.add(conv)
    session.flush()
    return conv


def get_conversation(session: Session, conversation_id: int) -> Conversation | None:
    """One conversation row (exchanges not loaded), or None."""
    return session.get(Conversation, conversation_id)


def get_exchange(session: Session, exchange_id: int) -> Exchange | None:
    """One exchange row, or None."""
    return session.get(Exchange, exchange_id)


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


def history_messages(
    session: Session,
    conversation_id: int,
    slot: str,
    before_turn: int | None = None,
    reasoning_field: str | None = None,
) -> list[dict]:
    """The earlier turns of one column as chat messages, rebuilt from the database.

    Each exchange contributes the user prompt and that column's latest answer (a retry replaces
    the earlier one, as on the page) when that answer is usable: ok or interrupted, with text. A
    turn whose latest answer failed, was blocked or is empty is left out together with its user
    message, so roles still alternate. With `reasoning_field`, an assistant turn carries its
    stored reasoning under that key (providers that ask for it back)."""
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
        answers = [r for r in exchange.responses if r.slot == slot]
        latest = answers[-1] if answers else None
        if latest is None or latest.status not in Status.USABLE or not (latest.text or "").strip():
            continue
        answer = {"role": "assistant", "content": latest.text}
        if reasoning_field and latest.reasoning:
            answer[reasoning_field] = latest.reasoning
        messages += [{"role": "user", "content": exchange.prompt}, answer]
    return messages


def load_conversation(session: Session, conversation_id: int) -> Conversation | None:
    """A conversation with its exchanges, responses and labels loaded."""
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
    """The columns of a loaded conversation, in the order they were chosen (then any others)."""
    slots: list[str] = [s for s in conv.meta.get("slots", [])]
    for exchange in conv.exchanges:
        for response in exchange.responses:
            if response.slot not in slots:
                slots.append(response.slot)
    return slots


def reveal_battle(session: Session, conversation_id: int) -> None:
    """Mark a blind battle as voted, so history may show its model names."""
    conv = session.get(Conversation, conversation_id)
    conv.meta = {**conv.meta, "revealed": True}


def endpoint_names(session: Session) -> dict[str, str]:
    """The display name last stored for each endpoint id."""
    rows = session.execute(select(Response.endpoint_id, Response.display_name).order_by(Response.id))
    return {endpoint_id: name for endpoint_id, name in rows}


def endpoint_name_pairs(session: Session) -> set[tuple[str, str]]:
    """Every (endpoint id, display name) pair stored on an answer: an endpoint renamed since keeps
    its older names here."""
    return set(session.execute(select(Response.endpoint_id, Response.display_name).distinct()).tuples())


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


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the history list."""

    id: int
    mode: str
    title: str
    updated_at: datetime
    turns: int
    models: list[str]  # display names; empty for a blind battle not yet voted on


def list_conversations(
    session: Session,
    query: str = "",
    mode: str | None = None,
    label: str | None = None,
    page: int = 0,
    per_page: int = 20,
) -> tuple[list[ConversationSummary], int]:
    """One page of conversations, newest first, with a total count for paging."""
    stmt = select(Conversation)
    if query.strip():
        stmt = stmt.where(Conversation.id.in_(search_conversation_ids(session, query)))
    if mode:
        stmt = stmt.where(Conversation.mode == mode)
    if label:
        # the effective label: a human one where it exists, else the detector's (see labels.effective_label)
        corrected = select(Label.response_id).where(Label.source == LabelSource.HUMAN)
        counts = or_(
            Label.source == LabelSource.HUMAN,
            and_(Label.source.like(f"{LabelSource.DETECTOR}%"), Label.response_id.not_in(corrected)),
        )
        labelled = select(Exchange.conversation_id).join(Response).join(Label).where(Label.label == label, counts)
        stmt = stmt.where(Conversation.id.in_(labelled))
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = session.scalars(
        stmt.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).offset(page * per_page).limit(per_page)
    ).all()
    ids = [c.id for c in rows]
    turns, models = {}, {}
    if ids:
        turns = dict(
            session.execute(
                select(Exchange.conversation_id, func.count())
                .where(Exchange.conversation_id.in_(ids))
                .group_by(Exchange.conversation_id)
            ).all()
        )
        for cid, name in session.execute(
            select(Exchange.conversation_id, Response.display_name)
            .join(Response)
            .where(Exchange.conversation_id.in_(ids))
            .distinct()
        ):
            models.setdefault(cid, set()).add(name)
    out = [
        ConversationSummary(
            id=c.id,
            mode=c.mode,
            title=c.title,
            updated_at=c.updated_at,
            turns=turns.get(c.id, 0),
            models=sorted(models.get(c.id, set())) if c.mode != Mode.ARENA or c.meta.get("revealed") else [],
        )
        for c in rows
    ]
    return out, total or 0
