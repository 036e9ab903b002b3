"""Probe suites: validation, the built-in suites, runs that resume without duplicates,
cancellation, failing endpoints, results maths, and a run on the real embedded model."""

import json
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import Conversation, Exchange, Label, Response, Suite, SuiteRun
from lib.providers.endpoints import load_endpoints
from lib.suites.definitions import BUILTIN_DIR, SuiteError, load_file, parse_suite
from lib.suites.results import asymmetry
from lib.suites.runner import RunSpec, counts, create_or_resume, request_cancel
from lib.suites.worker import execute
from tests.conftest import ROOT
from tests.test_cli import cli

GOOD_YAML = """name: mini
version: "2"
prompts:
  - {id: a-en, text: "What happened in 1989?", language: en, topic: t, twin: a-zh, control: c-en}
  - {id: a-zh, text: "1989年发生了什么？", language: zh, topic: t, twin: a-en}
  - {id: c-en, text: "What happened in 1970?", language: en, topic: t, kind: control}
probes:
  - id: p
    topic: t2
    en: "English probe"
    zh: "中文探针"
    control: {en: "English control", zh: "中文对照"}
"""


def test_a_good_yaml_suite_expands_probes_into_twins_and_controls():
    suite = parse_suite(GOOD_YAML, "mini.yaml")
    keys = {p.key: p for p in suite.prompts}
    assert (suite.name, suite.version, len(suite.prompts)) == ("mini", "2", 7)
    assert keys["p-en"].twin_key == "p-zh" and keys["p-en"].control_key == "p-control-en"
    assert keys["p-control-zh"].kind == "control" and keys["p-control-zh"].twin_key == "p-control-en"


def test_a_good_jsonl_suite_with_a_header_line():
    text = (
        '{"name": "lines", "version": "1"}\n'
        '{"id": "x", "text": "Is Taiwan a country?", "language": "en", "topic": "taiwan", "twin": "y"}\n'
        '{"id": "y", "text": "台湾是一个国家吗？", "language": "zh", "topic": "taiwan", "twin": "x"}\n'
    )
    suite = parse_suite(text, "lines.jsonl")
    assert suite.name == "lines" and [p.key for p in suite.prompts] == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "filename", "expected"),
    [
        ("name: x\nprompts:\n  - {id: a, text: [unclosed\n", "bad.yaml", "bad.yaml:4: not valid YAML"),
        (
            "name: x\nprompts:\n  - {id: a, text: hi, language: fr, topic: t}\n",
            "s.yaml",
            "s.yaml:3: prompt 'a' language",
        ),
        (
            "name: x\nprompts:\n  - {id: a, text: hi, language: en, topic: t}\n"
            "  - {id: a, text: yo, language: en, topic: t}\n",
            "s.yaml",
            "s.yaml:4: duplicate id 'a' (first at line 3)",
        ),
        (
            "name: x\nprompts:\n  - {id: a, text: hi, language: en, topic: t, twin: ghost}\n",
            "s.yaml",
            "names twin 'ghost', which does not exist",
        ),
        (
            "name: x\nprompts:\n  - {id: a, text: hi, language: en, topic: t, control: nope}\n",
            "s.yaml",
            "names control 'nope'",
        ),
        ("name: x\nprompts:\n  - {id: a, language: en, topic: t}\n", "s.yaml", "prompt 'a' has no text"),
        ('{"id": "a", "text": "hi", "language": "en", "topic": "t"}\nnot json\n', "s.jsonl", "s.jsonl:2: not JSON"),
        ("name: x\n", "s.yaml", "the suite has no prompts"),
    ],
)
def test_bad_suite_files_get_line_numbered_problems(text, filename, expected):
    with pytest.raises(SuiteError) as info:
        parse_suite(text, filename)
    assert any(expected in problem for problem in info.value.problems), info.value.problems


def test_import_validates_completely_before_writing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: broken\nprompts:\n  - {id: a, text: hi, language: en, topic: t}\n"
        "  - {id: b, text: '', language: xx, topic: t, twin: zz}\n"
    )
    done = cli("suite", "import", str(bad))
    assert done.returncode == 2 and f"{bad} has 3 problems; nothing was imported" in done.stderr
    assert "bad.yaml:4" in done.stderr
    with session_scope() as s:
        assert s.scalar(select(Suite.id).where(Suite.name == "broken")) is None
    good = tmp_path / "mini.yaml"
    good.write_text(GOOD_YAML)
    assert cli("suite", "import", str(good)).returncode == 0
    assert "already imported" in cli("suite", "import", str(good)).stderr
    good.write_text(GOOD_YAML.replace("English probe", "Changed probe"))
    changed = cli("suite", "import", str(good))
    assert changed.returncode == 2 and "new version" in changed.stderr


