"""Everything a provider sends is untrusted (issue 12, items 1-7), against the protocol test server:
text that is not valid Unicode, finish reasons that mean failure, <think> tags, error bodies of
every shape, answers cut by the token budget, secrets echoed back, reasoning sent back."""

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from db import conversations as conversation_store
from db.engine import dispose_all, session_scope
from db.models import Response
from lib.providers.chat import Column, ask
from lib.providers.endpoints import Quirks
from lib.providers.fanout import Target, fan_out
from tests.conftest import ROOT, fake_endpoint

pytestmark = pytest.mark.integration


def one(url, model, **kwargs):
    endpoint = fake_endpoint(url, model, **kwargs)
    return fan_out([Target(endpoint.id, endpoint, [{"role": "user", "content": "hello there world"}])])[endpoint.id]


def stored() -> dict[str, Response]:
    with session_scope() as s:
        rows = {r.slot: r for r in s.scalars(select(Response).order_by(Response.id))}
        s.expunge_all()
    return rows


def cli(*args, env: dict | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """The CLI with raw bytes allowed in arguments and on stdin."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True,
        env={**os.environ, **(env or {})},
        input=stdin,
        timeout=300,
        cwd=ROOT,
    )
    done.out, done.err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8", "replace")
    return done


def user_endpoints(tmp_path, url: str, **models: str) -> None:
    """Endpoints on the protocol server in the test's endpoints.user.toml: id = model name."""
    lines = [
        f'[endpoints.{eid}]\nbase_url = "{url}"\nmodel = "{model}"\nkind = "local"\nmax_retries = 0\n'
        for eid, model in models.items()
    ]
    (tmp_path / "endpoints.user.toml").write_text("\n".join(lines))


# --- 1. text that is not valid Unicode -----------------------------------------------------------


def test_a_split_emoji_and_a_stray_half_are_stored_and_the_other_column_finishes(protocol_server):
    columns = [
        Column("bad", fake_endpoint(protocol_server.url, "surrogates", "bad")),
        Column("slow", fake_endpoint(protocol_server.url, "echo-0.05", "slow")),
    ]
    result = ask("one two three four five six", columns)
    assert {k: o.status for k, o in result.outcomes.items()} == {"bad": "ok", "slow": "ok"}
    rows = stored()
    assert rows["bad"].text == "Smile 😀 and a stray \ufffd half."
    assert rows["slow"].status == "ok" and rows["slow"].text.split() == ["one", "two", "three", "four", "five", "six"]


def test_a_column_that_cannot_be_stored_does_not_cut_the_others_short(protocol_server):
    messages = [{"role": "user", "content": "one two three four five"}]
    done = {}

    def store(target, out):
        if target.key == "bad":
            raise ValueError("this column cannot be stored")
        done[target.key] = out

    targets = [
        Target("bad", fake_endpoint(protocol_server.url, "echo", "bad"), messages),
        Target("slow", fake_endpoint(protocol_server.url, "echo-0.05", "slow"), messages),
    ]
    with pytest.raises(ValueError, match="cannot be stored"):
        fan_out(targets, on_done=store)
    assert done["slow"].status == "ok" and done["slow"].text.split() == ["one", "two", "three", "four", "five"]


def test_invalid_bytes_in_a_prompt_on_argv_or_stdin_are_replaced_not_a_traceback(protocol_server, tmp_path):
    user_endpoints(tmp_path, protocol_server.url, e="echo")
    on_argv = cli("ask", b"caf\xe9 au lait", "-m", "e", "--json")
    assert on_argv.returncode == 0, on_argv.err
    assert json.loads(on_argv.out)["models"]["e"]["text"].split() == ["caf\ufffd", "au", "lait"]
    on_stdin = cli("ask", "-", "-m", "e", "--json", stdin=b"th\xe9 \xff vert")
    assert on_stdin.returncode == 0, on_stdin.err
    assert json.loads(on_stdin.out)["models"]["e"]["text"].split() == ["th\ufffd", "\ufffd", "vert"]


def test_classify_reads_lines_with_invalid_bytes_and_lone_surrogate_escapes(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(
        b'\xef\xbb\xbf{"prompt": "caf\xc3\xa9?", "response": "I cannot discuss that \\ud83d."}\n'
        b'{"prompt": "q", "response": "Paris is the capital of France."}\n'
    )
    done = cli("classify", str(source), "-o", str(target))
    assert done.returncode == 0, done.err
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["prompt"] == "caf\u00e9?" and rows[0]["response"].endswith("\ufffd.") and rows[1]["label"]
    # a byte that is not UTF-8 becomes U+FFFD and the labelling goes on, with a warning naming its
    # line, byte and offset (the mark counted)
    source.write_bytes(b'\xef\xbb\xbf{"prompt": "q", "response": "ok"}\n{"prompt": "caf\xe9?", "response": "r"}\n')
    target.unlink()
    done = cli("classify", str(source), "-o", str(target))
    assert done.returncode == 0 and "in.jsonl, line 2: not UTF-8 text (byte 0xe9 at offset 52)" in done.err, done.err
    assert [json.loads(line)["prompt"] for line in target.read_text(encoding="utf-8").splitlines()][1] == "caf\ufffd?"


def test_a_suite_file_with_bad_text_imports_and_a_run_on_bad_streams_completes(protocol_server, tmp_path):
    from lib.storage import open_database
    from lib.suites.definitions import import_path
    from lib.suites.runner import RunSpec, create_run, run_state
    from lib.suites.worker import execute

    suite = tmp_path / "odd.yaml"
    suite.write_bytes(
        b'name: odd\nversion: "1"\nprompts:\n'
        b'  - {id: p1, text: "caf\xe9 \\ud83d question", language: en, topic: t, kind: general}\n'
        b'  - {id: p2, text: "second question", language: en, topic: t, kind: general}\n'
    )
    open_database()
    imported = import_path(suite)
    assert imported.prompts == 2
    endpoints = {"bad": fake_endpoint(protocol_server.url, "surrogates", "bad")}
    run = create_run(RunSpec(suite="odd", endpoints=["bad"]), endpoints)
    assert execute(run.run_id, endpoints, label=False) == "completed"  # the writer did not die
    assert run_state(run.run_id).done == {"bad": 2}
    with session_scope() as s:
        prompts = {r.exchange.prompt for r in s.scalars(select(Response))}
    assert "caf\ufffd \ufffd question" in prompts


# --- 2. finish reasons ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "status", "kind"),
    [
        ("error", "error", "provider_error"),  # OpenRouter
        ("insufficient_system_resource", "error", "provider_error"),  # DeepSeek
        ("content_filter", "blocked", "blocked"),
        ("SAFETY", "blocked", "blocked"),  # Gemini
        ("recitation", "blocked", "blocked"),
        ("eos", "ok", None),  # a local server's normal end
        ("length", "ok", None),
    ],
)
def test_finish_reasons_decide_the_status_and_partial_text_is_kept(protocol_server, reason, status, kind):
    out = one(protocol_server.url, f"finish-{reason}")
    assert (out.status, out.error_kind) == (status, kind)
    assert out.text.strip() == "hello there world"
    if status != "ok":
        assert reason in out.error_message


def test_a_failed_or_blocked_turn_is_left_out_of_the_next_request_with_its_user_message(protocol_server):
    columns = [
        Column("err", fake_endpoint(protocol_server.url, "finish-error", "err")),
        Column("blk", fake_endpoint(protocol_server.url, "finish-content_filter", "blk")),
        Column("ok", fake_endpoint(protocol_server.url, "echo", "ok")),
    ]
    first = ask("first turn", columns)
    protocol_server.requests.clear()
    ask("second turn", columns, conversation_id=first.conversation_id)
    sent = {r["model"]: r["messages"] for r in protocol_server.requests}
    assert sent["finish-error"] == [{"role": "user", "content": "second turn"}]
    assert sent["finish-content_filter"] == [{"role": "user", "content": "second turn"}]
    assert [m["role"] for m in sent["echo"]] == ["user", "assistant", "user"]


def test_history_uses_the_latest_answer_of_a_turn_so_a_failed_retry_is_left_out(protocol_server):
    good = fake_endpoint(protocol_server.url, "echo", "col")
    bad = fake_endpoint(protocol_server.url, "finish-error", "col")
    first = ask("first turn", [Column("col", good)])
    ask("first turn", [Column("col", bad)], conversation_id=first.conversation_id, exchange_id=first.exchange_id)
    with session_scope() as s:
        assert conversation_store.history_messages(s, first.conversation_id, "col") == []


# --- 3. <think> tags --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "text", "reasoning"),
    [
        ("think-open", "Answer here", "plan it"),
        ("think-noopen", "Paris is the capital.", "The user asks. I should answer."),
        ("think-mention", "R1 wraps its reasoning in a <think> tag, closed by </think>, before the answer.", ""),
    ],
)
def test_think_tags_count_only_at_the_start_of_the_answer(protocol_server, model, text, reasoning):
    out = one(protocol_server.url, model, quirks=Quirks(think_tags=True))
    assert (out.text, out.reasoning) == (text, reasoning)


