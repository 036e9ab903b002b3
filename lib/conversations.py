"""Conversations as the pages and the CLI see them: typed, detached views of stored turns and
answers, and the actions on them (list and search the history, open one, vote between two
answers, rate one answer, correct a label)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from db import conversations, labels, votes
from db.conversations import ConversationSummary
from db.engine import session_scope
from db.vocab import Mode, Status, Winner
from lib.deflection.labelling import save_human_label, takes_human_label
from lib.present import cli_hint, plural
from lib.providers.signals import budget_note

__all__ = ["ConversationSummary", "save_human_label", "takes_human_label"]


@dataclass(frozen=True)
class LabelView:
    """The effective label of an answer."""

    label: str
    source: str
    confidence: float
    rule: str = ""  # the detector's rule; ends "+other-language" where the label is a guess


@dataclass(frozen=True)
class ResponseView:
    """One stored answer with what a page shows of it."""

    id: int
    exchange_id: int
    slot: str
    endpoint_id: str
    display_name: str
    text: str
    reasoning: str | None
    status: str
    error_kind: str | None
    error_message: str | None
    finish_reason: str | None
    ttft_ms: float | None
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    tokens_counted: bool
    cost_usd: float | None
    label: LabelView | None
    note: str | None = None  # what to do when the token budget cut the answer (signals.budget_note)

    @property
    def failed(self) -> bool:
        """True when the answer did not complete (error, block or interruption)."""
        return self.status != Status.OK


@dataclass(frozen=True)
class ExchangeView:
    """One user turn and every answer to it (retries included), oldest answer first."""

    id: int
    conversation_id: int
    turn_index: int
    prompt: str
    system_prompt: str | None
    language: str | None
    responses: list[ResponseView]

    @property
    def latest(self) -> dict[str, ResponseView]:
        """Each column's latest answer (a retry replaces the earlier one), by slot."""
        return {r.slot: r for r in self.responses}


@dataclass(frozen=True)
class ConversationView:
    """A conversation with its turns, its columns in the order they were chosen, and its vote."""

    id: int
    mode: str
    title: str
    meta: dict
    created_at: datetime
    slots: list[str]
    exchanges: list[ExchangeView] = field(default_factory=list)
    winners: dict[int, str] = field(default_factory=dict)  # exchange id -> winner of its first vote

    @property
    def system_prompt(self) -> str | None:
        """The system prompt of the latest turn that had one (it carries over to the next turn)."""
        return next((e.system_prompt for e in reversed(self.exchanges) if e.system_prompt), None)


def _response_view(r) -> ResponseView:
    label = labels.effective_label(r.labels)
    return ResponseView(
        id=r.id,
        exchange_id=r.exchange_id,
        slot=r.slot,
        endpoint_id=r.endpoint_id,
        display_name=r.display_name,
        text=r.text or "",
        reasoning=r.reasoning,
        status=r.status,
        error_kind=r.error_kind,
        error_message=r.error_message,
        finish_reason=r.finish_reason,
        ttft_ms=r.ttft_ms,
        latency_ms=r.latency_ms,
        input_tokens=r.input_tokens,
        output_tokens=r.output_tokens,
        tokens_counted=bool(r.tokens_counted),
        cost_usd=r.cost_usd,
        label=LabelView(label.label, label.source, label.confidence, label.rule or "") if label else None,
        note=budget_note(r.text, r.reasoning, r.finish_reason, r.output_tokens, _max_tokens(r.params)),
    )


def _max_tokens(params: dict | None) -> int | None:
    params = params or {}
    return params.get("max_tokens") or params.get("max_completion_tokens")


def load(conversation_id: int) -> ConversationView | None:
    """A stored conversation with every turn, answer, effective label and vote; None if absent."""
    with session_scope() as s:
        conv = conversations.load_conversation(s, conversation_id)
        if conv is None:
            return None
        exchanges = [
            ExchangeView(
                id=e.id,
                conversation_id=e.conversation_id,
                turn_index=e.turn_index,
                prompt=e.prompt,
                system_prompt=e.system_prompt,
                language=e.language,
                responses=[_response_view(r) for r in e.responses],
            )
            for e in conv.exchanges
        ]
        found = {e.id: votes.vote_for_exchange(s, e.id) for e in conv.exchanges}
        return ConversationView(
            id=conv.id,
            mode=conv.mode,
            title=conv.title,
            meta=dict(conv.meta or {}),
            created_at=conv.created_at,
            slots=conversations.conversation_slots(conv),
            exchanges=exchanges,
            winners={eid: v.winner for eid, v in found.items() if v is not None},
        )


def history(
    query: str = "", mode: str | None = None, label: str | None = None, page: int = 0, per_page: int = 20
) -> tuple[list[ConversationSummary], int]:
    """One page of the history (newest first) matching a search, a mode and a label; and the total."""
    with session_scope() as s:
        return conversations.list_conversations(s, query, mode, label, page=page, per_page=per_page)


def _named_turn(session, exchange_id: int, error: type[ValueError], in_arena: str) -> tuple:
    """(exchange, conversation) of a turn outside blind battles, else `error` naming why (`in_arena`:
    what to do with a battle's turn instead)."""
    exchange = conversations.get_exchange(session, exchange_id)
    if exchange is None:
        raise error(f"there is no turn (exchange) {exchange_id}")
    conv = conversations.load_conversation(session, exchange.conversation_id)
    if conv.mode == Mode.ARENA:
        raise error(f"turn {exchange_id} is part of a blind battle: {in_arena}")
    return exchange, conv


