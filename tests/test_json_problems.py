"""A JSON or JSON-lines file that does not parse: every reader (classify, import of JSONL, JSON and
a JSON cell in a CSV, suite files) names the file, the line as an editor counts it, the column and
what the decoder expected, with a short sanitised excerpt of what it found, never the whole line."""

import json

import pytest

from lib.files import iter_jsonl
from lib.imports import ImportProblems
from lib.imports.readers import read_bytes
from lib.suites.definitions import SuiteError, parse_suite
from tests.test_cli import cli

GOOD = '{"prompt": "p", "model": "m", "response": "fine", "text": "t", "id": "a", "language": "en", "topic": "t"}'
BAD = '{"prompt": "a" "response": "b"}'  # no comma: the decoder stops at column 16


def _imported(data: str, name: str) -> list[str]:
    """The problems an import reports for a file's text: raised at once, or collected per record."""
    try:
        return read_bytes(data.encode(), name).problems
    except ImportProblems as exc:
        return exc.problems


def _problems(reader: str, good: str, bad: str) -> list[str]:
    """The problems one reader reports for a file of a good row then a bad one (named after the reader)."""
    if reader == "import jsonl":
        return _imported(f"{good}\n{bad}\n", "rows.jsonl")
    if reader == "import json":
        return _imported(f"[\n {good},\n {bad}\n]\n", "rows.json")
    if reader == "suite jsonl":
        with pytest.raises(SuiteError) as caught:
            parse_suite(f"{good}\n{bad}\n", "rows.jsonl")
        return caught.value.problems
    if reader == "classify":
        return [problem for _, _, problem in iter_jsonl(f"{good}\n{bad}\n") if problem]
    raise AssertionError(reader)


@pytest.mark.parametrize("reader", ["import jsonl", "import json", "suite jsonl", "classify"])
def test_a_json_error_names_the_line_the_column_what_was_expected_and_what_was_found(reader):
    problems = [p for p in _problems(reader, GOOD, BAD) if "JSON" in p]
    assert len(problems) == 1, problems
    column = 17 if reader == "import json" else 16  # the JSON list's items are indented by one space
    assert f"not JSON at column {column}: expecting ',' delimiter, found '\"response\": \"b\"}}'" in problems[0]
    if reader != "classify":  # classify's command adds the file and line (tested below)
        assert problems[0].startswith(("rows.jsonl:2: ", "rows.json:3: ")), problems[0]


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('{"response": "ok\x1b[31mred"}', "column 17: contains a control character (ESC); remove it"),
        ('{"response": "never closed', "unterminated string, found '\"never closed'"),
        ('{"response": }', "expecting value, found '}'"),
        ('{"response": "a"} {"response": "b"}', 'extra data, found \'{"response": "b"}\''),
        ('{"response": ', "expecting value, found the end of the text"),
    ],
)
def test_the_decoders_reason_is_whole_not_cut_before_its_position(line, said):
    ((_, _, problem),) = list(iter_jsonl(line + "\n"))
    assert problem.endswith(said), problem


def test_hostile_text_is_quoted_short_and_escaped_never_whole():
    hostile = '{"response": ' + "\x1b]8;;http://evil\x07\u202eevil" + "x" * 100_000  # a value that is not JSON
    ((_, _, problem),) = list(iter_jsonl(hostile))
    assert len(problem) < 200 and problem.endswith("…"), problem
    assert "\x1b" not in problem and "\u202e" not in problem and "\x07" not in problem
    assert "\\x1b]8;;http://evil\\x07\\u202e" in problem


def test_lines_are_numbered_as_an_editor_counts_them_past_line_separators_in_strings():
    # U+2028, U+0085 and a form feed may stand in a JSON string; str.splitlines breaks lines at them
    text = '{"response": "a\u2028b"}\r\n{"response": "c\x85d\\f"}\n{"response": "e\x0cf"}\n' + BAD + "\n"
    found = [(number, problem) for number, _, problem in iter_jsonl(text) if problem]
    assert [number for number, _ in found] == [3, 4], found  # line 3: a raw form feed is a control character
    assert "contains a control character (a form feed)" in found[0][1] and "expecting ',' delimiter" in found[1][1]


def test_json_problem_counts_lines_and_columns_across_every_line_ending():
    from lib.files import json_problem

    text = "[1,\r\n 2,\r 3,\n  4 5]"
    with pytest.raises(json.JSONDecodeError) as caught:
        json.loads(text)
    line, problem = json_problem(caught.value)
    assert line == 4 and problem == "not JSON at column 5: expecting ',' delimiter, found '5]'"


def test_a_json_cell_of_a_battles_csv_names_its_column_and_what_was_wrong():
    data = 'model_a,model_b,winner,conversation_a,conversation_b\nx,y,model_a,"[{""role"": ""user""} ,]",[]\n'
    first = _imported(data, "battles.csv")[0]
    assert first.startswith("battles.csv:2: conversation_a must be a list of messages"), first
    assert "it is text, not JSON at column 20: expecting value, found ']'" in first


def test_classify_and_import_name_file_line_and_column_on_the_command_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(f"{GOOD}\n\n{BAD}\n")
    done = cli("classify", str(path), "-o", str(tmp_path / "out.jsonl"))
    assert done.returncode == 2 and not (tmp_path / "out.jsonl").exists(), done.stderr
    assert f"error: {path} has 1 problem; nothing was written" in done.stderr
    assert "  rows.jsonl:3: not JSON at column 16: expecting ',' delimiter, found" in done.stderr
    done = cli("import", str(path))
    assert done.returncode == 2 and "rows.jsonl:3: not JSON at column 16: expecting ',' delimiter" in done.stderr
