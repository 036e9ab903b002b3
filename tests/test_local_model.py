"""The real embedded model: SmolLM2 served by llama.cpp, reached through the same client code; and
the server's start: which server, an environment that cannot move it, a short reason when it fails."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import Exchange, Response
from lib.providers import local_server
from lib.providers.chat import Column, ask
from lib.providers.endpoints import load_endpoints
from tests.conftest import ROOT

BACKENDS = [local_server.LLAMA_SERVER, local_server.FALLBACK_SERVER]


def need_llama_server() -> None:
    """Skip without the built binary, except under `make test`, which builds it and must not skip."""
    if local_server.llama_server_path() is None:
        message = "llama-server is off (PARALLAX_LLAMA_SERVER=off) or not built (make llama-server)"
        if os.environ.get("PARALLAX_REQUIRE_LLAMA_SERVER"):
            pytest.fail(message)
        pytest.skip(message)


def use_backend(kind: str, monkeypatch) -> None:
    if kind == local_server.LLAMA_SERVER:
        need_llama_server()
    else:
        monkeypatch.setenv("PARALLAX_LLAMA_SERVER", "off")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def chat(url: str, prompt: str, max_tokens: int = 8, timeout: float = 60) -> dict:
    body = {"model": local_server.MODEL_ALIAS, "messages": [{"role": "user", "content": prompt}]}
    request = urllib.request.Request(
        f"{url}/chat/completions",
        data=json.dumps({**body, "max_tokens": max_tokens}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.load(resp)


@pytest.mark.integration
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
    counted = local_server.backend() == local_server.FALLBACK_SERVER  # only the fallback sends no usage
    with session_scope() as s:
        rows = {r.slot: r for r in s.scalars(select(Response))}
    for row in rows.values():
        assert row.output_tokens and row.tokens_counted == counted
        assert row.input_tokens and row.input_tokens > 20  # ChatML + system prompt + question
        assert row.output_tokens <= 40 and row.ttft_ms > 0 and row.latency_ms >= row.ttft_ms
        assert row.base_host == "embedded" and row.params["max_tokens"] == 40
        assert row.finish_reason in ("stop", "length")


@pytest.mark.integration
def test_two_embedded_columns_generate_at_the_same_time(embedded):
    need_llama_server()
    endpoints = load_endpoints()
    columns = [Column("a", endpoints["smollm2"]), Column("b", endpoints["smollm2"])]
    first: dict[str, float] = {}
    done: dict[str, float] = {}

    def seen(target, outcome) -> None:
        now = time.perf_counter()
        if outcome.text:
            first.setdefault(target.key, now)
        if outcome.done:
            done[target.key] = now

    ask(
        "Write a long story about a lighthouse keeper.",
        columns,
        overrides={"max_tokens": 60, "temperature": 0.0},
        on_update=seen,
    )
    # served one at a time, the second column's first token would come after the first answer ended
    assert set(first) == {"a", "b"} and max(first.values()) < min(done.values())


@pytest.mark.integration
def test_server_usage_agrees_with_our_own_prompt_count(embedded):
    need_llama_server()
    messages = [{"role": "user", "content": "Name three rivers in Europe."}]
    usage = chat(embedded, messages[0]["content"], max_tokens=5)["usage"]
    assert usage["prompt_tokens"] == local_server.count_prompt_tokens(messages)
    assert 0 < usage["completion_tokens"] <= 5


@pytest.mark.integration
@pytest.mark.parametrize("kind", BACKENDS)
def test_server_listens_where_asked_whatever_its_environment_says(kind, monkeypatch):
    use_backend(kind, monkeypatch)
    decoys = [local_server.free_port() for _ in range(3)]
    # What a hosting platform (PORT, HOST, Vertex AI's AIP_*) or a user's shell may carry, each read
    # by one of the two servers; a key would make every request of ours fail with 401.
    monkeypatch.setenv("PORT", str(decoys[0]))
    monkeypatch.setenv("HOST", "192.0.2.1")
    monkeypatch.setenv("MODEL", "/nonexistent/model.gguf")
    monkeypatch.setenv("N_CTX", "16")
    monkeypatch.setenv("LLAMA_ARG_PORT", str(decoys[1]))
    monkeypatch.setenv("LLAMA_ARG_MODEL", "/nonexistent/model.gguf")
    monkeypatch.setenv("LLAMA_API_KEY", "not-our-key")
    monkeypatch.setenv("AIP_MODE", "PREDICTION")
    monkeypatch.setenv("AIP_HTTP_PORT", str(decoys[2]))
    port = local_server.free_port()
    proc, url = local_server.start(port=port, timeout=120)
    try:
        assert url == f"http://127.0.0.1:{port}/v1" and local_server.is_alive(url)
        assert chat(url, "Say hi.")["choices"][0]["message"]["content"]
        assert not any(listening(decoy) for decoy in decoys)
    finally:
        local_server.stop(proc)


@pytest.mark.integration
@pytest.mark.parametrize("kind", BACKENDS)
def test_both_servers_take_a_conversation_longer_than_2048_tokens(kind, monkeypatch):
    """The fallback had a 2,048-token context while llama-server gives a request up to 8,192: a long
    conversation that works with the binary failed without it."""
    use_backend(kind, monkeypatch)
    port = local_server.free_port()
    proc, url = local_server.start(port=port, timeout=120)
    try:
        long_prompt = "The quick brown fox jumps over the lazy dog. " * 300 + "What did the fox do?"
        reply = chat(url, long_prompt, timeout=300)  # 3,000 tokens to read first: slow on a busy machine
        assert reply["usage"]["prompt_tokens"] > 2048, reply["usage"]
        assert reply["choices"][0]["message"]["content"]
    finally:
        local_server.stop(proc)


@pytest.mark.integration
def test_a_conversation_over_the_fallbacks_context_says_so(monkeypatch):
    """llama-cpp-python's server ends a stream whose prompt exceeds its context with nothing (the
    reason only in its log): the stored error names the context, not an empty stream."""
    use_backend(local_server.FALLBACK_SERVER, monkeypatch)
    port = local_server.free_port()
    proc, url = local_server.start(port=port, timeout=120)
    try:
        monkeypatch.setenv("PARALLAX_LOCAL_URL", url)
        endpoints = load_endpoints()
        columns = [Column("smollm2", endpoints["smollm2"])]
        result = ask("天安门广场在北京。" * 1100 + "请总结。", columns, overrides={"max_tokens": 8})
        outcome = result.outcomes["smollm2"]
        assert outcome.status == "error" and outcome.error_kind == "context_length", outcome
        assert "longer than the model's context" in outcome.error_message and "8,192" in outcome.error_message
    finally:
        local_server.stop(proc)


@pytest.mark.integration
@pytest.mark.parametrize("kind", BACKENDS)
def test_start_failure_reports_the_line_that_says_why(kind, monkeypatch):
    use_backend(kind, monkeypatch)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(local_server.LocalModelUnavailable) as failure:
            local_server.start(port=port, timeout=120)
    message = str(failure.value)
    assert kind in message and "bind" in message.lower() and str(port) in message
    assert len(message) < 600 and "\n" not in message and "llama_model_loader" not in message


def serve_local(port: int, env: dict, log: Path) -> subprocess.Popen:
    """`cli.py serve-local` in its own session, its output in `log` (a file, not a pipe: the
    server's log would fill a pipe and stall it)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "cli.py"), "serve-local", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.integration
def test_serve_local_listens_on_the_port_asked_despite_port_in_the_environment(tmp_path):
    port, decoy = local_server.free_port(), local_server.free_port()
    env = {**os.environ, "PORT": str(decoy), "LLAMA_ARG_PORT": str(decoy), "PARALLAX_DATA_DIR": str(tmp_path)}
    log = tmp_path / "serve-local.log"
    proc = serve_local(port, env, log)
    try:
        deadline = time.monotonic() + 120
        while not local_server.is_alive(f"http://127.0.0.1:{port}/v1") and proc.poll() is None:
            assert time.monotonic() < deadline, "serve-local did not answer"
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
        assert not listening(decoy)
    finally:
        os.killpg(proc.pid, 15)  # the CLI and the server it runs in the foreground
        proc.wait(timeout=30)


def test_server_environment_drops_every_setting_name_the_server_reads():
    environ = {
        "PATH": "/usr/bin",
        "PARALLAX_DATA_DIR": "/tmp/x",
        "OPENAI_API_KEY": "kept for the app, not read by either server",
        "PORT": "8620",
        "host": "0.0.0.0",
        "Model": "/x.gguf",
        "N_CTX": "16",
        "CONFIG_FILE": "/x.json",
        "LLAMA_ARG_PORT": "1",
        "LLAMA_ARG_NO_WEBUI": "1",
        "LLAMA_API_KEY": "k",
        "AIP_MODE": "PREDICTION",
        "AIP_HTTP_PORT": "1",
        "HF_TOKEN": "t",
        "API_KEY": "k",
    }
    kept = {"PATH", "PARALLAX_DATA_DIR", "OPENAI_API_KEY"}
    llama_cpp_python_names = {"PORT", "host", "Model", "N_CTX", "CONFIG_FILE", "API_KEY"}
    fallback = local_server.server_env(environ, kind=local_server.FALLBACK_SERVER)
    assert set(fallback) == set(environ) - llama_cpp_python_names
    served = local_server.server_env(environ, kind=local_server.LLAMA_SERVER)
    assert set(served) == kept | llama_cpp_python_names


def test_failure_line_is_the_error_not_the_model_metadata():
    metadata = "".join(f"llama_model_loader: - kv {i:3}: tokenizer.ggml.tokens arr[str,49152]\n" for i in range(40))
    bind = "0.00.002.430 E srv         start: couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 8620"
    served = (  # llama-server's own lines when the port is taken
        f"{metadata}{bind}\n"
        "0.00.002.430 I srv    operator(): operator(): cleaning up before exit...\n"
        "0.00.002.492 E srv  llama_server: exiting due to HTTP server error\n"
    )
    assert local_server.failure_line(served) == bind
    missing = "ValueError: Model path does not exist: /x.gguf"
    traceback = f'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n{missing}\n'
    assert local_server.failure_line(metadata + traceback) == missing
    assert local_server.failure_line("") == "(no output)"


@pytest.mark.integration
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