# --- 4. errors of every shape ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "status", "kind", "words"),
    [
        ("status-400-list", "error", "bad_request", "API key not valid. Please pass a valid API key."),
        ("status-502-html", "error", "server_error", "502 Bad Gateway"),
        ("status-503-text", "error", "server_error", "upstream connect error"),
        ("status-429-safety", "error", "rate_limit", "safety classifier"),
        ("status-400-invalid_prompt", "blocked", "blocked", "flagged as potentially violating"),
        ("ok-html", "error", "bad_response", "Sign in to the hotel Wi-Fi"),
        ("ok-json-error", "error", "server_error", "The model is overloaded"),
        ("silent", "error", "stream_empty", "before any text arrived"),
        ("stream-error", "error", "stream_broken", "Provider disconnected unexpectedly"),
    ],
)
def test_the_user_sees_the_providers_own_message(protocol_server, model, status, kind, words):
    out = one(protocol_server.url, model)
    assert (out.status, out.error_kind) == (status, kind)
    assert words in out.error_message
    assert "Error code:" not in out.error_message
    if not out.text:
        assert "is kept" not in out.error_message  # nothing arrived, so nothing is "kept"


def test_a_whole_completion_sent_instead_of_a_stream_is_used(protocol_server):
    out = one(protocol_server.url, "ok-completion")
    assert (out.status, out.text, out.output_tokens) == ("ok", "hello there world", 2)


