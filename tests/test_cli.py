"""`cli.py`: ask with JSON output on the real embedded model, and clear usage errors (exit 2)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT


def cli(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=stdin,
        timeout=300,
        cwd=ROOT,
    )


@pytest.mark.integration
def test_ask_two_embedded_models_prints_one_json_object(embedded):
    done = cli(
        "ask",
        "Name a fruit.",
        "--model",
        "smollm2",
        "--model",
        "smollm2-guarded",
        "--max-tokens",
        "30",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data["models"]) == {"smollm2", "smollm2-guarded"}
    for answer in data["models"].values():
        assert answer["status"] == "ok" and answer["text"].strip()
        assert answer["output_tokens"] > 0 and answer["ttft_ms"] > 0 and answer["latency_ms"] > 0
    again = cli(
        "ask",
        "And a vegetable?",
        "-m",
        "smollm2",
        "--conversation",
        str(data["conversation_id"]),
        "--max-tokens",
        "20",
        "--json",
    )
    assert json.loads(again.stdout)["conversation_id"] == data["conversation_id"]


def test_failed_model_still_exits_zero(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.bad]\nbase_url = "{protocol_server.url}"\nmodel = "error500"\nmax_retries = 0\nkind = "local"\n'
    )
    done = cli("ask", "hi", "-m", "bad", "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["models"]["bad"]["error_kind"] == "server_error"


def test_params_the_client_does_not_name_are_sent_in_the_body(protocol_server, tmp_path):
    """llama.cpp's and vLLM's own sampling params (top_k, min_p…) reach the server: passed to the
    client as arguments they were a TypeError, reported as 'Provider said: … unexpected keyword
    argument', and every answer of that endpoint failed."""
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.sampler]\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n'
        "[endpoints.sampler.params]\ntop_k = 40\nmin_p = 0.05\ntemperature = 0.3\n"
    )
    done = cli("ask", "Hello there", "-m", "sampler", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)["models"]["sampler"]
    assert answer["status"] == "ok" and answer["text"].strip() == "Hello there", answer


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('api_key = "abc"', "params holds 'api_key', which looks like a key"),
        ('extra = "sk-proj-PASTEDSECRET1234567890"', "params holds 'extra', which looks like a key"),
        ('key_env = "T1_API_KEY"', "params holds 'key_env', a field of the endpoint itself"),
    ],
)
def test_a_key_or_an_endpoint_field_under_params_is_refused_and_never_stored(tmp_path, line, message):
    """Written under [endpoints.x.params] by a TOML slip, a pasted key was sent to the provider
    and stored with the answer's params; key_env there was lost in silence."""
    (tmp_path / "endpoints.user.toml").write_text(
        '[endpoints.t1]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\nkind = "local"\n'
        f"[endpoints.t1.params]\ntemperature = 0.2\n{line}\n"
    )
    done = cli("ask", "hello", "-m", "t1", "--json")
    assert done.returncode == 2 and message in done.stderr and "line 7:" in done.stderr, done.stderr
    assert "PASTEDSECRET" not in done.stderr + done.stdout


def test_ask_names_the_exchange_and_its_sides_and_vote_takes_them(protocol_server, tmp_path):
    """Two finished answers: the last line names the exchange a vote takes and which model is A
    (the first asked); `vote` takes "B" as the help writes it and names both sides back."""
    (tmp_path / "endpoints.user.toml").write_text(
        "".join(
            f'[endpoints.{eid}]\nname = "{name}"\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n'
            for eid, name in (("one", "First Echo"), ("two", "Second Echo"))
        )
    )
    asked = cli("ask", "Say hello.", "-m", "two", "-m", "one")
    summary = " ".join(asked.stderr.split())
    found = re.search(
        r"exchange (\d+) .*vote with: vote \1 a\|b\|tie\|both_bad, A is Second Echo, B is First Echo", summary
    )
    assert found, summary
    done = cli("vote", found.group(1), "B")
    assert done.returncode == 0, done.stderr
    assert f"on exchange {found.group(1)}: B is better (A is Second Echo, B is First Echo)" in " ".join(
        done.stderr.split()
    )


