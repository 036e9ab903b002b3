"""Hostile and mistaken input found by the security review: YAML aliases ("billion laughs"),
data nested deeper than anyone writes by hand, endpoint values that cannot work, non-UTF-8 rows,
languages Parallax does not compare, folders given as files, and judge calls that failed. Each is
one named problem (file and line, or the setting), exit code 2, nothing written; never a
traceback."""

import json

import pytest
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import Exchange, Label
from lib.files import TOO_DEEP, InputFileError, load_json, read_text_lenient
from lib.imports import ImportProblems, import_file
from lib.imports.readers import read_bytes
from lib.providers.chat import Column, ask
from lib.providers.endpoints import EndpointConfigError, load_endpoints, save_user_endpoint
from lib.providers.signals import provider_message
from lib.suites.definitions import SuiteError, parse_suite
from tests.conftest import fake_endpoint
from tests.test_cli import cli

PROMPT = "  - {id: a1, text: hi, language: en, topic: t}\n"


def _count(model) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model))


# --- 1. YAML aliases ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: x\nprompts:\n  - &a {id: a1, text: hi, language: en, topic: t}\n  - *a\n", 4),
        ("name: x\nbase: &b {language: en, topic: t}\nprompts:\n  - {<<: *b, id: a1, text: hi}\n", 4),
        ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b]\n", 2),
    ],
)
def test_yaml_aliases_in_a_suite_are_refused_with_their_line(text, line):
    with pytest.raises(SuiteError) as caught:
        parse_suite(text, "laughs.yaml")
    assert caught.value.problems == [
        f"laughs.yaml:{line}: aliases (*{text.split('*')[1][0]}) are not allowed in suite files; write the value out"
    ]


def test_an_anchor_without_an_alias_is_still_a_suite():
    assert parse_suite("name: x\nprompts:\n  - &a {id: a1, text: hi, language: en, topic: t}\n", "s.yaml").name == "x"


def test_a_billion_laughs_suite_exits_2_quickly_and_imports_nothing(tmp_path):
    laughs = "name: lol\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    laughs += "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    laughs += "prompts: *l9\n"
    (tmp_path / "laughs.yaml").write_text(laughs)
    done = cli("suite", "import", str(tmp_path / "laughs.yaml"))
    assert done.returncode == 2, done.stderr
    assert "laughs.yaml:3: aliases (*l0) are not allowed" in done.stderr
    assert "Traceback" not in done.stderr


# --- 2. deep nesting ------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def test_deep_json_is_too_deep_with_its_line_and_shallow_json_is_not():
    with pytest.raises(ValueError) as caught:
        load_json("[\n\n" + DEEP)
    assert str(caught.value) == f"line 3: {TOO_DEEP}"
    with pytest.raises(ValueError) as caught:  # parses, but deeper than the cap
        load_json("[" * 150 + "]" * 150)
    assert str(caught.value) == f"line 1: {TOO_DEEP}"
    assert load_json("[" * 100 + "]" * 100) == load_json("[" * 100 + "]" * 100)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("deep.json", "\n" + DEEP, f"deep.json:2: {TOO_DEEP}"),
        ("deep.jsonl", '{"prompt": "p", "model": "m", "response": "r"}\n' + DEEP, f"deep.jsonl:2: {TOO_DEEP}"),
        ("deep.jsonl", '{"prompt": "p", "model": "m", "response": ' + DEEP + "}", f"deep.jsonl:1: {TOO_DEEP}"),
        (
            "battles.csv",
            'model_a,model_b,winner,conversation_a,conversation_b\na,b,tie,"' + "[" * 5000 + '","[]"\n',
            f"battles.csv:2: conversation_a is {TOO_DEEP}",
        ),
    ],
)
def test_deeply_nested_import_files_are_a_named_problem(name, text, problem):
    try:
        problems = read_bytes(text.encode(), name).problems
    except ImportProblems as exc:  # a file that cannot be read at all
        problems = exc.problems
    assert problem in problems


def test_cli_import_of_deep_json_exits_2_and_writes_nothing(tmp_path):
    (tmp_path / "deep.json").write_text(DEEP)
    done = cli("import", str(tmp_path / "deep.json"))
    assert done.returncode == 2, done.stderr
    assert f"deep.json:1: {TOO_DEEP}" in done.stderr and "Traceback" not in done.stderr
    assert _count(Exchange) == 0


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("deep.yaml", "name: d\nprompts: " + "[" * 5000, f"deep.yaml:2: {TOO_DEEP}"),
        (
            "deep.yaml",
            "name: d\nprompts:\n" + "".join("  " * i + "-\n" for i in range(300)),
            f"deep.yaml:102: {TOO_DEEP}",
        ),
        ("deep2.jsonl", '{"name": "d"}\n' + "[" * 5000 + "]" * 5000, f"deep2.jsonl:2: {TOO_DEEP}"),
    ],
)
def test_deeply_nested_suite_files_are_a_named_problem(name, text, problem):
    with pytest.raises(SuiteError) as caught:
        parse_suite(text, name)
    assert problem in caught.value.problems