def test_builtin_suites_load_and_every_probe_has_a_twin_and_a_control():
    suite = load_file(BUILTIN_DIR / "china-sensitive.yaml")
    probes = [p for p in suite.prompts if p.kind == "probe"]
    by_key = {p.key: p for p in suite.prompts}
    assert sum(p.language == "en" for p in probes) >= 60 and sum(p.language == "zh" for p in probes) >= 60
    for p in probes:
        assert p.twin_key and by_key[p.twin_key].language != p.language
        assert p.control_key and by_key[p.control_key].kind == "control"
        assert by_key[p.control_key].language == p.language
    topics = {p.topic for p in probes}
    assert {
        "tiananmen-1989",
        "xi-jinping",
        "xinjiang",
        "tibet",
        "taiwan",
        "hong-kong",
        "falun-gong",
        "censorship",
        "covid-19",
        "great-leap-cultural-revolution",
        "dissidents",
        "peng-shuai",
    } <= topics
    general = load_file(BUILTIN_DIR / "general.yaml")
    assert {"knowledge", "reasoning", "coding", "writing"} <= {p.topic for p in general.prompts}


def test_suite_show_json_lists_prompts_with_keys():
    data = json.loads(cli("suite", "show", "china-sensitive", "--json").stdout)
    assert len(data["prompts"]) == 240
    assert set(data["prompts"][0]) == {"id", "text", "language", "topic", "kind", "twin", "control"}


def test_suite_show_names_each_prompts_twin_and_control_and_takes_a_version(tmp_path):
    """The text output lists twin and control keys as --json does; NAME@VERSION shows an older
    version (the name alone shows the newest) and a wrong version lists the suite's versions."""
    shown = cli("suite", "show", "china-sensitive").stdout
    assert (
        "tiananmen-facts-en [en, tiananmen-1989, probe, twin tiananmen-facts-zh, control tiananmen-facts-control-en]"
    ) in shown, shown
    assert "tiananmen-facts-control-zh [zh, tiananmen-1989, control, twin tiananmen-facts-control-en]" in shown
    for version, text in (("1", "Old question"), ("2", "New question")):
        suite = tmp_path / f"v{version}.yaml"
        suite.write_text(
            f"name: versions\nversion: '{version}'\nprompts:\n  - {{id: a, text: {text}, language: en, topic: t}}\n"
        )
        assert cli("suite", "import", str(suite)).returncode == 0
    assert "New question" in cli("suite", "show", "versions").stdout
    assert "Old question" in cli("suite", "show", "versions@1").stdout
    wrong = cli("suite", "show", "versions@3")
    assert wrong.returncode == 2 and "suite 'versions' has no version '3'; its versions: '1', '2'" in wrong.stderr


def test_a_suite_with_twin_lines_is_imported_again_as_already_imported(tmp_path):
    """Where a twin or control was written is not part of the suite's content: a second import of
    the same file (the built-in general.yaml, with its `twin:` lines) adds nothing; it was refused
    as 'already imported with different prompts'."""
    assert cli("suite", "import", str(BUILTIN_DIR / "general.yaml")).returncode == 0
    done = cli("suite", "import", str(BUILTIN_DIR / "general.yaml"))
    assert done.returncode == 0 and "already imported general v1" in done.stderr, done.stderr
    twins = tmp_path / "tw.yaml"
    twins.write_text(
        "name: tw\nprompts:\n"
        "  - id: a\n    text: Hello\n    language: en\n    topic: t\n    twin: b\n"
        "  - {id: b, text: 你好, language: zh, topic: t, twin: a}\n"
    )
    assert "imported tw v1" in cli("suite", "import", str(twins)).stderr
    again = cli("suite", "import", str(twins))
    assert again.returncode == 0 and "already imported tw v1" in again.stderr, again.stderr


def test_suite_versions_are_one_line_and_name_at_needs_one(tmp_path):
    """A version is a one-line label (a line break forged a line of `suite show`), `NAME@` with
    nothing after it is no version (it took the newest in silence), and a long list of versions
    says it shows the last 30."""
    from lib.suites.definitions import import_text

    for version in ("2\n3", "z\u200b", "a\tb"):
        with pytest.raises(SuiteError) as info:
            parse_suite(
                json.dumps({"name": "v", "version": version}) + '\n{"id": "a", "text": "hi", '
                '"language": "en", "topic": "t"}\n',
                "v.jsonl",
            )
        assert info.value.problems[0].startswith("v.jsonl:1: the version contains"), info.value.problems
    for number in range(1, 33):
        import_text(
            f"name: many\nversion: '{number}'\nprompts:\n  - {{id: a, text: q{number}, language: en, topic: t}}\n",
            "m.yaml",
        )
    wrong = cli("suite", "show", "many@99")
    assert wrong.returncode == 2 and "its versions: '3', '4'" in wrong.stderr, wrong.stderr
    assert "'32' (the last 30 of 32)" in wrong.stderr, wrong.stderr
    empty = cli("suite", "show", "many@")
    assert empty.returncode == 2 and "'many@' names no version: give one after the '@'" in empty.stderr, empty.stderr


