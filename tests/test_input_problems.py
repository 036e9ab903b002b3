"""Input files that cannot be used are reported in one format by every command that reads them
(classify, import, suite import): 'error: FILE has N problems; nothing was …', then each problem
on its own line as NAME:LINE: message. Suite prompts have the one prompt limit
(PARALLAX_MAX_PROMPT_CHARS) and no repeated text; counts read '1 row', not '1 rows'."""

import json

import pytest

from lib.suites.definitions import SuiteError, parse_suite
from tests.test_cli import cli

GOOD = {"prompt": "What is the capital of France?", "model": "m", "response": "Paris.", "language": "en"}


@pytest.mark.parametrize(
    ("command", "name", "outcome"),
    [
        (["classify"], "answers.jsonl", "nothing was written"),
        (["import"], "answers.jsonl", "nothing was imported"),
        (["suite", "import"], "prompts.jsonl", "nothing was imported"),
    ],
)
def test_every_reader_reports_problems_as_file_line_message_under_one_heading(command, name, outcome, tmp_path):
    path = tmp_path / name
    good = GOOD if command[0] != "suite" else {"id": "a", "text": "q", "language": "en", "topic": "t"}
    path.write_text(json.dumps(good) + '\n{"prompt": "a" "response": "b"}\n[1, 2]\n')
    extra = ["-o", str(tmp_path / "out.jsonl")] if command == ["classify"] else []
    done = cli(*command, str(path), *extra)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: {path} has 2 problems; {outcome}", done.stderr
    assert lines[1].startswith(f"  {name}:2: not JSON at column 16: expecting ',' delimiter"), done.stderr
    assert lines[2].startswith(f"  {name}:3: "), done.stderr
    assert len(lines) == 3 and not (tmp_path / "out.jsonl").exists(), done.stderr  # no progress bar left above


def test_classify_says_a_line_that_is_not_an_object_is_not_an_object(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('[1, 2]\n"text"\n{"prompt": "q"}\n')
    done = cli("classify", str(path), "-o", str(tmp_path / "out.jsonl"))
    assert done.returncode == 2, done.stderr
    # classify reads rows with import's reader, and says what it says
    assert "rows.jsonl:1: each record must be an object" in done.stderr, done.stderr
    assert "rows.jsonl:2: each record must be an object" in done.stderr
    assert "rows.jsonl:3: missing response (or answer, output, completion)" in done.stderr


def test_counts_of_one_are_singular(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(GOOD) + "\n")
    done = cli("classify", str(path), "-o", str(tmp_path / "out.jsonl"))
    assert done.returncode == 0 and "labelled 1 row into" in done.stderr, done.stderr
    done = cli("import", str(path))
    assert done.returncode == 0 and "imported 1 answer in 1 conversation from" in done.stderr, done.stderr
    (tmp_path / "one.txt").write_text("Only one question?\n")
    done = cli("suite", "import", str(tmp_path / "one.txt"))
    assert done.returncode == 0 and "imported one v1: 1 prompt" in done.stderr, done.stderr


def test_a_suite_prompt_has_the_one_prompt_limit_of_the_settings(tmp_path, monkeypatch):
    long = "Why?" * 6_250  # 25,000 characters: under the default limit of 32,000
    assert len(parse_suite(f"{long}\nShort one\n", "long.txt").prompts[0].text) == 25_000
    monkeypatch.setenv("PARALLAX_MAX_PROMPT_CHARS", "100")
    with pytest.raises(SuiteError) as caught:
        parse_suite(f"Short one\n{'x' * 150}\n", "long.txt")
    assert caught.value.problems == [
        "long.txt:2: prompt '2' is 150 characters; the limit is 100 (PARALLAX_MAX_PROMPT_CHARS)"
    ]
    yaml = f"name: s\nprobes:\n  - {{id: p, topic: t, en: {'y' * 150}}}\n"
    with pytest.raises(SuiteError) as caught:
        parse_suite(yaml, "s.yaml")
    assert "the limit is 100 (PARALLAX_MAX_PROMPT_CHARS)" in caught.value.problems[0]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("list.txt", "Who is Xi Jinping?\nWhat is Taiwan?\n Who is Xi Jinping? \n"),
        ("list.csv", "prompt\nWho is Xi Jinping?\nWhat is Taiwan?\nWho is Xi Jinping?\n"),
        (
            "s.jsonl",
            "\n".join(
                json.dumps({"id": key, "text": text, "language": "en", "topic": "t"})
                for key, text in (("a", "Who is Xi Jinping?"), ("b", "What is Taiwan?"), ("c", "Who is Xi Jinping?"))
            ),
        ),
    ],
)
def test_a_prompt_repeated_in_a_suite_file_is_a_problem_naming_both_lines(name, text):
    with pytest.raises(SuiteError) as caught:
        parse_suite(text, name)
    (problem,) = caught.value.problems
    line = 4 if name.endswith(".csv") else 3
    first = 2 if name.endswith(".csv") else 1
    assert problem.startswith(f"{name}:{line}: prompt ") and f"(line {first}); remove one" in problem, problem