def test_cli_suite_import_of_deep_yaml_exits_2_and_stores_nothing(tmp_path):
    (tmp_path / "deep.yaml").write_text("prompts: " + "[" * 5000)
    done = cli("suite", "import", str(tmp_path / "deep.yaml"))
    assert done.returncode == 2, done.stderr
    assert f"deep.yaml:1: {TOO_DEEP}" in done.stderr and "Traceback" not in done.stderr


def test_a_deeply_nested_endpoints_file_is_named_with_its_line(tmp_path):
    user = tmp_path / "endpoints.user.toml"
    user.write_text('[endpoints.t]\nbase_url = "http://x/v1"\nmodel = "m"\nparams = { a = ' + "[" * 3000 + " }\n")
    with pytest.raises(EndpointConfigError) as caught:
        load_endpoints(user_path=user)
    assert str(caught.value) == f"{user}, line 4: {TOO_DEEP}"


def test_a_deeply_nested_provider_error_body_is_read_as_text():
    assert provider_message("[" * 100_000).startswith("[[[")


# --- 3. endpoint values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('base_url = "http://[::1/v1"', "base_url is not a valid URL (Invalid IPv6 URL)"),
        ('base_url = "http://u:secret@[::1]:notaport/v1"', "invalid port: 'http://***@[::1]:notaport/v1'"),
        ('base_url = "ftp://u:secret@host/v1"', "'ftp://***@host/v1'"),
        # a key in the query string (?key=… is how some providers take one) is not shown either
        ('base_url = "ftp://host/v1?key=sk-secret#x"', "not 'ftp://host/v1?***'"),
        ('base_url = "http://host:port/v1#sk-secret"', "invalid port: 'http://host:port/v1#***'"),
        ("prices = { input = nan }", "price 'input' must be a number of USD per 1M tokens from 0 to 10,000"),
        ("prices = { output = inf }", "price 'output' must be a number"),
        ("prices = { input = 1e308 }", "price 'input' must be a number"),
        ("prices = { input = -1 }", "price 'input' must be a number"),
        ("timeout = inf", "timeout must be more than 0"),
        ("max_retries = 1000000000", "max_retries must be 0 or more, at most 100"),
        ("params = { stream = false }", "params may not set 'stream'"),
        ('params = { model = "other", messages = [] }', "params may not set 'model', 'messages'"),
        ("params = { n = 3 }", "params may not set 'n'"),
        ("params = { stream_options = { include_usage = false } }", "params may not set 'stream_options'"),
        ("params = { tools = [] }", "params may not set 'tools'"),
        ("params = { temperature = nan }", "params temperature holds nan or inf"),
    ],
)
def test_endpoint_values_that_cannot_work_are_named(tmp_path, line, message):
    user = tmp_path / "endpoints.user.toml"
    base = "" if line.startswith("base_url") else 'base_url = "http://localhost:1/v1"\n'
    user.write_text(f'[endpoints.t]\nmodel = "m"\n{base}{line}\n')
    with pytest.raises(EndpointConfigError) as caught:
        load_endpoints(user_path=user)
    assert message in str(caught.value) and "[endpoints.t]" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_cli_models_with_a_broken_ipv6_url_exits_2(tmp_path):
    (tmp_path / "endpoints.user.toml").write_text('[endpoints.t]\nmodel = "m"\nbase_url = "http://[::1/v1"\n')
    done = cli("models")
    assert done.returncode == 2, done.stderr
    assert "Invalid IPv6 URL" in done.stderr and "Traceback" not in done.stderr


def test_the_settings_form_refuses_a_broken_url_without_showing_its_password(tmp_path):
    user = tmp_path / "endpoints.user.toml"
    with pytest.raises(EndpointConfigError) as caught:
        save_user_endpoint("t", {"base_url": "http://me:hunter2@[::1/v1", "model": "m"}, user)
    assert "not a valid URL" in str(caught.value) and "hunter2" not in str(caught.value)
    assert not user.exists()


def test_sane_prices_and_params_still_load(tmp_path):
    user = tmp_path / "endpoints.user.toml"
    user.write_text(
        '[endpoints.t]\nmodel = "m"\nbase_url = "http://localhost:1/v1"\n'
        "prices = { input = 0.27, output = 1.1 }\nparams = { temperature = 0.2, max_tokens = 64 }\n"
    )
    endpoint = load_endpoints(user_path=user)["t"]
    assert endpoint.prices == {"input": 0.27, "output": 1.1} and endpoint.params["max_tokens"] == 64


# --- 4. encodings and languages -------------------------------------------------------------