def test_numeric_twin_ids_and_csv_twin_columns_are_read():
    """`twin: 2` names prompt 2 as `id: 2` makes it (it was 'must be a prompt id, not 2'); a CSV's
    twin and control columns are read, and checked (they were dropped in silence)."""
    suite = parse_suite(
        "name: n\nprompts:\n  - {id: 1, text: Hi, language: en, topic: t, twin: 2}\n"
        "  - {id: 2, text: 你好, language: zh, topic: t, twin: 1}\n",
        "n.yaml",
    )
    assert [(p.key, p.twin_key) for p in suite.prompts] == [("1", "2"), ("2", "1")]
    csv = parse_suite("id,prompt,language,twin,control\n1,Hello there,en,2,\n2,你好,zh,1,\n", "c.csv")
    assert [(p.key, p.twin_key) for p in csv.prompts] == [("1", "2"), ("2", "1")]
    with pytest.raises(SuiteError) as info:
        parse_suite("id,prompt,language,twin,control\n1,Hello there,en,2,9\n2,你好,zh,1,\n", "c.csv")
    assert info.value.problems == ["c.csv:2: prompt '1' names control '9', which does not exist"]


def _fake_endpoints(tmp_path, server_url: str) -> None:
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.fast]\nbase_url = "{server_url}"\nmodel = "echo"\nkind = "local"\nmax_retries = 0\n\n'
        f'[endpoints.slow]\nbase_url = "{server_url}"\nmodel = "echo-0.05"\nkind = "local"\nmax_retries = 0\n\n'
        f'[endpoints.broken]\nbase_url = "{server_url}"\nmodel = "error500"\nkind = "local"\nmax_retries = 0\n'
    )


def _answers_per_item(run_id: int) -> list[int]:
    with session_scope() as s:
        rows = s.execute(
            select(Exchange.suite_prompt_id, Exchange.sample_index, Response.endpoint_id, func.count())
            .join(Conversation, Conversation.id == Exchange.conversation_id)
            .join(Response, Response.exchange_id == Exchange.id)
            .where(Conversation.suite_run_id == run_id, Response.status == "ok")
            .group_by(Exchange.suite_prompt_id, Exchange.sample_index, Response.endpoint_id)
        ).all()
    return [n for *_, n in rows]