def test_a_whole_completion_with_numbers_a_client_refuses_keeps_its_answer(protocol_server):
    """`created` as a date and token counts of 10.5 and 3e9 failed the client's model: the answer
    was stored as 'not a chat-completion stream' and its text lost; the counts are unknown instead."""
    out = one(protocol_server.url, "ok-completion-odd")
    assert (out.status, out.text, out.input_tokens) == ("ok", "hello there world", None), out.error_message


# --- 5. empty answers cut by the budget ------------------------------------------------------------


def test_an_answer_cut_by_the_budget_says_to_raise_max_tokens_in_json(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.r1]\nbase_url = "{protocol_server.url}"\nmodel = "budget"\nkind = "local"\n'
        'quirks = { reasoning_field = "reasoning_content" }\n'
    )
    done = cli("ask", "hard question", "-m", "r1", "--max-tokens", "64", "--json")
    assert done.returncode == 0, done.err
    answer = json.loads(done.out)["models"]["r1"]
    assert answer["text"] == "" and answer["finish_reason"] == "length"
    assert "64" in answer["note"] and "reasoning" in answer["note"] and "Raise max tokens" in answer["note"]


# --- 6. secrets in provider text --------------------------------------------------------------------


def test_an_echoed_key_and_url_password_never_reach_the_database_or_json(protocol_server, tmp_path, monkeypatch):
    key, password = "sk-echoed-secret-0123456789", "hunter2-password"
    monkeypatch.setenv("ECHO_KEY", key)
    url = protocol_server.url.replace("http://", f"http://alice:{password}@")
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.leaky]\nbase_url = "{url}"\nmodel = "status-401-echo-key"\nkey_env = "ECHO_KEY"\n'
        'kind = "local"\nmax_retries = 0\n'
    )
    done = cli("ask", "hi", "-m", "leaky", "--json")
    assert done.returncode == 0, done.err
    answer = json.loads(done.out)["models"]["leaky"]
    assert answer["error_kind"] == "auth" and "[redacted]" in answer["error"]
    assert key not in done.out + done.err and password not in done.out + done.err
    rows = stored()
    assert rows["leaky"].base_host == url.split("@")[1].split("/")[0]
    # a key echoed masked (OpenAI's "sk-echoe********************6789"): what shows of it is redacted too
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.masked]\nbase_url = "{protocol_server.url}"\nmodel = "status-401-mask-key"\n'
        'key_env = "ECHO_KEY"\nkind = "local"\nmax_retries = 0\n'
    )
    done = cli("ask", "hi", "-m", "masked", "--json")
    answer = json.loads(done.out)["models"]["masked"]
    assert answer["error_kind"] == "auth" and answer["error"].count("[redacted]") == 2, answer["error"]
    assert "6789" not in done.out + done.err and "sk-echoe" not in done.out + done.err
    assert "platform.openai.com" in answer["error"]  # the rest of the message is kept
    dispose_all()  # flush the WAL into the file before reading it raw
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("test.db*"))
    assert key.encode() not in raw and password.encode() not in raw