def test_a_latin1_rows_csv_warns_naming_the_first_line_with_replaced_bytes():
    data = "prompt,model,response\nq,m,fine\nq2,m,caf\u00e9\n".encode("latin-1")
    parsed = read_bytes(data, "rows.csv")
    assert parsed.warnings[0].startswith(
        "rows.csv, line 3: not UTF-8 text (byte 0xe9 at offset 39); 1 character(s) were replaced by U+FFFD"
    )
    assert [a.response for a in parsed.answers] == ["fine", "caf\ufffd"] and not parsed.problems


@pytest.mark.parametrize("language", ["xx", "ru", "Klingon"])
def test_a_language_parallax_does_not_compare_is_a_named_problem(tmp_path, language):
    path = tmp_path / "rows.jsonl"
    rows = [{"prompt": "p", "model": "m", "response": "r"}, {"prompt": "p", "model": "m", "response": "r2"}]
    rows[1]["language"] = language
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ImportProblems) as caught:
        import_file(path)
    assert caught.value.problems == [
        f"rows.jsonl:2: language {language!r} is not en or zh (Parallax compares English and Chinese answers); "
        "leave it empty to detect the language from the prompt"
    ]
    assert _count(Exchange) == 0


@pytest.mark.parametrize("language", ["zh-CN", "Chinese", "中文", "EN"])
def test_names_and_regional_codes_of_en_and_zh_are_accepted(language):
    data = json.dumps({"prompt": "p", "model": "m", "response": "r", "language": language}).encode()
    parsed = read_bytes(data, "rows.jsonl")
    assert not parsed.problems and parsed.answers[0].language in ("en", "zh")


# --- 5. a folder given as a file ------------------------------------------------------------


def test_importing_a_folder_says_it_is_a_folder(tmp_path):
    (tmp_path / "rows.jsonl").mkdir()
    done = cli("import", str(tmp_path / "rows.jsonl"))
    assert done.returncode == 2 and "is a folder" in done.stderr and "no such file" not in done.stderr
    with pytest.raises(InputFileError, match="is a folder"):
        read_text_lenient(tmp_path / "rows.jsonl")
    with pytest.raises(ImportProblems, match="is a folder"):
        import_file(tmp_path / "rows.jsonl")


# --- 6. a judge call that failed is no verdict ----------------------------------------------


def test_classify_with_a_failing_judge_writes_no_label_and_exits_1(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.bad]\nbase_url = "{protocol_server.url}"\nmodel = "auth"\nkind = "local"\nmax_retries = 0\n'
    )
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "q", "response": "Paris."}) + "\n")
    done = cli("classify", str(rows), "-o", str(tmp_path / "out.jsonl"), "--judge", "bad")
    assert done.returncode == 1, done.stderr
    assert "1 judge call(s) failed (auth" in done.stderr
    (out,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out["label"] is None and out["confidence"] is None and out["judge_error"].startswith("auth")
    assert out["rule"] == "judge:bad:failed:auth"

    ask("Paris.", [Column("e", fake_endpoint(protocol_server.url, "echo", "e"))], label=False)
    done = cli("classify", "--db", "--judge", "bad")
    assert done.returncode == 1, done.stderr
    assert "labelled 0 responses" in done.stderr and "1 judge call(s) failed" in done.stderr
    with session_scope() as s:
        assert list(s.scalars(select(Label.source))) == []


LONG = "9" * 5000  # Python refuses to read an integer this long (CVE-2020-10735): ValueError


@pytest.mark.parametrize(
    ("name", "text", "args"),
    [
        ("a.jsonl", f'{{"prompt": "p", "model": "m", "response": "r", "pair": {LONG}}}\n', ["import"]),
        ("b.json", f'[{{"prompt": "p", "model": "m", "response": "r", "input_tokens": {LONG}}}]\n', ["import"]),
        ("s.yaml", f"name: s\nprompts:\n  - text: hello\n    weight: {LONG}\n", ["suite", "import"]),
        ("c.jsonl", f'{{"id": {LONG}, "prompt": "p", "response": "r"}}\n', ["classify"]),
    ],
)
def test_a_number_too_long_to_read_is_a_named_problem(tmp_path, name, text, args):
    path = tmp_path / name
    path.write_text(text)
    extra = ["-o", str(tmp_path / "out.jsonl")] if args == ["classify"] else []
    done = cli(*args, str(path), *extra)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "a number of more than 4,000 digits" in done.stderr and name in done.stderr, done.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_an_endpoints_file_with_a_number_too_long_names_its_line(tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.x]\nbase_url = "http://127.0.0.1:1/v1"\nmodel = "m"\ntimeout = {LONG}\n'
    )
    done = cli("models")
    assert done.returncode == 2 and "line 4: a number of more than 4,000 digits" in done.stderr, done.stderr