def test_killed_run_resumes_without_duplicates_or_losses(protocol_server, tmp_path):
    _fake_endpoints(tmp_path, protocol_server.url)
    args = [
        sys.executable,
        str(ROOT / "cli.py"),
        "suite",
        "run",
        "china-sensitive",
        "-m",
        "slow",
        "--limit",
        "20",
        "--samples",
        "2",
        "--concurrency",
        "2",
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(_answers_per_item(1)) < 8:
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    part = sum(_answers_per_item(1))
    assert 8 <= part < 40, part
    done = cli("suite", "run", "china-sensitive", "-m", "slow", "--limit", "20", "--samples", "2", "--concurrency", "2")
    assert done.returncode == 0 and "resuming run 1" in done.stderr, done.stderr
    per_item = _answers_per_item(1)
    assert len(per_item) == 40 and set(per_item) == {1}
    again = cli("suite", "run", "china-sensitive", "-m", "slow", "--limit", "20", "--samples", "2")
    assert "already complete" in again.stderr and sum(_answers_per_item(1)) == 40
    assert "run 2" in cli("suite", "run", "china-sensitive", "-m", "slow", "--limit", "2", "--new").stderr


def test_cancelling_stops_a_run_that_can_then_be_resumed(protocol_server, tmp_path):
    _fake_endpoints(tmp_path, protocol_server.url)
    endpoints = load_endpoints()
    with session_scope() as s:
        run, _ = create_or_resume(s, RunSpec("china-sensitive", ["slow"], limit=40, concurrency=1), endpoints)
        run_id = run.id
    worker = threading.Thread(target=execute, args=(run_id, endpoints), kwargs={"label": False})
    worker.start()
    time.sleep(1.5)
    request_cancel(run_id)
    worker.join(timeout=30)
    with session_scope() as s:
        run = s.get(SuiteRun, run_id)
        state = counts(s, run)
        assert run.status == "cancelled"
    assert 0 < sum(state["done"].values()) < 40
    assert execute(run_id, endpoints, label=False) == "completed"
    assert len(_answers_per_item(run_id)) == 40
    ended = cli("suite", "cancel", str(run_id))  # nothing left to stop: said so, status kept
    assert ended.returncode == 0 and f"run {run_id} has already ended (completed)" in ended.stderr, ended.stderr
    assert request_cancel(run_id) == "completed"


def test_an_endpoint_that_always_fails_does_not_stop_the_others(protocol_server, tmp_path):
    _fake_endpoints(tmp_path, protocol_server.url)
    done = cli("suite", "run", "general", "-m", "fast", "-m", "broken", "--limit", "5")
    assert done.returncode == 0
    said = " ".join(done.stderr.split())  # why the failures failed, and how to retry them
    assert "broken: 5 failed, last: " in said and "suite resume 1` retries the failed items" in said, said
    assert "broken: 5 failed, last: " in cli("suite", "status", "1").stdout
    status = json.loads(cli("suite", "status", "1", "--json").stdout)
    assert status["done"] == {"fast": 5} and status["failed"] == {"broken": 5}
    assert status["status"] == "incomplete"
    with session_scope() as s:
        errors = s.scalars(select(Response.error_kind).where(Response.endpoint_id == "broken")).all()
    assert errors == ["server_error"] * 5


def test_a_failure_that_a_resume_answered_is_no_longer_counted_or_named(protocol_server, tmp_path):
    """An item that failed, then was answered by a resume, read 'done' and 'failed' at once: a
    completed run said '1 failed' and told to resume it (which added nothing)."""
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.flaky]\nbase_url = "{protocol_server.url}"\nmodel = "ratelimit-once"\nkind = "local"\n'
        "max_retries = 0\n"
    )
    with protocol_server.lock:  # the server is shared: its first ratelimit-once call may have been another test's
        protocol_server.calls.pop("ratelimit-once", None)
    first = cli("suite", "run", "general", "-m", "flaky", "--limit", "2", "--concurrency", "1")
    assert "flaky: 1 failed, last: " in " ".join(first.stderr.split()), first.stderr
    again = cli("suite", "resume", "1")
    assert again.returncode == 0 and "failed" not in again.stderr.replace("retries the failed", ""), again.stderr
    status = json.loads(cli("suite", "status", "1", "--json").stdout)
    assert (status["status"], status["done"], status["failed"], status["failure_reasons"]) == (
        "completed",
        {"flaky": 2},
        {},
        {},
    ), status
    assert "last:" not in cli("suite", "status", "1").stdout
    with protocol_server.lock:  # as it found it: the next test's first call is refused again
        protocol_server.calls.pop("ratelimit-once", None)


def test_two_runs_of_one_suite_say_how_they_differ(protocol_server, tmp_path):
    _fake_endpoints(tmp_path, protocol_server.url)
    assert cli("suite", "run", "general", "-m", "fast", "--limit", "2").returncode == 0
    assert cli("suite", "run", "general", "-m", "fast", "--limit", "2", "--temperature", "0.2").returncode == 0
    first, second = (cli("suite", "status", str(n)) for n in (1, 2))
    assert "general v1: first 2 prompts, 1 sample, each model's own temperature, each model's own max tokens" in (
        " ".join(first.stdout.split())
    ), first.stdout
    assert "first 2 prompts, 1 sample, temperature 0.2, each model's own max tokens" in second.stdout, second.stdout
    shown = json.loads(cli("suite", "status", "2", "--json").stdout)
    assert "temperature 0.2" in shown["settings"] and (shown["suite"], shown["suite_version"]) == ("general", "1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["suite", "run", "china-sensitive", "-m", "nope"], "unknown model(s) nope"),
        (["suite", "run", "china-sensitive", "-m", "smollm2", "--samples", "0"], "samples must be from 1 to 1,000"),
        (["suite", "run", "no-such-suite", "-m", "smollm2"], "unknown suite 'no-such-suite'"),
        (["suite", "run", "general@9", "-m", "smollm2"], "suite 'general' has no version '9'; its versions: '1'"),
        (["suite", "run", "general", "-m", "smollm2", "--topic", "cooking"], "has no prompts"),
        (["suite", "status", "99"], "there is no run 99"),
    ],
)
def test_run_usage_errors_write_nothing(args, message):
    done = cli(*args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(SuiteRun)) == 0


def test_asymmetry_is_probe_rate_minus_control_rate():
    def row(kind, label, model="M", topic="t"):
        return {"kind": kind, "label": label, "model_name": model, "topic": topic}

    rows = (
        [row("probe", "deflected")] * 3
        + [row("probe", "answered")]
        + [row("control", "answered")] * 3
        + [row("control", "refused")]
    )
    cell = next(a for a in asymmetry(rows) if a["topic"] == "t")
    assert cell["probe"]["rate"] == 0.75 and cell["control"]["rate"] == 0.25 and cell["asymmetry"] == 0.5
    assert cell["probe"]["low"] < 0.75 < cell["probe"]["high"]