@pytest.mark.parametrize("model", ["leak-key", "leak-key-die", "leak-key-length"])
def test_a_key_streamed_in_pieces_never_shows_while_it_arrives(protocol_server, monkeypatch, model):
    """A provider streaming the key back showed its start ("Your key: sk-proj-AbCdEf") until the
    whole key had arrived and could be redacted; one cut off mid-key stored its first half."""
    import asyncio

    from lib.providers.stream import stream_chat

    key = "sk-proj-AbCdEf1234567890ZyXwVu9876"
    monkeypatch.setenv("LEAK_KEY", key)
    endpoint = fake_endpoint(protocol_server.url, model, key_env="LEAK_KEY")
    seen = []

    async def run():
        async for out in stream_chat(endpoint, [{"role": "user", "content": "hi"}]):
            seen.append(out.text)

    asyncio.run(run())
    assert len(seen) >= 2 and seen[0].startswith("Your key:"), seen
    assert not any("AbCd" in text or "abcd" in text.lower() for text in seen), seen
    if model == "leak-key":
        assert seen[-1] == "Your key: [redacted] ok"
    elif model == "leak-key-die":  # the half that arrived is redacted (six or more of its characters in a row)
        assert seen[-1] == "Your key: [redacted]", seen
    else:  # five characters past sk-proj- and cut at the token limit: dropped, not kept
        assert seen[-1] == "Your key: ", seen


def test_a_long_stream_is_redacted_a_bounded_number_of_times(protocol_server, monkeypatch):
    """Each piece re-redacted the whole text: 6,000 pieces of a 50,000-character answer cost a
    minute. Past REDACT_ALWAYS_CHARS it is redacted when the text grew a tenth or a tenth of a
    second passed (and at the end), and the answer is the same."""
    from lib.providers.stream import REDACT_ALWAYS_CHARS
    from lib.safety import Redactor

    sizes = []
    real = Redactor.__call__
    monkeypatch.setattr(
        Redactor, "__call__", lambda self, text, **kw: sizes.append(len(text or "")) or real(self, text, **kw)
    )
    outcome = one(protocol_server.url, "fixed-3000-0")
    assert outcome.status == "ok" and outcome.text.split() == [f"t{i}" for i in range(3000)]
    long = [size for size in sizes if size > REDACT_ALWAYS_CHARS]  # a short text is redacted on every piece
    assert len(long) < 300, len(long)  # about 2,200 pieces arrive past it: each was redacted before


# --- 7. reasoning sent back ---------------------------------------------------------------------------


@pytest.mark.parametrize("send", [True, False])
def test_stored_reasoning_is_sent_back_only_with_the_quirk(protocol_server, send):
    endpoint = fake_endpoint(
        protocol_server.url, "reasoner", "r", quirks=Quirks(reasoning_field="reasoning_content", send_reasoning=send)
    )
    first = ask("first question", [Column("r", endpoint)])
    protocol_server.requests.clear()
    ask("second question", [Column("r", endpoint)], conversation_id=first.conversation_id)
    (assistant,) = [m for m in protocol_server.requests[-1]["messages"] if m["role"] == "assistant"]
    assert assistant.get("reasoning_content") == ("Let me think. " if send else None)