def test_retry_asks_a_failed_answer_again_and_then_the_turn_can_be_voted(protocol_server, tmp_path):
    """The command line's Retry: `retry EXCHANGE` asks again the models whose answer failed (or
    those named), replacing their answer in the same turn, as the Compare page's button does;
    `vote` pointed to the page for it."""
    user = tmp_path / "endpoints.user.toml"

    def endpoints(second_model: str) -> None:
        user.write_text(
            f'[endpoints.one]\nname = "First Echo"\nbase_url = "{protocol_server.url}"\nmodel = "echo"\n'
            'kind = "local"\nmax_retries = 0\n'
            f'[endpoints.two]\nname = "Flaky"\nbase_url = "{protocol_server.url}"\nmodel = "{second_model}"\n'
            'kind = "local"\nmax_retries = 0\n'
        )

    endpoints("error500")
    asked = json.loads(cli("ask", "Say hello.", "-m", "one", "-m", "two", "--json").stdout)
    exchange, conversation = asked["exchange_id"], asked["conversation_id"]
    assert asked["models"]["two"]["status"] != "ok"
    refused = cli("vote", str(exchange), "a")
    assert refused.returncode == 2 and f"cli.py retry {exchange}" in refused.stderr, refused.stderr
    again = cli("retry", str(exchange))  # still failing: it says so, and nothing else changes
    assert again.returncode == 0 and "two: error" in again.stderr and "vote with" not in again.stderr, again.stderr
    assert f"ask the failed model(s) again with: `.venv/bin/python cli.py retry {exchange}`" in " ".join(
        again.stderr.split()
    ), again.stderr
    endpoints("echo")
    again = cli("retry", str(exchange))
    summary = " ".join(again.stderr.split())
    assert again.returncode == 0 and "two: ok" in summary and "one:" not in summary, summary
    assert f"exchange {exchange} " in summary and "A is First Echo, B is Flaky" in summary, summary
    nothing = cli("retry", str(exchange))
    assert nothing.returncode == 2 and "every answer of turn" in nothing.stderr and "one, two" in nothing.stderr
    named = json.loads(cli("retry", str(exchange), "-m", "one", "--json").stdout)
    assert named["exchange_id"] == exchange and set(named["models"]) == {"one"}
    unknown = cli("retry", str(exchange), "-m", "three")
    assert unknown.returncode == 2 and "has no answer from 'three' (its models: one, two)" in unknown.stderr
    assert cli("vote", str(exchange), "b").returncode == 0
    voted = cli("retry", str(exchange), "-m", "one")  # the vote would stay on answers no longer shown
    assert voted.returncode == 2 and f"turn {exchange} has a vote on its answers" in voted.stderr, voted.stderr
    for args, message in ((["retry", "999999"], "there is no turn (exchange) 999999"),):
        done = cli(*args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    later = json.loads(cli("ask", "And again.", "-m", "one", "--conversation", str(conversation), "--json").stdout)
    done = cli("retry", str(exchange), "-m", "one")
    assert done.returncode == 2 and f"is not the last of conversation {conversation}" in done.stderr, done.stderr
    assert f"(that is {later['exchange_id']})" in done.stderr


def test_ask_shows_each_answers_label_and_none_for_a_failed_call(protocol_server, tmp_path):
    """The detector labels every answer as it is stored; `ask` says which label each got, in its
    JSON and on each model's summary line, as the Compare page's badge does."""
    (tmp_path / "endpoints.user.toml").write_text(
        "".join(
            f'[endpoints.{eid}]\nbase_url = "{protocol_server.url}"\nmodel = "{model}"\n'
            'max_retries = 0\nkind = "local"\n'
            for eid, model in (("echo", "echo"), ("bad", "error500"), ("gate", "deepseek-block"))
        )
    )
    refusal = "I'm sorry, but I can't help with that."
    done = cli("ask", refusal, "-m", "echo", "-m", "bad", "-m", "gate", "--json")
    assert done.returncode == 0, done.stderr
    models = json.loads(done.stdout)["models"]
    assert models["echo"]["label"] == "refused" and models["echo"]["label_rule"].startswith("pattern")
    assert 0 < models["echo"]["label_confidence"] <= 1
    assert models["gate"]["label"] == "blocked"
    assert models["bad"]["label"] is None and models["bad"]["label_confidence"] is None  # no text: no label
    plain = cli("ask", refusal, "-m", "echo", "-m", "bad", "-m", "gate")
    assert plain.returncode == 0, plain.stderr
    summary = " ".join(plain.stderr.split())
    assert "echo: ok, refused (" in summary and "bad: error, first token" in summary, plain.stderr
    assert "gate: blocked, first token" in summary, plain.stderr  # not "blocked, blocked (1.00)"
    # a failed answer's reason is on its summary line; the turn id a vote needs is named
    assert re.search(r"bad: error, first token .* 0 tokens: \S", summary), plain.stderr
    assert re.search(
        r"conversation (\d+), exchange (\d+) \(continue with --conversation \1; ask the failed model\(s\) again "
        r"with: `\.venv/bin/python cli\.py retry \2`\)",
        summary,
    ), summary
    pair = cli("ask", "Say hello.", "-m", "echo", "-m", "gate")
    assert "vote with: vote" not in pair.stderr  # one of the two was blocked: no vote on that turn
    german = "Die Hauptstadt von Deutschland ist Berlin, eine Stadt mit vielen Museen und einer langen Geschichte."
    guessed = cli("ask", german, "-m", "echo")
    assert "other language: a guess" in guessed.stderr, guessed.stderr


def test_ask_stopped_mid_stream_says_which_conversation_keeps_what_arrived(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.fast]\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n'
        f'[endpoints.slow]\nbase_url = "{protocol_server.url}"\nmodel = "slow-60"\nkind = "local"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "ask", "hello there", "-m", "fast", "-m", "slow", "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(r["model"] == "slow-60" for r in list(protocol_server.requests)):
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr
    assert "conversation 1 keeps what arrived (continue with --conversation 1, or ask this turn again with " in (
        " ".join(stderr.split())
    ), stderr
    assert "cli.py retry 1`" in stderr, stderr
    # a retry stopped the same way points to retrying that turn, not to a new one
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "retry", "1", "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(r["model"] == "slow-60" for r in list(protocol_server.requests)) < 2:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "turn 1 keeps what arrived, marked interrupted (ask it again with" in " ".join(stderr.split()), stderr
    assert "cli.py retry 1`" in stderr, stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["ask", "   ", "-m", "smollm2"], {}, "prompt is empty"),
        (["ask", "x" * 40, "-m", "smollm2"], {"PARALLAX_MAX_PROMPT_CHARS": "30"}, "limit is 30"),
        (["ask", "hi", "-m", "no-such-model"], {}, "unknown model 'no-such-model'"),
        (["ask", "hi", "-m", "deepseek-chat"], {"DEEPSEEK_API_KEY": ""}, "DEEPSEEK_API_KEY"),
        (["ask", "hi"], {}, "at least one --model"),
        (["ask", "hi", "-m", "smollm2"], {"PARALLAX_DATABASE_URL": "sqlite:////proc/nope/x.db"}, "database"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_message(args, env, message):
    done = cli(*args, env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in " ".join(done.stderr.split())


def test_malformed_endpoints_file_names_file_and_line(tmp_path):
    bad = tmp_path / "endpoints.toml"
    bad.write_text('[endpoints.x]\nbase_url = "http://h"\nmodel = \n')
    done = cli("models", env={"PARALLAX_ENDPOINTS": str(bad)})
    assert done.returncode == 2 and "line 3" in done.stderr and "endpoints.toml" in done.stderr


def test_every_broken_endpoint_entry_is_named_at_once(tmp_path):
    """Each entry's problem is listed with its line, both files' (it was the first problem only:
    one run per typo); an override of an entry whose problem is already named adds none."""
    shipped = tmp_path / "endpoints.toml"
    shipped.write_text('[endpoints.ok]\nbase_url = "http://h"\nmodel = "m"\n\n[endpoints.x]\nbase_url = "ftp://h"\n')
    user = tmp_path / "endpoints.user.toml"
    user.write_text(
        '[endpoints.x]\nmodel = "m"\n\n[endpoints.a]\nbase_url = "http://h"\nmodel = "m"\nkind = "nope"\n\n'
        '[endpoints.b]\nbase_url = "http://h"\nmodle = "m"\n'
    )
    done = cli("models", env={"PARALLAX_ENDPOINTS": str(shipped), "PARALLAX_USER_ENDPOINTS": str(user)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert "the endpoints configuration has 5 problems; fix them and retry" in lines[0], lines
    assert f"{shipped}, line 5: [endpoints.x] is missing 'model'" in lines[1], lines  # every problem of an entry
    assert f"{shipped}, line 6: [endpoints.x] base_url must be" in lines[2], lines
    assert f"{user}, line 7: [endpoints.a] has kind 'nope'" in lines[3], lines
    assert f"{user}, line 11: [endpoints.b] has unknown field 'modle'" in lines[4], lines
    assert f"{user}, line 9: [endpoints.b] is missing 'model'" in lines[5], lines
    assert len(lines) == 6, lines


def test_nothing_is_written_for_a_rejected_prompt(tmp_path):
    cli("ask", "", "-m", "smollm2")
    assert not (tmp_path / "data" / "test.db").exists()


def test_models_lists_every_endpoint_with_its_state(monkeypatch):
    done = cli("models", "--json", env={"OPENAI_API_KEY": "", "DEEPSEEK_API_KEY": "sk-x"})
    rows = {r["id"]: r for r in json.loads(done.stdout)}
    assert rows["gpt-4o"]["status"] == "key missing" and "OPENAI_API_KEY" in rows["gpt-4o"]["detail"]
    assert rows["deepseek-chat"]["status"] == "ready"
    assert rows["smollm2"]["ready"]
    assert rows["lmstudio"]["status"] in ("server down", "ready")


def test_leaderboard_ranks_a_battles_csv_as_json(tmp_path):
    battles = tmp_path / "battles.csv"
    battles.write_text(
        "model_a,model_b,winner\n"
        + "qwen,gpt,model_a\n" * 6
        + "gpt,qwen,model_a\n" * 2
        + "qwen,gpt,tie\nqwen,gpt,tie (bothbad)\n"
    )
    done = cli("leaderboard", "--battles", str(battles), "--bootstrap", "50", "--seed", "3", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["model"] for r in rows] == ["qwen", "gpt"]
    assert set(rows[0]) == {"model", "name", "rating", "ci_low", "ci_high", "battles", "wins", "ties", "losses"}
    assert rows[0]["name"] == "qwen"  # a battles file names models: the name is the model
    assert rows[0]["battles"] == 10 and rows[0]["wins"] == 6 and rows[0]["ties"] == 2
    assert rows[0]["ci_low"] <= rows[0]["rating"] <= rows[0]["ci_high"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,winner\nx,y,model_a\n", "missing column"),
        ("model_a,model_b,winner\nx,y,model_a\nx,y,draw\n", "battles.csv:3: unknown winner 'draw'"),
        ("model_a,model_b,winner\n", "battles.csv:1: no battles (the file has only its header)"),
    ],
)
def test_leaderboard_csv_problems_exit_2(tmp_path, content, message):
    battles = tmp_path / "battles.csv"
    battles.write_text(content)
    done = cli("leaderboard", "--battles", str(battles))
    assert done.returncode == 2 and message in done.stderr


def test_leaderboard_with_no_votes_is_a_clear_message():
    done = cli("leaderboard", "--json")
    assert done.returncode == 2 and "no votes" in done.stderr and "at least two models" in done.stderr


def test_export_with_nothing_to_export_writes_no_file(tmp_path):
    target = tmp_path / "pairs.jsonl"
    done = cli("export", "--format", "trl", "-o", str(target))
    assert done.returncode == 2 and "nothing was written" in done.stderr and not target.exists()
    done = cli("export", "--format", "parquet", "-o", str(target))
    assert done.returncode == 2 and "unknown format" in done.stderr


def test_a_missing_key_names_the_secrets_file_parallax_reads(tmp_path, protocol_server, monkeypatch):
    """The page's message named .streamlit/secrets.toml when PARALLAX_SECRETS named another file,
    and the command line named no file."""
    import asyncio

    from lib.providers.stream import stream_chat
    from tests.conftest import fake_endpoint

    secrets = tmp_path / "my-secrets.toml"
    env = {"OPENAI_API_KEY": "", "PARALLAX_SECRETS": str(secrets)}
    done = cli("ask", "hi", "-m", "gpt-4o", env=env)
    assert (
        done.returncode == 2
        and f'set the environment variable OPENAI_API_KEY (or write OPENAI_API_KEY = "…" in {secrets})' in done.stderr
    ), done.stderr
    endpoint = fake_endpoint(protocol_server.url, "echo", key_env="NO_SUCH_KEY_VARIABLE")

    async def last():
        async for out in stream_chat(endpoint, [{"role": "user", "content": "hi"}]):
            found = out
        return found

    monkeypatch.setenv("PARALLAX_SECRETS", str(secrets))
    out = asyncio.run(last())
    assert out.error_kind == "missing_key" and f"in {secrets})" in out.error_message, out.error_message