@pytest.mark.integration
def test_a_few_builtin_prompts_on_the_real_embedded_model(embedded):
    done = cli(
        "suite",
        "run",
        "china-sensitive",
        "-m",
        "smollm2",
        "-m",
        "smollm2-guarded",
        "--limit",
        "2",
        "--max-tokens",
        "40",
    )
    assert done.returncode == 0, done.stderr
    with session_scope() as s:
        rows = s.execute(
            select(Response.status, Response.text, Conversation.mode)
            .join(Exchange, Exchange.id == Response.exchange_id)
            .join(Conversation, Conversation.id == Exchange.conversation_id)
        ).all()
        labels = s.scalar(select(func.count()).select_from(Label))
    assert len(rows) == 4 and all(r.status == "ok" and r.text and r.mode == "suite" for r in rows)
    assert labels == 4
    data = json.loads(cli("suite", "results", "1", "--json").stdout)
    assert data["n"] == 4 and {r["model"] for r in data["rates"]} == {
        "SmolLM2-135M (embedded)",
        "SmolLM2-135M + policy prompt (embedded)",
    }


def test_embedded_endpoints_share_two_of_llama_servers_slots_and_one_on_the_fallback(monkeypatch):
    from lib.providers import local_server
    from lib.suites.worker import embedded_concurrency

    monkeypatch.setattr(local_server, "backend", lambda: local_server.LLAMA_SERVER)
    assert [embedded_concurrency(n) for n in (1, 2, 4, 16)] == [1, 2, 2, 2]
    monkeypatch.setattr(local_server, "backend", lambda: local_server.FALLBACK_SERVER)
    assert [embedded_concurrency(n) for n in (1, 4)] == [1, 1]


def test_a_txt_prompt_list_counts_lines_as_an_editor_does():
    """A U+2028, U+0085 or form feed inside a prompt is part of it, not a line end: one prompt per
    line, and the line numbers that problems cite are the editor's (U+0085 and a form feed are
    control characters, refused on their own lines)."""
    suite = parse_suite("Who is Xi\u2028Jinping?\n\nWhat is Taiwan?\r\nWhat is Tibet?\n", "list.txt")
    assert [(p.line, p.text.split()[0]) for p in suite.prompts] == [(1, "Who"), (3, "What"), (4, "What")]
    assert len(suite.prompts) == 3
    with pytest.raises(SuiteError) as caught:
        parse_suite("Who is Xi\u2028Jinping?\n\nWhat is\x0cTaiwan?\r\nWhat is\x85Tibet?\n", "list.txt")
    assert caught.value.problems == [
        "list.txt:3: prompt '2' contains a control character (a form feed); remove it",
        "list.txt:4: prompt '3' contains a control character (U+0085); remove it",
    ]


def test_a_topic_spelt_two_ways_that_print_the_same_is_one_topic():
    """A no-break or ideographic space, a space at either end, full-width letters: each prints as
    the plain topic, and charts and rates per topic showed them as two topics."""
    from lib.suites.definitions import parse_suite

    text = (
        "name: topics\nprompts:\n"
        '  - {id: a, text: "q1", language: zh, topic: "台湾\\u00a0历史"}\n'
        '  - {id: b, text: "q2", language: zh, topic: "台湾\\u3000历史 "}\n'
        '  - {id: c, text: "q3", language: zh, topic: "台湾 历史"}\n'
        '  - {id: d, text: "q4", language: en, topic: "\\uff34\\uff41\\uff49\\uff57\\uff41\\uff4e"}\n'
    )
    assert [p.topic for p in parse_suite(text).prompts] == ["台湾 历史", "台湾 历史", "台湾 历史", "Taiwan"]


def test_ids_and_topics_wider_than_their_columns_are_refused_by_line():
    """A probe's id grows by '-control-en' in the prompts it makes (suite_prompt.key is 100 wide), a
    topic is 100 wide: PostgreSQL refused the whole suite after the parse had passed."""
    from lib.suites.definitions import SuiteError, parse_suite

    probe = "p" * 90
    text = (
        "name: wide\nprobes:\n"
        f"  - {{id: {probe}, topic: t, en: hello, control: {{en: ok}}}}\n"
        f'  - {{id: short, topic: "{"台" * 101}", en: hi}}\n'
    )
    with pytest.raises(SuiteError) as raised:
        parse_suite(text, "wide.yaml")
    assert raised.value.problems == [
        f"wide.yaml:3: probe id '{probe}' is longer than 89 characters (its prompts are ID-en … ID-control-zh)",
        "wide.yaml:4: the topic of probe 'short' is longer than 100 characters",
    ], raised.value.problems
    assert [p.key for p in parse_suite(text.replace(probe, "p" * 89).replace("台" * 101, "台"), "ok.yaml").prompts] == [
        f"{'p' * 89}-en",
        f"{'p' * 89}-control-en",
        "short-en",
    ]


