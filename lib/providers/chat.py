"""Asking: validate a prompt, rebuild each column's history, fan out, store every answer.

The compare page, the arena, History's "continue" and `cli.py ask` all go through `ask`, so every
chat answer is stored the same way and labelled right after it finishes. (Suite runs have their
own batched writer in lib/suites/runner.py; both label through lib/deflection/labelling.py.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from db import config, conversations
from db.engine import session_scope
from db.vocab import Mode
from lib.deflection.labelling import LabelJob, label_responses
from lib.providers.endpoints import Endpoint
from lib.providers.fanout import Target, UpdateFn, fan_out
from lib.providers.stream import Outcome, build_messages
from lib.safety import clean_text

if TYPE_CHECKING:
    from lib.deflection import Verdict

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class PromptError(ValueError):
    """A prompt that cannot be sent (empty, too long, unknown conversation...)."""


@dataclass
class Column:
    """One answering column: its slot key and endpoint."""

    slot: str
    endpoint: Endpoint


@dataclass
class AskResult:
    """What one ask produced: ids to find it again and each column's outcome."""

    conversation_id: int
    exchange_id: int
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    response_ids: dict[str, int] = field(default_factory=dict)
    labels: dict[str, Verdict] = field(default_factory=dict)  # the detector's, per slot (with `label`)


def detect_language(text: str) -> str:
    """'zh' when a good share of the letters are CJK characters, else 'en'."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "en"
    return "zh" if len(CJK.findall(text)) / len(letters) > 0.3 else "en"


def validate_prompt(prompt: str | None) -> str:
    """The prompt made valid Unicode (see lib/safety.py), or PromptError when it is empty or over
    the configured limit."""
    prompt = clean_text(prompt)
    if not prompt.strip():
        raise PromptError("the prompt is empty: type a question first")
    limit = config.max_prompt_chars()
    if len(prompt) > limit:
        raise PromptError(
            f"the prompt is {len(prompt):,} characters; the limit is {limit:,} (PARALLAX_MAX_PROMPT_CHARS)"
        )
    return prompt


def _sent_back(endpoint: Endpoint) -> str | None:
    """The message field that carries stored reasoning back to this endpoint, if it asks for it."""
    if not endpoint.quirks.send_reasoning:
        return None
    return endpoint.quirks.reasoning_field or "reasoning_content"


def ask(
    prompt: str,
    columns: list[Column],
    *,
    system: str | None = None,
    conversation_id: int | None = None,
    mode: str = Mode.COMPARE,
    meta: dict | None = None,
    overrides: dict | None = None,
    on_update: UpdateFn | None = None,
    on_stored: Callable[[str, int, Outcome], None] | None = None,
    exchange_id: int | None = None,
    label: bool = True,
    on_start: Callable[[int, int], None] | None = None,
) -> AskResult:
    """Send `prompt` to every column at once and store each answer as it finishes.

    With `exchange_id`, re-asks that existing turn (a retry) instead of adding a new one. Raises
    PromptError for an empty or oversized prompt, no column, an unknown conversation, or one of imported answers.
    `on_start(conversation_id, exchange_id)` is called once the turn is stored, before any
    model is asked, so a caller interrupted mid-stream still knows where the answers went."""
    prompt = validate_prompt(prompt)
    system = clean_text(system) or None
    if not columns:
        raise PromptError("no model selected: pick at least one")
    with session_scope() as session:
        if conversation_id is None:
            conversation_id = conversations.create_conversation(session, mode=mode, meta=meta).id
        elif (existing := conversations.get_conversation(session, conversation_id)) is None:
            raise PromptError(f"there is no conversation {conversation_id}")
        elif existing.mode == Mode.IMPORTED:
            raise PromptError(
                f"conversation {conversation_id} holds imported answers, kept as they were: it cannot be "
                "continued or retried; start a new conversation"
            )
        elif existing.mode == Mode.SUITE:  # another answer or turn would count in the run's rates
            raise PromptError(
                f"conversation {conversation_id} is an item of suite run {existing.suite_run_id}, kept as the run "
                "stored it: it cannot be continued or retried (resuming the run retries its failed items); start a "
                "new conversation"
            )
        conversations.remember_slots(session, conversation_id, [col.slot for col in columns])
        if exchange_id is None:
            exchange = conversations.add_exchange(session, conversation_id, prompt, system, detect_language(prompt))
        else:
            exchange = conversations.get_exchange(session, exchange_id)
            if exchange is None or exchange.conversation_id != conversation_id:
                raise PromptError(f"there is no turn {exchange_id} in conversation {conversation_id}")
        exchange_id, turn = exchange.id, exchange.turn_index
        targets = [
            Target(
                key=col.slot,
                endpoint=col.endpoint,
                messages=build_messages(
                    col.endpoint,
                    system,
                    conversations.history_messages(
                        session, conversation_id, col.slot, before_turn=turn, reasoning_field=_sent_back(col.endpoint)
                    ),
                    prompt,
                ),
                overrides=dict(overrides or {}),
            )
            for col in columns
        ]
    if on_start:
        on_start(conversation_id, exchange_id)
    result = AskResult(conversation_id, exchange_id)

    def store(target: Target, outcome: Outcome) -> None:
        with session_scope() as session:  # stored first, in its own short transaction
            row = conversations.add_response(session, exchange_id, target.key, target.endpoint, outcome)
            result.response_ids[target.key] = row.id
        if label:  # then labelled, outside the write transaction
            verdicts = label_responses([LabelJob(row.id, prompt, outcome.text, outcome.status)])
            if row.id in verdicts:
                result.labels[target.key] = verdicts[row.id]
        if on_stored:
            on_stored(target.key, result.response_ids[target.key], outcome)

    result.outcomes = fan_out(targets, on_update=on_update, on_done=store)
    return result


def check_connection(endpoint: Endpoint) -> Outcome:
    """The test-a-connection action: ask one endpoint for one word (16 tokens at most), store nothing."""
    messages = build_messages(endpoint, None, [], "Reply with one word: hello.")
    return fan_out([Target(endpoint.id, endpoint, messages, {"max_tokens": 16})])[endpoint.id]
