"""Control characters (an escape sequence, a bell…) in what people wrote — a suite's prompts in any
of its formats, an import's prompts, system prompts and model names — refuse the file with its
name and line, as the README says, and nothing is stored; tabs and line breaks are text and
survive. What a model answered is kept as it came (it is shown through the one render path)."""

import csv
import io
import json

import pytest

from lib.imports import ImportProblems
from lib.imports.readers import read_bytes
from lib.suites.definitions import SuiteError, parse_suite
from tests.test_cli import cli

ESC = "Tell me \x1b[31mabout\x1b[0m Tibet"
BEL = "third \x07 bell"


def _suite(fmt: str, first: str, second: str) -> tuple[str, str]:
    """A two-prompt suite file of one format: (file name, text); the second prompt is on line 3."""
    if fmt == "txt":
        return "list.txt", f"{first}\n\n{second}\n"
    if fmt == "csv":
        table = io.StringIO(newline="")
        csv.writer(table, lineterminator="\n").writerows([["prompt"], [first], [second]])
        return "list.csv", table.getvalue()
    if fmt == "jsonl":
        rows = [{"name": "s", "version": "1"}] + [
            {"id": f"p{i}", "text": t, "language": "en", "topic": "t"} for i, t in enumerate((first, second))
        ]
        return "s.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n"
    body = "\n".join(f"  - {{id: p{i}, text: {json.dumps(t)}, language: en, topic: t}}" for i, t in enumerate((first,)))
    return "s.yaml", f"name: s\nprompts:\n{body}\n  - {{id: p1, text: {json.dumps(second)}, language: en, topic: t}}\n"


@pytest.mark.parametrize("fmt", ["txt", "csv", "jsonl", "yaml"])
@pytest.mark.parametrize(("text", "named"), [(ESC, "ESC"), (BEL, "BEL"), ("start of heading \x01", "U+0001")])
def test_a_control_character_in_a_suite_prompt_is_a_problem_with_its_file_and_line(fmt, text, named):
    name, data = _suite(fmt, "What is the capital of France?", text)
    with pytest.raises(SuiteError) as caught:
        parse_suite(data, name)
    (problem,) = caught.value.problems
    line = 4 if fmt == "yaml" else 3
    assert problem.startswith(f"{name}:{line}: prompt ") and f"a control character ({named})" in problem, problem


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "yaml"])
def test_tabs_and_line_breaks_in_a_suite_prompt_survive(fmt):
    text = "Compare:\tA\r\nand\tB\n\nin two lines"
    name, data = _suite(fmt, "What is the capital of France?", text)
    suite = parse_suite(data, name)
    assert suite.prompts[1].text.replace("\r\n", "\n") == text.replace("\r\n", "\n")
    tabbed = parse_suite("col one\tcol two\nnext\n", "list.txt")
    assert [p.text for p in tabbed.prompts] == ["col one\tcol two", "next"]


def test_suite_import_refuses_the_file_on_the_command_line_and_stores_nothing(tmp_path):
    path = tmp_path / "probes.txt"
    path.write_text(f"first\n{ESC}\n{BEL}\n")
    done = cli("suite", "import", str(path))
    assert done.returncode == 2, done.stderr
    assert "probes.txt:2: prompt '2' contains a control character (ESC)" in done.stderr
    assert "probes.txt:3: prompt '3' contains a control character (BEL)" in done.stderr
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr
    assert "probes" not in cli("suite", "list").stdout


def _problems(data: str, name: str) -> list[str]:
    try:
        return read_bytes(data.encode(), name).problems
    except ImportProblems as exc:
        return exc.problems


def test_an_import_refuses_control_characters_in_prompts_system_prompts_and_model_names_not_answers():
    rows = [
        {"prompt": ESC, "model": "m", "response": "fine"},
        {"prompt": "q", "model": "m\x1b[2J", "response": "fine"},
        {"prompt": "q", "model": "m", "system": BEL, "response": "fine"},
        {"prompt": "q\ttabbed\nover lines", "model": "m", "response": "an answer with \x1b[31mcolour\x1b[0m"},
    ]
    problems = _problems("\n".join(json.dumps(r) for r in rows) + "\n", "rows.jsonl")
    assert problems == [
        "rows.jsonl:1: prompt (or question, input) contains a control character (ESC); remove it",
        "rows.jsonl:2: model (or model_name) contains a control character (ESC); remove it",
        "rows.jsonl:3: system contains a control character (BEL); remove it",
    ], problems
    battle = {
        "model_a": "a",
        "model_b": "b",
        "winner": "model_a",
        "conversation_a": [{"role": "user", "content": ESC}, {"role": "assistant", "content": "x"}],
        "conversation_b": [{"role": "user", "content": ESC}, {"role": "assistant", "content": "y"}],
    }
    problems = _problems(json.dumps(battle) + "\n", "battles.jsonl")
    assert problems[0] == "battles.jsonl:1: conversation_a has a user message with a control character (ESC); remove it"


def test_control_character_names_the_first_one_and_allows_tabs_and_line_breaks():
    from lib.safety import control_character

    assert control_character("plain\ttext\r\nover lines\u2028and a separator") is None
    assert control_character("a\x1bb\x07") == "ESC" and control_character("\x9b") == "U+009B"
    assert control_character("tab\there", allowed="") == "TAB"