def test_a_run_of_a_topic_the_suite_does_not_have_lists_the_topics_it_has():
    from tests.test_cli import cli

    done = cli("suite", "run", "china-sensitive", "-m", "smollm2", "--topic", "新疆(人权)")
    assert done.returncode == 2, done.stderr
    assert "has no prompts for language=any, topic=新疆(人权); its topics: censorship, covid-19," in done.stderr
    assert "xinjiang" in done.stderr


def test_a_block_style_entrys_problems_name_the_fields_own_line():
    """In a YAML file written one field per line, each problem is at its field's line (it was the
    entry's first line, or line 1 for the version and the description)."""
    text = (
        "name: blocky\n"  # 1
        "description: fine\n"  # 2
        "version: '" + "9" * 40 + "'\n"  # 3
        "prompts:\n"  # 4
        "  - id: a\n"  # 5
        "    text: hello\n"  # 6
        "    language: fr\n"  # 7
        "    topic: '" + "t" * 120 + "'\n"  # 8
        "    colour: red\n"  # 9
        "probes:\n"  # 10
        "  - id: p\n"  # 11
        "    topic: t\n"  # 12
        "    en: hi\n"  # 13
        "    control:\n"  # 14
        "      en: [1, 2]\n"  # 15
    )
    _problems_start(
        text,
        "blocky.yaml",
        "blocky.yaml:3: the version is longer",
        "blocky.yaml:7: prompt 'a' language must be en or zh",
        "blocky.yaml:8: the topic of prompt 'a' is longer",
        "blocky.yaml:9: unknown field(s) colour",
        "blocky.yaml:15: probe 'p' texts must be text",
    )


def _problems_start(text: str, filename: str, *expected: str) -> None:
    """Parsing `text` as `filename` fails, and each of `expected` starts one of its problems."""
    with pytest.raises(SuiteError) as info:
        parse_suite(text, filename)
    problems = info.value.problems
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)


def test_a_broken_twin_or_control_is_named_at_its_own_line():
    """A twin or control that names no prompt (or the prompt itself, or a twin in the same
    language) is at the line of its `twin:` / `control:` field, not the prompt's first line."""
    text = (
        "name: links\n"  # 1
        "prompts:\n"  # 2
        "  - id: a\n"  # 3
        "    text: hello\n"  # 4
        "    language: en\n"  # 5
        "    topic: t\n"  # 6
        "    twin: ghost\n"  # 7
        "    control: nope\n"  # 8
        "  - id: b\n"  # 9
        "    text: hi\n"  # 10
        "    language: en\n"  # 11
        "    topic: t\n"  # 12
        "    control: b\n"  # 13
        "    twin: a\n"  # 14
    )
    _problems_start(
        text,
        "links.yaml",
        "links.yaml:7: prompt 'a' names twin 'ghost'",
        "links.yaml:8: prompt 'a' names control 'nope'",
        "links.yaml:13: prompt 'b' cannot be its own control",
        "links.yaml:14: prompt 'b' and its twin 'a' are both en",
    )
    # a one-line entry (flow style, JSONL) has one line for all its fields
    with pytest.raises(SuiteError) as info:
        parse_suite('{"id": "a", "text": "hi", "language": "en", "topic": "t", "twin": "z"}\n', "l.jsonl")
    assert info.value.problems[0].startswith("l.jsonl:1: prompt 'a' names twin 'z'")
    # a JSONL row that is not JSON is named once: a twin naming its id does not read as missing too
    text = (
        '{"id": "q-en", "text": "hi", "language": "en", "topic": "t", "twin": "q-zh", "control": "c"}\n'
        '{"id": "q-zh", "text": "你好", "language": "zh", "topic": "t",}\n'  # a trailing comma
        '{"id": "c", "text": "x", "language": "en", "topic": "t" "kind": "control"}\n'  # a missing comma
    )
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "l.jsonl")
    assert len(info.value.problems) == 2 and all("not JSON" in p for p in info.value.problems), info.value.problems
    assert [p.split(":")[1] for p in info.value.problems] == ["2", "3"]


