"""The real embedded model: SmolLM2 served by llama.cpp, reached through the same client code."""

import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import Exchange, Response
from lib.providers.chat import Column, ask
from lib.providers.endpoints import load_endpoints

pytestmark = pytest.mark.integration


def test_two_embedded_endpoints_stream_concurrently_and_are_stored(embedded):
    endpoints = load_endpoints()
    columns = [
        Column("smollm2", endpoints["smollm2"]),
        Column("smollm2-guarded", endpoints["smollm2-guarded"]),
    ]
    updates: dict[str, int] = {}
    result = ask(
        "What is the capital of France?",
        columns,
        overrides={"max_tokens": 40},
        on_update=lambda t, s: updates.__setitem__(t.key, updates.get(t.key, 0) + 1),
    )
    assert all(o.status == "ok" and o.text.strip() for o in result.outcomes.values())
    assert all(count > 1 for count in updates.values()), "answers should arrive in pieces"
    with session_scope() as s:
        rows = {r.slot: r for r in s.scalars(select(Response))}
    for row in rows.values():
        assert row.output_tokens and row.tokens_counted  # llama.cpp streams no usage chunk
        assert row.input_tokens and row.input_tokens > 20  # counted by its tokenizer (ChatML + prompt)
        assert row.output_tokens <= 40 and row.ttft_ms > 0 and row.latency_ms >= row.ttft_ms
        assert row.base_host == "embedded" and row.params["max_tokens"] == 40
        assert row.finish_reason in ("stop", "length")


def test_history_is_sent_on_the_next_turn(embedded):
    endpoints = load_endpoints()
    col = [Column("smollm2", endpoints["smollm2"])]
    first = ask("My name is Ada. Say hello to me.", col, overrides={"max_tokens": 20})
    second = ask("What is my name?", col, conversation_id=first.conversation_id, overrides={"max_tokens": 20})
    assert second.outcomes["smollm2"].status == "ok"
    with session_scope() as s:
        turns = s.scalars(
            select(Exchange.turn_index)
            .where(Exchange.conversation_id == first.conversation_id)
            .order_by(Exchange.turn_index)
        ).all()
    assert turns == [0, 1]
