"""Bad input ends in one clear message naming the variable, file or line, exit 2, and nothing
written: every PARALLAX_ setting on every command path, endpoints files, suite files."""

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from db.engine import session_scope
from db.models import Response, Suite
from tests.conftest import ROOT, as_read
from tests.test_cli import cli

COMMANDS = [
    ["models"],
    ["ask", "hi", "-m", "smollm2"],
    ["suite", "list"],
    ["suite", "status", "1"],
    ["leaderboard"],
    ["export", "-f", "trl", "-o", "out.jsonl"],
    ["classify", "--db"],
    ["analyze", "--json"],
]
SETTINGS = [
    ("PARALLAX_MAX_PROMPT_CHARS", "lots"),
    ("PARALLAX_MAX_PROMPT_CHARS", "-5"),
    ("PARALLAX_DATABASE_URL", "not a url"),
    ("PARALLAX_DATABASE_URL", "postgres://user:hunter2@db.example/parallax"),
    ("PARALLAX_DATABASE_URL", "postgresql+psycopg://user:hunter2@db.example:port/parallax"),
    ("PARALLAX_DATABASE_URL", "sqlite://"),
    ("PARALLAX_LOCAL_URL", "file:///tmp/sock"),
    ("PARALLAX_LLAMA_THREADS", "all"),
    ("PARALLAX_ENDPOINTS", "/no/such/endpoints.toml"),
]


@pytest.mark.parametrize(("variable", "value"), SETTINGS)
@pytest.mark.parametrize("command", [COMMANDS[0], COMMANDS[1]], ids=["models", "ask"])
def test_a_bad_setting_is_named_and_exits_2(variable, value, command):
    done = cli(*command, env={variable: value})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert variable in done.stderr and "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr  # a password in the URL is never repeated


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_command_path_refuses_a_bad_prompt_limit_and_a_bad_database_url(command, tmp_path):
    for variable, value in (("PARALLAX_MAX_PROMPT_CHARS", "abc"), ("PARALLAX_DATABASE_URL", "::nonsense::")):
        done = cli(*command, env={variable: value})
        assert done.returncode == 2 and variable in done.stderr, (command, done.stderr)
    assert not (ROOT / "out.jsonl").exists()


def test_the_app_names_a_bad_setting_instead_of_failing(monkeypatch):
    monkeypatch.setenv("PARALLAX_MAX_PROMPT_CHARS", "32k")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("PARALLAX_MAX_PROMPT_CHARS" in as_read(e.value) for e in at.error)


def test_an_endpoints_file_with_a_non_utf8_byte_exits_2_naming_file_and_line(tmp_path):
    user = tmp_path / "endpoints.user.toml"
    user.write_bytes(b'[endpoints.mine]\nname = "Gr\xfc\xdfe"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n')
    done = cli("models")
    assert done.returncode == 2 and f"{user}, line 2: not UTF-8" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ('prices = { input = "2.50", output = "10" }', "price 'input' must be a number"),
        ('base_url = "ftp://files.example/v1"', "http:// or https://"),
        ('base_url = "file:///etc/passwd"', "http:// or https://"),
        ('base_url = "127.0.0.1:8000/v1"', "http:// or https://"),
        ('key_env = "PARALLAX_DATABASE_URL"', "key_env must name"),
        ('name = "a\\u001b[31mred"', "control character (ESC)"),
    ],
)
def test_endpoint_values_that_cannot_work_exit_2_before_anything_is_stored(tmp_path, field, message):
    lines = ['base_url = "http://127.0.0.1:9/v1"', 'model = "m"', 'kind = "local"']
    key = field.split(" =")[0]
    body = "\n".join([line for line in lines if not line.startswith(key + " ")] + [field])
    (tmp_path / "endpoints.user.toml").write_text(f"[endpoints.mine]\n{body}\n")
    done = cli("ask", "hi", "-m", "mine", "--json")
    where = f"line {body.count(chr(10)) + 2}: [endpoints.mine]"  # the field's own line, the last
    assert done.returncode == 2 and message in done.stderr and where in done.stderr, done.stderr
    with session_scope() as s:
        assert s.scalar(select(func.count(Response.id))) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: five\nprompts: 5\n", "five.yaml:2: 'prompts' must be a list"),
        ("name: seven\nprobes: 7\n", "seven.yaml:2: 'probes' must be a list"),
        ("name: word\nprompts: hello\n", "word.yaml:2: 'prompts' must be a list"),
        ("name: v\nversion: {major: 1}\nprompts:\n  - {id: a, text: hi, language: en, topic: t}\n", "'version' must"),
        ("name: t\nprompts:\n  - {id: a, text: hi, language: en, topic: t, twin: [b]}\n", "twin must be a prompt id"),
        ("name: p\nprobes:\n  - {id: p, topic: t, en: [1, 2]}\n", "probe 'p' texts must be text"),
        ("name: c\nprobes:\n  - {id: p, topic: t, en: hi, control: nope}\n", "control must be a mapping"),
    ],
)
def test_malformed_suite_files_exit_2_naming_the_line_and_import_nothing(tmp_path, text, message):
    path = tmp_path / f"{text.split()[1]}.yaml"
    path.write_text(text)
    done = cli("suite", "import", str(path))
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    with session_scope() as s:
        assert s.scalar(select(func.count(Suite.id)).where(Suite.name == text.split()[1])) == 0


def test_a_gbk_suite_file_is_imported_with_a_warning_naming_the_line(tmp_path):
    # text that is not UTF-8 is not an error (issue 12): it becomes U+FFFD, and the user is told
    # which file and line to save as UTF-8
    path = tmp_path / "gbk.yaml"
    path.write_bytes("name: gbk\nprompts:\n  - {id: a, text: 天安门, language: zh, topic: t}\n".encode("gbk"))
    done = cli("suite", "import", str(path))
    assert done.returncode == 0 and f"{path}, line 3: not UTF-8" in done.stderr, done.stderr
    assert "replaced by U+FFFD" in done.stderr and "imported gbk v1: 1 prompt\n" in done.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [(b'OPENAI_API_KEY = "sk-abc\xff"\n', "line 1: not UTF-8"), (b"OPENAI_API_KEY = sk-abc\n", "not valid TOML")],
)
def test_a_broken_secrets_file_is_named_without_showing_its_content(tmp_path, content, message):
    (tmp_path / "secrets.toml").write_bytes(content)
    done = cli("models")
    assert done.returncode == 2 and message in done.stderr and "secrets.toml" in done.stderr, done.stderr
    assert "sk-abc" not in done.stderr


def test_a_llama_server_setting_that_is_not_an_executable_is_named(tmp_path):
    done = cli("models", env={"PARALLAX_LLAMA_SERVER": str(tmp_path / "missing")})
    assert done.returncode == 2 and "PARALLAX_LLAMA_SERVER" in done.stderr, done.stderr


def test_a_settings_path_too_long_for_the_file_system_is_named_not_a_traceback(tmp_path):
    """A file name longer than the file system allows ('File name too long') was an OSError
    traceback (exit 1) from the settings check."""
    for variable in ("PARALLAX_USER_ENDPOINTS", "PARALLAX_SECRETS", "PARALLAX_ENDPOINTS"):
        done = cli("models", env={variable: str(tmp_path / ("x" * 300) / "e.toml")})
        assert done.returncode == 2 and "Traceback" not in done.stderr, (variable, done.stderr)
        assert f"{variable} is" in done.stderr and "cannot be used (File name too long)" in done.stderr, done.stderr