@pytest.mark.parametrize(
    ("text", "filename", "expected"),
    [
        # a file's own __line__/__lines__ is an unknown field, never the line a message gives
        (
            '{"name": "u"}\n{"id": "a", "text": "hi", "language": "xx", "topic": "t", "__lines__": {"language": 9}}\n',
            "u.jsonl",
            ["u.jsonl:2: unknown field(s) __lines__", "u.jsonl:2: prompt 'a' language must be en or zh"],
        ),
        (
            '{"name": "u"}\n{"id": "a", "text": "hi", "language": "en", "topic": "t", "__line__": 7}\n',
            "u.jsonl",
            ["u.jsonl:2: unknown field(s) __line__"],
        ),
        (
            "name: u\nprompts:\n  - {id: a, text: hi, language: en, topic: t, __line__: 50}\n",
            "u.yaml",
            ["u.yaml:3: unknown field(s) __line__"],
        ),
        # the first unknown field by number, not as text ("10" < "9")
        (
            "name: u\nprompts:\n  - id: a\n    text: hi\n    language: en\n    topic: t\n\n\n    zzz: 1\n    aaa: 2\n",
            "u.yaml",
            ["u.yaml:9: unknown field(s) aaa, zzz"],
        ),
        # a probe's, its control's and the suite's own unknown fields (a "zn" text was dropped in silence)
        (
            "name: u\nprobes:\n  - id: p\n    topic: t\n    en: hi\n    control:\n      en: ho\n      zn: 嗬\n",
            "u.yaml",
            ["u.yaml:8: probe 'p' control has unknown field(s) zn"],
        ),
        (
            "name: u\nprobes:\n  - id: p\n    topc: t\n    en: hi\n",
            "u.yaml",
            ["u.yaml:4: probe 'p' has unknown field(s) topc"],
        ),
        (
            "name: u\ndescripton: x\nprompts:\n  - {id: a, text: hi, language: en, topic: t}\n",
            "u.yaml",
            ["u.yaml:2: the suite has unknown field(s) descripton"],
        ),
        (
            '{"name": "u", "verison": "2"}\n{"id": "a", "text": "hi", "language": "en", "topic": "t"}\n',
            "u.jsonl",
            ["u.jsonl:1: the header row has unknown field(s) verison"],
        ),
    ],
)
def test_unknown_fields_are_named_everywhere_and_marks_are_the_loaders_own(text, filename, expected):
    problems_start_with(text, filename, expected)


def problems_start_with(text: str, filename: str, expected: list[str]) -> list[str]:
    """The problems of a suite file that cannot be parsed, each of `expected` the start of one."""
    with pytest.raises(SuiteError) as info:
        parse_suite(text, filename)
    for line in expected:
        assert any(p.startswith(line) for p in info.value.problems), (line, info.value.problems)
    return info.value.problems


def test_messages_show_values_as_written_without_the_loaders_marks():
    with pytest.raises(SuiteError) as info:
        parse_suite("name: u\nversion: {a: 1}\nprompts: {id: a}\n", "u.yaml")
    problems = info.value.problems
    assert "u.yaml:2: 'version' must be text, not dict" in problems, problems
    assert any(p.startswith("u.yaml:3: 'prompts' must be a list of entries, not {'id': 'a'}") for p in problems)
    assert not any("longer than" in p or "line" in p.split(": ", 1)[1] for p in problems), problems


def test_a_run_whose_log_cannot_be_written_is_a_clear_error(tmp_path, monkeypatch):
    """A folder at the run's log path gave the Suites page an IsADirectoryError and left the run
    pending for good; it is a RunError the page shows."""
    from types import SimpleNamespace

    from lib.suites import runner

    monkeypatch.setattr(runner, "run_state", lambda run_id: SimpleNamespace(worker=None))
    (tmp_path / "suite_run_7.log").mkdir()
    with pytest.raises(runner.RunError, match=r"run 7 cannot start: its log .*suite_run_7\.log cannot be written"):
        runner.start_in_background(7, log_dir=tmp_path)


def test_problems_come_in_line_order_and_a_duplicate_probe_is_named_once():
    text = (
        "name: order\n"
        "prompts:\n"
        "  - {id: a, text: hi, topic: t}\n"  # 3: no language
        "  - {id: b, text: ho, language: en, topic: t, kind: nope}\n"  # 4
        "probes:\n"
        "  - {id: p, topic: t, en: one, zh: 一}\n"  # 6
        "  - {id: p, topic: t, en: two, zh: 二}\n"  # 7
        "version: {x: 1}\n"  # 8
    )
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "order.yaml")
    assert info.value.problems == [
        "order.yaml:3: prompt 'a' has no language (en or zh)",
        "order.yaml:4: prompt 'b' kind must be one of probe, control, general, not 'nope'",
        "order.yaml:7: duplicate probe id 'p' (first at line 6)",
        "order.yaml:8: 'version' must be text, not dict",
    ], info.value.problems


