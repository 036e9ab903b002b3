"""Fan-out against the protocol test server: the faults and quirks real providers show."""

import asyncio
import time

import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import Response
from lib.providers.chat import Column, ask
from lib.providers.endpoints import Quirks
from lib.providers.fanout import Target, fan_out, fan_out_async
from lib.providers.local_server import free_port
from tests.conftest import fake_endpoint

pytestmark = pytest.mark.integration


def one(url, model, **kwargs):
    endpoint = fake_endpoint(url, model, **kwargs)
    target = Target(endpoint.id, endpoint, [{"role": "user", "content": "hello there world"}])
    return fan_out([target])[endpoint.id]


def test_rate_limit_then_success_is_retried_by_the_client(protocol_server):
    out = one(protocol_server.url, "ratelimit-once", max_retries=2)
    assert out.status == "ok" and out.text.strip() == "hello there world"
    assert protocol_server.calls["ratelimit-once"] == 2


def test_server_error_is_reported_not_raised(protocol_server):
    out = one(protocol_server.url, "error500")
    assert (out.status, out.error_kind) == ("error", "server_error")
    assert "internal error" in out.error_message


def test_keep_alive_comments_do_not_hold_an_answer_past_its_timeout(protocol_server):
    """A provider that only sends SSE comments ends in a timeout after `timeout` seconds, not when
    it stops trickling; one that sends its answer within the timeout is unaffected."""
    import time

    started = time.monotonic()
    out = one(protocol_server.url, "trickle-6", timeout=1.0)
    assert (out.status, out.error_kind) == ("error", "timeout") and time.monotonic() - started < 4
    assert "keep-alive comments and empty chunks do not count" in out.error_message, out.error_message
    started = time.monotonic()
    out = one(protocol_server.url, "empties-6", timeout=1.0)  # empty deltas are no progress either
    assert (out.status, out.error_kind) == ("error", "timeout") and time.monotonic() - started < 4
    for model in ("trickle-0.3", "empties-0.3"):
        out = one(protocol_server.url, model, timeout=1.0)
        assert out.status == "ok" and out.text.strip() == "hello there world"


def test_slow_first_token_times_out(protocol_server):
    out = one(protocol_server.url, "slow-3", timeout=0.5)
    assert (out.status, out.error_kind) == ("error", "timeout")


def test_connection_refused_names_the_host():
    port = free_port()
    out = one(f"http://127.0.0.1:{port}/v1", "echo")
    assert (out.status, out.error_kind) == ("error", "connection")
    assert f"127.0.0.1:{port}" in out.error_message


@pytest.mark.parametrize("model", ["deepseek-block", "dashscope-block", "filter"])
def test_provider_content_blocks_are_stored_as_blocked(protocol_server, model):
    out = one(protocol_server.url, model)
    assert (out.status, out.error_kind) == ("blocked", "blocked")


def test_reasoning_content_deltas_are_kept_apart_from_the_answer(protocol_server):
    out = one(protocol_server.url, "reasoner", quirks=Quirks(reasoning_field="reasoning_content"))
    assert out.reasoning == "Let me think. " and out.text.strip() == "hello there world"


def test_stream_that_dies_keeps_what_arrived(protocol_server):
    out = one(protocol_server.url, "die")
    assert out.status == "error" and out.error_kind == "stream_broken"
    assert out.text == "hello there world "[: len(out.text)] and out.text


def test_usage_chunk_is_recorded_with_cost(protocol_server):
    out = one(protocol_server.url, "usage", prices={"input": 1.0, "output": 2.0})
    assert (out.input_tokens, out.output_tokens, out.tokens_counted) == (7, 3, False)
    assert out.cost_usd == pytest.approx((7 * 1.0 + 3 * 2.0) / 1e6)


def test_one_failing_endpoint_leaves_the_other_two_complete_and_stored(protocol_server):
    columns = [
        Column("a", fake_endpoint(protocol_server.url, "echo-0.01", "a")),
        Column("b", fake_endpoint(protocol_server.url, "error500", "b")),
        Column("c", fake_endpoint(protocol_server.url, "echo", "c")),
    ]
    result = ask("three models one prompt", columns)
    assert {k: o.status for k, o in result.outcomes.items()} == {"a": "ok", "b": "error", "c": "ok"}
    with session_scope() as s:
        rows = {r.slot: r for r in s.scalars(select(Response))}
    assert rows["a"].text.strip() == rows["c"].text.strip() == "three models one prompt"
    assert rows["b"].status == "error" and rows["b"].error_kind == "server_error"
    assert rows["a"].ttft_ms is not None and rows["a"].latency_ms >= rows["a"].ttft_ms


def test_a_slow_endpoint_does_not_delay_storing_a_fast_one(protocol_server):
    stored_at = {}
    columns = [
        Column("fast", fake_endpoint(protocol_server.url, "echo", "fast")),
        Column("slow", fake_endpoint(protocol_server.url, "slow-1.5", "slow")),
    ]
    start = time.monotonic()
    ask("x y", columns, on_stored=lambda slot, rid, out: stored_at.setdefault(slot, time.monotonic() - start))
    assert stored_at["fast"] < 1.0 <= stored_at["slow"]


def test_interrupting_a_run_keeps_partial_text_as_interrupted(protocol_server):
    done = {}
    endpoint = fake_endpoint(protocol_server.url, "echo-0.2", "e")
    target = Target("e", endpoint, [{"role": "user", "content": "one two three four five six seven"}])

    async def run():
        task = asyncio.ensure_future(fan_out_async([target], on_done=lambda t, o: done.update({t.key: o})))
        await asyncio.sleep(0.7)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    out = done["e"]
    assert out.status == "interrupted" and out.text.startswith("one") and "seven" not in out.text


def test_missing_key_fails_only_that_column(protocol_server, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    columns = [
        Column("k", fake_endpoint(protocol_server.url, "echo", "k", key_env="NO_SUCH_KEY_VAR")),
        Column("ok", fake_endpoint(protocol_server.url, "echo", "ok")),
    ]
    result = ask("hi", columns)
    assert result.outcomes["k"].error_kind == "missing_key" and "NO_SUCH_KEY_VAR" in result.outcomes["k"].error_message
    assert result.outcomes["k"].done and result.outcomes["k"].latency_ms is not None
    assert result.outcomes["ok"].status == "ok"


class _Rerun(BaseException):
    """Stands in for Streamlit's rerun exception, raised inside a repaint callback."""


def test_a_rerun_mid_stream_stores_the_partial_answer_in_the_known_conversation(protocol_server):
    started = {}
    endpoint = fake_endpoint(protocol_server.url, "echo-0.05", "e")

    def repaint(target, state):
        if len(state.text.split()) >= 2:
            raise _Rerun

    with pytest.raises(_Rerun):
        ask(
            "one two three four five six",
            [Column("e", endpoint)],
            on_update=repaint,
            on_start=lambda conversation, exchange: started.update(conversation=conversation),
        )
    with session_scope() as s:
        row = s.scalars(select(Response)).one()
        assert row.status == "interrupted" and row.text.startswith("one two")
        assert row.exchange.conversation_id == started["conversation"]


def test_keys_never_reach_the_database(protocol_server, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-secret-key-value-123")
    endpoint = fake_endpoint(protocol_server.url, "echo", "keyed", key_env="FAKE_PROVIDER_KEY")
    ask("hello", [Column("keyed", endpoint)])
    from db.engine import dispose_all

    dispose_all()  # flush WAL into the main file before reading it raw
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("test.db*"))
    assert b"sk-secret-key-value-123" not in raw and b"hello" in raw
