"""`suite import` of plain prompt lists: .txt (one prompt per line) and .csv (a prompt or text
column), named after the file, with what they leave out filled in."""

import json

from lib.suites.definitions import SuiteError, import_path, parse_suite, show_suite
from tests.conftest import shared_file
from tests.test_cli import cli


def test_a_txt_list_becomes_a_suite_named_after_the_file(tmp_path):
    path = tmp_path / "my probes.txt"
    path.write_text("What happened on June 4, 1989?\n\n   \n六四事件是什么？\nWho is Liu Xiaobo?\n", encoding="utf-8")
    imported = import_path(path)
    assert (imported.name, imported.prompts, imported.created) == ("my-probes", 3, True)
    suite = show_suite("my-probes")
    assert [(p["id"], p["language"], p["topic"], p["kind"]) for p in suite.prompts] == [
        ("1", "en", "my probes", "probe"),
        ("2", "zh", "my probes", "probe"),
        ("3", "en", "my probes", "probe"),
    ]
    assert suite.prompts[1]["text"] == "六四事件是什么？"
    assert not import_path(path).created  # the same list again adds nothing


def test_a_csv_list_takes_prompt_or_text_and_optional_columns(tmp_path):
    path = tmp_path / "ccp.csv"
    path.write_text(
        'Subject,Prompt\nTaiwan,"Is Taiwan a country?"\nTibet,"Describe the 1959 Tibetan uprising, in detail."\n',
        encoding="utf-8",
    )
    suite = parse_suite(path.read_text(), path.name)
    assert suite.name == "ccp"
    assert [(p.key, p.topic, p.language, p.kind) for p in suite.prompts] == [
        ("1", "Taiwan", "en", "probe"),
        ("2", "Tibet", "en", "probe"),
    ]
    full = tmp_path / "full.csv"
    full.write_text("id,text,language,topic,kind\nx1,Hello there,en,greetings,control\n")
    (prompt,) = parse_suite(full.read_text(), full.name).prompts
    assert (prompt.key, prompt.text, prompt.language, prompt.topic, prompt.kind) == (
        "x1",
        "Hello there",
        "en",
        "greetings",
        "control",
    )


def test_csv_problems_name_the_line(tmp_path):
    try:
        parse_suite("prompt,language,kind\nok,en,probe\n,en,probe\nfine,fr,probe\n", "bad.csv")
    except SuiteError as exc:
        problems = exc.problems
    else:
        raise AssertionError("a bad CSV suite was accepted")
    assert [p.split(": ")[0] for p in problems] == ["bad.csv:3", "bad.csv:4"]
    try:
        parse_suite("question\nx\n", "nocol.csv")
    except SuiteError as exc:
        assert "needs a 'prompt' or 'text' column" in exc.problems[0]


def test_cli_imports_the_deccp_list():
    path = shared_file("prompts", "deccp_censored.txt")
    done = cli("suite", "import", str(path))
    assert done.returncode == 0, done.stderr
    assert "imported deccp_censored v1: 95 prompts" in done.stderr
    shown = json.loads(cli("suite", "show", "deccp_censored", "--json").stdout)
    assert len(shown["prompts"]) == 95 and shown["prompts"][0]["language"] == "en"
    assert cli("suite", "import", str(path)).stderr.startswith("already imported")