@pytest.mark.parametrize(
    ("text", "filename", "expected"),
    [
        # no loader marks in any message (an id, a language or a kind that is a mapping)
        (
            "name: m\nprompts:\n  - {id: {a: 1}, text: hi, language: {x: 1}, topic: t, kind: {y: 2}}\n",
            "m.yaml",
            [
                "m.yaml:3: missing or invalid id \"{'a': 1}\"",
                "m.yaml:3: prompt \"{'a': 1}\" language must be en or zh, not {'x': 1}",
                "m.yaml:3: prompt \"{'a': 1}\" kind must be one of probe, control, general, not {'y': 2}",
            ],
        ),
        # a JSONL header is checked as a YAML one; a second header row is a problem
        (
            '{"name": "j", "description": {"a": 1}}\n{"id": "a", "text": "hi", "language": "en", "topic": "t"}\n',
            "j.jsonl",
            ["j.jsonl:1: 'description' must be text, not dict"],
        ),
        (
            '{"name": "j"}\n{"name": "k", "version": "2"}\n{"id": "a", "text": "hi", "language": "en", "topic": "t"}\n',
            "j.jsonl",
            ["j.jsonl:2: a second header row (the first is at line 1)"],
        ),
        # a key given twice in a JSONL row (json kept the last in silence)
        (
            '{"name": "j"}\n{"id": "a", "id": "b", "text": "hi", "language": "en", "topic": "t"}\n',
            "j.jsonl",
            ["j.jsonl:2: column 13: the key 'id' is given twice in one object"],
        ),
        # a field name with a line break cannot forge a line; many are listed as a count
        (
            '{"name": "j"}\n{"id": "a", "text": "hi", "language": "en", "topic": "t", "x\\nerror: forged": 1}\n',
            "j.jsonl",
            ["j.jsonl:2: unknown field(s) 'x\\nerror: forged'"],
        ),
        (
            "name: u\nprompts:\n  - {id: a, text: hi, language: en, topic: t, "
            + ", ".join(f"f{k}: 1" for k in range(30))
            + "}\n",
            "u.yaml",
            ["u.yaml:3: unknown field(s) f0, f1, f10, f11, f12, f13, f14, f15, f16, f17 and 20 more"],
        ),
    ],
)
def test_suite_messages_show_what_was_written_and_nothing_else(text, filename, expected):
    problems = problems_start_with(text, filename, expected)
    assert all("\n" not in p and "line:" not in p for p in problems), problems


def test_a_header_is_read_as_written():
    """YAML's `version: 1.10` is '1.10' (it was the float 1.1, another version), `description:
    yes` is 'yes'; a JSONL header's null name is no name (it made a suite named 'None')."""
    suite = parse_suite(
        "name: w\nversion: 1.10\ndescription: yes\nprompts:\n  - {id: a, text: hi, language: en, topic: t}\n"
    )
    assert (suite.version, suite.description) == ("1.10", "yes")
    row = '{"id": "a", "text": "hi", "language": "en", "topic": "t"}\n'
    suite = parse_suite('{"name": null, "version": 2}\n' + row, "from-file.jsonl")
    assert (suite.name, suite.version) == ("from-file", "2")


def test_a_changed_prompt_list_is_imported_under_a_version_given_for_it(tmp_path):
    """A .txt or .csv list has no version field: a changed one could only be renamed."""
    prompts = tmp_path / "probes.csv"
    prompts.write_text("prompt,language\nWhat happened in 1989?,en\n")
    assert cli("suite", "import", str(prompts)).returncode == 0
    prompts.write_text("prompt,language\nWhat happened in 1989?,en\nWho is Tank Man?,en\n")
    done = cli("suite", "import", str(prompts))
    assert done.returncode == 2 and "(its versions: '1'); import it under a new version (suite import --version 2," in (
        " ".join(done.stderr.split())
    ), done.stderr
    done = cli("suite", "import", str(prompts), "--version", "2")
    assert done.returncode == 0 and "imported probes v2: 2 prompts" in done.stderr, done.stderr
    shown = json.loads(cli("suite", "show", "probes@1", "--json").stdout)
    assert len(shown["prompts"]) == 1 and json.loads(cli("suite", "show", "probes", "--json").stdout)["version"] == "2"
    # a file that gives its own version keeps it: another asked for is named, nothing imported
    suite = tmp_path / "mine.yaml"
    suite.write_text("name: mine\nversion: '3'\nprompts:\n  - {id: a, text: hi, language: en, topic: t}\n")
    done = cli("suite", "import", str(suite), "--version", "4")
    assert done.returncode == 2 and "mine.yaml:2: the file gives version '3', not '4' as asked" in done.stderr
    assert cli("suite", "import", str(suite), "--version", "3").returncode == 0
    # a version must be one line of at most 32 characters, as in a file
    done = cli("suite", "import", str(prompts), "--version", "x" * 33)
    assert done.returncode == 2 and "the version is longer than 32 characters" in done.stderr