class RetryError(ValueError):
    """A turn that cannot be asked again (unknown, not the last, blind, imported, no such column)."""


@dataclass(frozen=True)
class RetryPlan:
    """What asking a turn again sends: its prompt and system prompt, to these columns (slots)."""

    conversation_id: int
    prompt: str
    system_prompt: str | None
    slots: list[str]


def retry_plan(exchange_id: int, slots: list[str] | None = None) -> RetryPlan:
    """The retry of turn `exchange_id` for `slots` (endpoint ids), or by default for the columns
    whose latest answer did not finish, as the Compare page's Retry button allows it.

    Raises RetryError when the turn does not exist, is not its conversation's last turn (a later
    turn was asked with this answer in its history), is part of a blind battle (retried in the
    Arena), of an import (kept as it was) or of a suite run (resumed instead), has a vote, names a
    model with no column in that turn, or has no failed answer and no model was named."""
    with session_scope() as s:
        exchange, conv = _named_turn(s, exchange_id, RetryError, "retry it in the Arena")
        if conv.mode == Mode.IMPORTED:
            raise RetryError(f"turn {exchange_id} was imported: imported answers are kept as they were")
        if conv.mode == Mode.SUITE:  # another answer in the item would count twice in the run's rates
            raise RetryError(
                f"turn {exchange_id} is an item of suite run {conv.suite_run_id}: its answers are kept as the run "
                f"stored them; {cli_hint(f'suite resume {conv.suite_run_id}')} retries the run's failed items"
            )
        last = max(conv.exchanges, key=lambda e: e.turn_index)
        if last.id != exchange.id:
            raise RetryError(
                f"turn {exchange_id} is not the last of conversation {conv.id} (that is {last.id}): later turns "
                "were asked with its answers in their history, so only the last turn is asked again"
            )
        if votes.vote_for_exchange(s, exchange_id) is not None:  # it would stay on answers no longer shown
            raise RetryError(
                f"turn {exchange_id} has a vote on its answers: ask again for a new turn (the vote stays with the "
                "answers it was given)"
            )
        latest = {r.slot: r for r in exchange.responses}
        columns = [slot for slot in conversations.conversation_slots(conv) if slot in latest]
        if slots:
            if unknown := [slot for slot in slots if slot not in latest]:
                raise RetryError(
                    f"turn {exchange_id} has no answer from {', '.join(repr(u) for u in unknown[:10])} "
                    f"(its models: {', '.join(columns)})"
                )
            chosen = list(slots)
        else:
            chosen = [slot for slot in columns if latest[slot].status != Status.OK]
            if not chosen:
                raise RetryError(
                    f"every answer of turn {exchange_id} finished; name the model(s) to ask again with -m "
                    f"(its models: {', '.join(columns)})"
                )
        return RetryPlan(conv.id, exchange.prompt, exchange.system_prompt, chosen)


class VoteError(ValueError):
    """A vote that cannot be recorded (unknown turn, not exactly two answers, bad winner)."""


@dataclass(frozen=True)
class RecordedVote:
    """A named vote as stored: its id and the display names of side A (left) and side B."""

    id: int
    a: str
    b: str


def vote(exchange_id: int, winner: str, voter: str = "local") -> RecordedVote:
    """Record a named vote between the two answers of a turn (left is A); returns what was stored.

    Raises VoteError when the turn does not exist, does not have exactly two columns, one of its
    two answers did not finish (error, blocked, interrupted: the leaderboard would leave the vote
    out in silence), is part of a blind battle (those are voted in the Arena), or already has this
    voter's vote."""
    if winner not in Winner.ALL:
        raise VoteError(f"the winner must be one of {', '.join(Winner.ALL)}, not {winner!r}")
    with session_scope() as s:
        exchange, conv = _named_turn(s, exchange_id, VoteError, "vote on it in the Arena")
        earlier = votes.vote_for_exchange(s, exchange_id)
        if earlier is not None and earlier.voter == voter:
            raise VoteError(f"turn {exchange_id} already has your vote ({earlier.winner})")
        latest = {r.slot: r for r in exchange.responses}
        shown = [slot for slot in conversations.conversation_slots(conv) if slot in latest]
        if len(shown) != 2:
            raise VoteError(f"turn {exchange_id} has {plural(len(shown), 'answer')}; a vote needs exactly two")
        a, b = latest[shown[0]], latest[shown[1]]
        if failed := [r for r in (a, b) if r.status != Status.OK]:  # as the pages: a failed side is retried
            what = ", ".join(f"{r.display_name}'s answer failed ({r.status})" for r in failed)
            raise VoteError(
                f"turn {exchange_id}: {what}; a vote needs two finished answers "
                f"(retry that answer: {cli_hint(f'retry {exchange_id}')} or the Compare page; or ask again for a "
                "new turn)"
            )
        stored = votes.add_vote(s, exchange_id, a.id, b.id, winner, blind=False, voter=voter)
        return RecordedVote(stored.id, a.display_name, b.display_name)


def rate_answer(response_id: int, up: bool, voter: str = "local") -> None:
    """Thumbs up or down for one answer (one per voter; a second rating replaces the first)."""
    with session_scope() as s:
        votes.add_thumb(s, response_id, up=up, voter=voter)


def endpoint_names() -> dict[str, str]:
    """The display name last stored for each endpoint id that has answers."""
    with session_scope() as s:
        return conversations.endpoint_names(s)


def endpoint_name_pairs() -> set[tuple[str, str]]:
    """Every (endpoint id, display name) pair stored on an answer (older names of an id too)."""
    with session_scope() as s:
        return conversations.endpoint_name_pairs(s)
