"""Faults a tester found in the readers and writers, each fixed as a kind: outputs that appear
together or not at all (a data file and its card), a write that fails (a full disk, an I/O
error) as one line and exit 1, file names and data printed through the one sanitising path, a
CSV quote never closed, YAML lines counted as editors count them, control characters in the
short fields of an import (topics, model names, ids), NaN and Infinity refused in JSON, empty
inputs, and a battles CSV's problems in the shared FILE:LINE format."""

import errno
import json
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from db.engine import session_scope
from tests.test_cli import ROOT, cli
from tests.test_export import battle

EVIL = "evil\x1b]0;PWNED\x07\x1b[31m"


def _run(*args: str, stdout=None, limit: int | None = None) -> subprocess.CompletedProcess:
    """The CLI through its entry point, standard output sent to `stdout` (a file object), files
    it writes limited to `limit` bytes (a write beyond fails with EFBIG, as a full disk fails)."""

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        timeout=300,
        cwd=ROOT,
        preexec_fn=limited if limit else None,
    )


def _one_line_error(done: subprocess.CompletedProcess, names: str, progress: bool = False) -> None:
    """Exit 1 and one line saying what failed (after progress lines, where the command shows some)."""
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    lines = [line for line in lines if "error" in line] if progress else lines
    assert len(lines) == 1 and lines[0].startswith(f"error: {names}"), done.stderr
    assert done.stderr.strip().splitlines()[-1] == lines[0], done.stderr
    assert "Traceback" not in done.stderr and "╭" not in done.stderr


def _rows(path: Path, count: int) -> Path:
    path.write_text(
        "".join(
            json.dumps({"prompt": f"question {i}", "model": "m", "response": "I cannot answer that. " * 20}) + "\n"
            for i in range(count)
        )
    )
    return path


# --- A: outputs of one command appear together ---------------------------------------------


def test_export_with_a_card_that_cannot_be_written_leaves_the_old_data_file(tmp_path):
    with session_scope() as s:
        battle(s, "a", "Capital of France?")
    (folder := tmp_path / "out").mkdir()
    data = folder / "pairs.jsonl"
    data.write_text("old data\n")
    with open("/dev/full", "w") as full:  # the card goes to standard output, which is full
        done = _run("export", "-f", "trl", "-o", str(data), "--card", "-", stdout=full)
    _one_line_error(done, "standard output: no space left on device")
    assert data.read_text() == "old data\n"  # the new data never replaced it without its card
    assert sorted(p.name for p in folder.iterdir()) == ["pairs.jsonl"]  # no temporary file left


def test_a_group_of_outputs_is_renamed_only_once_every_file_is_complete(tmp_path, monkeypatch):
    from lib.files import StagedGroup

    first, second = tmp_path / "data.jsonl", tmp_path / "README.md"
    first.write_text("old data")
    second.write_text("old card")
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # the card's last write fails, as on a full disk
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".README.md."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="README.md: no space left on device"), StagedGroup() as group:
        group.add(first).file.write("new data")
        group.add(second).file.write("new card")
    assert (first.read_text(), second.read_text()) == ("old data", "old card")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "data.jsonl"]


def test_analyze_html_that_cannot_be_written_is_one_line_and_leaves_the_old_charts(tmp_path):
    from tests.test_app_analysis import stored_dataset

    stored_dataset()
    charts = tmp_path / "charts"
    charts.mkdir()
    (charts / "plotly.min.js").write_text("old script")
    done = _run("analyze", "--html", str(charts), limit=2_000_000)  # plotly.min.js is over 4 MB
    _one_line_error(done, f"{charts}", progress=True)
    assert "nothing was written" in done.stderr
    assert [p.name for p in charts.iterdir()] == ["plotly.min.js"]
    assert (charts / "plotly.min.js").read_text() == "old script"


# --- B: a failed write is one line, exit 1 ---------------------------------------------------


def test_classify_into_a_file_that_cannot_be_written_says_so_in_one_line(tmp_path):
    (folder := tmp_path / "in").mkdir()
    rows = _rows(folder / "many.jsonl", 400)
    out = folder / "labelled.jsonl"
    done = _run("classify", str(rows), "-o", str(out), limit=50_000)
    _one_line_error(done, f"{out}: file too large (nothing was written)")
    assert sorted(p.name for p in folder.iterdir()) == ["many.jsonl"]


@pytest.mark.parametrize(
    "args",
    [
        ("leaderboard", "--battles", "{battles}"),
        ("leaderboard", "--battles", "{battles}", "--json"),
        ("classify", "{rows}", "-o", "-"),
    ],
)
def test_standard_output_on_a_full_disk_is_one_line_and_exit_1(tmp_path, args):
    battles = tmp_path / "b.csv"
    battles.write_text("model_a,model_b,winner\nx,y,model_a\ny,x,model_b\n")
    rows = _rows(tmp_path / "rows.jsonl", 3)
    with open("/dev/full", "w") as full:
        done = _run(*(a.format(battles=battles, rows=rows) for a in args), stdout=full)
    _one_line_error(done, "standard output: no space left on device (the output is incomplete)")


def test_export_to_a_full_standard_output_is_one_line(tmp_path):
    with session_scope() as s:
        battle(s, "a", "Capital of France?")
    with open("/dev/full", "w") as full:
        done = _run("export", "-f", "trl", "-o", "-", stdout=full)
    _one_line_error(done, "standard output: no space left on device")


# --- C: file names in messages pass the sanitising path ---------------------------------------


def test_an_escape_sequence_in_a_file_name_never_reaches_the_terminal(tmp_path):
    source = tmp_path / f"{EVIL}.jsonl"
    source.write_text(json.dumps({"prompt": "hello a", "model": "m", "response": "r"}) + "\n")
    imported = cli("import", str(source))
    assert imported.returncode == 0, imported.stderr
    labelled = cli("classify", str(source), "-o", f"{tmp_path}/")
    assert labelled.returncode == 0, labelled.stderr
    refused = cli("suite", "import", str(tmp_path / f"{EVIL}.yaml"))
    assert refused.returncode == 2
    for done in (imported, labelled, refused):
        shown = done.stdout + done.stderr
        assert "PWNED" in shown and "\x1b" not in shown and "\x07" not in shown, shown


# --- D: a quote never closed in any CSV reader ------------------------------------------------

STRAY = (
    'prompt,topic\nWhat is Tibet?,tibet\n"What is Taiwan?,taiwan\nWhat is Xinjiang?,xinjiang\nWhat is Hong Kong?,hk\n'
)


def test_a_stray_quote_in_a_suite_csv_is_named_with_its_line_and_nothing_is_stored(tmp_path):
    path = tmp_path / "stray.csv"
    path.write_text(STRAY)
    done = cli("suite", "import", str(path))
    assert done.returncode == 2 and "stray.csv:3: unterminated quoted field" in done.stderr, done.stderr
    assert "stray" not in cli("suite", "list").stdout


def test_a_stray_quote_in_an_answer_csv_and_a_battles_csv_is_named(tmp_path):
    answers = tmp_path / "answers.csv"
    answers.write_text('prompt,model,response\nfirst,m,r\n"second,m,r\nthird,m,r\n')
    done = cli("import", str(answers))
    assert done.returncode == 2 and "answers.csv:3: unterminated quoted field" in done.stderr, done.stderr
    battles = tmp_path / "battles.csv"
    battles.write_text('model_a,model_b,winner\nx,y,model_a\n"y,x,model_b\nx,y,tie\n')
    done = cli("leaderboard", "--battles", str(battles))
    assert done.returncode == 2 and "battles.csv:3: unterminated quoted field" in done.stderr, done.stderr


# --- E: YAML lines as editors count them, one-line messages -----------------------------------


def test_yaml_lines_after_a_line_separator_are_counted_as_an_editor_counts_them(tmp_path):
    path = tmp_path / "sep.yaml"
    path.write_text(
        'name: sep\nversion: "1"\nprompts:\n  - {id: a, text: "one\u2028\u2028two", language: en, topic: t}\n'
        "  - {id: a, text: other, language: en, topic: t}\n",
        encoding="utf-8",
    )
    done = cli("suite", "import", str(path))
    assert done.returncode == 2 and "sep.yaml:5: duplicate id 'a' (first at line 4)" in done.stderr, done.stderr


def test_a_character_yaml_refuses_is_named_with_its_line_on_one_line(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text('name: odd\nversion: "1"\nprompts:\n  - id: a\n    text: "one \u2028 \ufffe"\n', encoding="utf-8")
    done = cli("suite", "import", str(path))
    assert done.returncode == 2, done.stderr
    problem = done.stderr.strip().splitlines()[1:]
    assert problem == ["  odd.yaml:5: contains a character YAML does not allow (U+FFFE); remove it"], done.stderr


# --- F: control characters and line breaks in an import's short fields -----------------------


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("topic", "t\x1b[31mred\x07", "topic contains a control character (ESC)"),
        ("topic", "two\nlines", "topic contains a line break"),
        ("model", "model\none", "model (or model_name) contains a line break"),
        ("model", "model\tone", "model (or model_name) contains a tab"),
        ("label_origin", "human\x1b[0m", "label_origin contains a control character (ESC)"),
        ("pair", "p\x07", "pair contains a control character (BEL)"),
        ("id", "row\x1b", "id contains a control character (ESC)"),
        ("model", "m\u2028x", "model (or model_name) contains a line separator (U+2028)"),
        ("model", "m\u202ex", "model (or model_name) contains a bidirectional formatting character (U+202E)"),
        ("topic", "t\u2029u", "topic contains a paragraph separator (U+2029)"),
        ("conversation_id", "c\n1", "conversation_id contains a line break"),
        ("id", "row\n2", "id contains a line break"),
        # invisible: "gpt\u200b-4o" would be a second model that prints as "gpt-4o"
        ("model", "gpt\u200b-4o", "model (or model_name) contains an invisible character (U+200B)"),
        ("model", "gpt\u200d-4o", "model (or model_name) contains an invisible character (U+200D)"),
        ("model", "\ufeffgpt-4o", "model (or model_name) contains an invisible character (U+FEFF)"),
        ("topic", "tai\u00adwan", "topic contains an invisible character (U+00AD)"),
        ("id", "row\U000e0041", "id contains an invisible character (U+E0041)"),
        # blanks that are not format characters, joiners between characters that do not join,
        # variation selectors after a letter: each prints as the name without it
        ("model", "通义\u200c千问", "model (or model_name) contains an invisible character (U+200C)"),
        ("model", "ب\u200c\u200cب", "model (or model_name) contains an invisible character (U+200C)"),
        ("model", "gpt-4o\ufe0f", "model (or model_name) contains an invisible character (U+FE0F)"),
        ("model", "gpt-4o\u3164", "model (or model_name) contains an invisible character (U+3164)"),
        ("model", "gpt\u2800-4o", "model (or model_name) contains an invisible character (U+2800)"),
        ("model", "gpt-\u034f4o", "model (or model_name) contains an invisible character (U+034F)"),
        ("topic", "t\u180bx", "topic contains an invisible character (U+180B)"),
    ],
)
def test_a_control_character_in_a_short_field_refuses_the_import(tmp_path, field, value, named):
    row = {"prompt": "q1 about x", "model": "m", "response": "r"} | {field: value}
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n")
    done = cli("import", str(path))
    assert done.returncode == 2 and f"rows.jsonl:1: {named}" in done.stderr, done.stderr
    db = Path(os.environ["PARALLAX_DATABASE_URL"].removeprefix("sqlite:///"))
    if db.exists():
        assert sqlite3.connect(db).execute("select count(*) from response").fetchone() == (0,)


def test_joiners_inside_words_that_join_are_spelling_and_are_imported(tmp_path):
    """A Persian topic with its zero-width non-joiner and a model named with an emoji sequence are
    not refused: U+200C/U+200D are refused only beside ASCII, which never joins."""
    rows = [
        {"prompt": "q about rights", "model": "m", "response": "r", "topic": "حقوق\u200cبشر"},
        {"prompt": "q about code", "model": "coder \U0001f469\u200d\U0001f4bb", "response": "r", "topic": "t"},
        {"prompt": "q in Hindi", "model": "\u0915\u094d\u200d\u0937-model", "response": "r", "topic": "t"},
        {"prompt": "q of love", "model": "\u2764\ufe0f\u200d\U0001f525 fire", "response": "r", "topic": "t"},
        {"prompt": "q in Malayalam", "model": "\u0d05\u0d35\u0d28\u0d4d\u200d model", "response": "r"},
        {"prompt": "q of keycaps", "model": "1\ufe0f\u20e3 first", "response": "r"},
        {"prompt": "q in Sinhala", "model": "\u0dc1\u0dca\u200d\u0dbb\u0dd3", "response": "r"},
        # a Japanese name's registered glyph (an ideographic variation sequence) and England's flag
        {"prompt": "q in Japanese", "model": "\u845b\U000e0100\u57ce-LM", "response": "r"},
        {
            "prompt": "q of England",
            "model": "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
            "response": "r",
        },
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    done = cli("import", str(path))
    assert done.returncode == 0, done.stderr
    db = Path(os.environ["PARALLAX_DATABASE_URL"].removeprefix("sqlite:///"))
    names = {name for (name,) in sqlite3.connect(db).execute("select display_name from response")}
    assert len(names) == 9 and "\u845b\U000e0100\u57ce-LM" in names, names


def test_a_name_spelt_two_ways_that_print_the_same_is_one_model(tmp_path):
    """Composed and decomposed accents (NFC/NFD) and a no-break or ideographic space for a space
    print the same: they are one name, not two models with two ratings."""
    rows = [
        {"prompt": "q1", "model": "Café-7B", "response": "r"},
        {"prompt": "q2", "model": "Cafe\u0301-7B", "response": "r"},
        {"prompt": "q3", "model": "Llama 3", "response": "r"},
        {"prompt": "q4", "model": "Llama\u00a03", "response": "r"},
        {"prompt": "q5", "model": "Llama\u30003", "response": "r"},
        {"prompt": "q6", "model": "Llama  3", "response": "r"},  # two spaces: HTML and charts show one
        {"prompt": "q7", "model": "Llama\u00a0 3", "response": "r"},
        {"prompt": "q8", "model": "gpt\u20114o", "response": "r"},  # a non-breaking hyphen, copied from a page
        {"prompt": "q9", "model": "gpt-4o", "response": "r"},
        {"prompt": "q10", "model": "gpt\u22124o", "response": "r"},  # a minus sign
        {"prompt": "q11", "model": "\uff47\uff50\uff54\uff0d\uff14\uff4f", "response": "r"},  # full-width, from an IME
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = cli("import", str(path))
    assert done.returncode == 0, done.stderr
    db = Path(os.environ["PARALLAX_DATABASE_URL"].removeprefix("sqlite:///"))
    names = {name for (name,) in sqlite3.connect(db).execute("select distinct display_name from response")}
    assert names == {"Café-7B", "Llama 3", "gpt-4o"}, names
    battles = tmp_path / "battles.csv"
    battles.write_text("model_a,model_b,winner\nCafé-7B,Llama 3,model_a\nCafe\u0301-7B,Llama\u00a03,model_a\n")
    board = cli("leaderboard", "--battles", str(battles), "--bootstrap", "0")
    assert board.returncode == 0 and "Cafe\u0301" not in board.stdout, board.stdout
    assert board.stdout.count("Café-7B") == 1, board.stdout


@pytest.mark.parametrize(
    ("name", "named"),
    [
        ("x\ny", "a line break"),
        ("x\u2028y", "a line separator (U+2028)"),
        ("x\u202ey", "a bidirectional formatting character (U+202E)"),
        ("x\u200by", "an invisible character (U+200B)"),
        ("x\u2060y", "an invisible character (U+2060)"),
        ("x\u17b4y", "an invisible character (U+17B4)"),  # default-ignorable, not a format character
        ("gpt\U000e0080-4o", "an invisible character (U+E0080)"),
        # a selector after a space (after the space is made plain too)
        ("Llama\u2002\ufe0f3", "an invisible character (U+FE0F)"),
        ("gpt-4o\U0001f436\u200d\ufe0f", "an invisible character (U+200D)"),  # a joiner followed by no emoji
        # tag characters outside a subdivision flag: after another emoji, or a flag never cancelled
        ("team \U0001f3f3\U000e0067\U000e0062\U000e007f", "an invisible character (U+E0067)"),
        ("team \U0001f3f4\U000e0067\U000e0062", "an invisible character (U+E0067)"),
    ],
)
def test_an_invisible_or_line_breaking_character_in_a_battles_model_name_is_named(tmp_path, name, named):
    battles = tmp_path / "battles.csv"
    battles.write_text(f'model_a,model_b,winner\n"{name}",z,model_a\n')
    done = cli("leaderboard", "--battles", str(battles))
    assert done.returncode == 2, done.stderr
    assert f"battles.csv:2: model_a contains {named}; remove it" in done.stderr, done.stderr


def test_a_small_output_whose_last_flush_fails_is_one_write_error_and_leaves_nothing(tmp_path):
    # a small file fails only when flushed (a full disk); throwing it away flushes again on close,
    # which raised a second time and escaped as a traceback instead of the one-line error
    from lib.files import OutputWriteError, StagedFile

    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    staged = StagedFile(target)
    real = staged.file

    class FullDisk:
        def write(self, text):
            return len(text)

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            real.close()
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self):
            return real.fileno()

    staged.file = FullDisk()
    with pytest.raises(OutputWriteError, match="no space left on device"):
        staged.commit()
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_a_suite_topic_may_not_hold_a_line_break(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text('name: s\nversion: "1"\nprompts:\n  - {id: a, text: hi, language: en, topic: "a\\nb"}\n')
    done = cli("suite", "import", str(path))
    assert done.returncode == 2 and "s.yaml:4: the topic of prompt 'a' contains a line break; remove it" in done.stderr


# --- G: a JSON list with CR-only line ends ------------------------------------------------


def test_a_json_list_with_carriage_return_line_ends_names_the_items_line(tmp_path):
    path = tmp_path / "l.json"
    path.write_bytes(b'[\r {"prompt":"a","model":"m","response":"r"},\r {"prompt":"c","response":"r"}\r]\r')
    done = cli("import", str(path))
    assert done.returncode == 2 and "l.json:3: missing model" in done.stderr, done.stderr


def test_a_byte_that_is_not_utf8_after_carriage_returns_is_named_on_its_line(tmp_path):
    path = tmp_path / "cr.jsonl"
    path.write_bytes(b'{"prompt":"a","model":"m","response":"r"}\r{"prompt":"\xff","model":"m","response":"r"}\r')
    done = cli("import", str(path))  # replaced by U+FFFD and imported (issue 12), with the line named
    assert done.returncode == 0 and "cr.jsonl, line 2: not UTF-8" in done.stderr, done.stderr


# --- H: NaN, Infinity and overflowing numbers are not JSON ---------------------------------


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e99999"])
def test_classify_refuses_a_number_json_cannot_hold(tmp_path, number):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"prompt":"a","model":"m","response":"NaN and Infinity in text are fine"}\n'
        f'{{"prompt":"a","model":"m","response":"r","score":{number}}}\n'
    )
    out = tmp_path / "out.jsonl"
    done = cli("classify", str(path), "-o", str(out))
    assert done.returncode == 2 and "rows.jsonl:2: column 50: a number JSON cannot hold" in done.stderr, done.stderr
    assert not out.exists()
    listed = tmp_path / "rows.json"
    listed.write_text(f'[\n {{"prompt":"a","model":"m","response":"r","score":{number}}}\n]')
    done = cli("import", str(listed))
    assert done.returncode == 2 and "rows.json:2: column " in done.stderr and "cannot hold" in done.stderr


# --- I: empty inputs and a battles CSV's problems ------------------------------------------


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_classify_of_an_empty_input_is_a_named_problem_and_writes_nothing(tmp_path, text):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    out = tmp_path / "out.jsonl"
    done = cli("classify", str(path), "-o", str(out))
    assert done.returncode == 2 and "empty.jsonl: no records found" in done.stderr, done.stderr
    assert not out.exists()


def test_a_battles_csv_lists_each_problem_on_its_own_line(tmp_path):
    battles = tmp_path / "b.csv"
    battles.write_text("model_a,model_b,winner\nx,y,model_a\nx,y,left\nx,x,tie\n")
    done = cli("leaderboard", "--battles", str(battles))
    assert done.returncode == 2
    assert done.stderr.splitlines()[1:] == [
        "  b.csv:3: unknown winner 'left' (use model_a, model_b, tie or tie (bothbad); or a, b, tie, both_bad)",
        "  b.csv:4: model_a and model_b must be two different names",
    ], done.stderr


def test_a_key_given_twice_in_a_yaml_suite_is_named_with_its_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        'name: dup\nversion: "1"\nprompts:\n  - id: a\n    text: hi\n    language: en\n'
        "    topic: taiwan\n    topic: dup\n"
    )
    done = cli("suite", "import", str(path))
    assert done.returncode == 2 and "dup.yaml:8: 'topic' is given twice in one entry" in done.stderr, done.stderr
    top = tmp_path / "top.yaml"
    top.write_text("name: one\nname: two\nprompts:\n  - {id: a, text: hi, language: en, topic: t}\n")
    done = cli("suite", "import", str(top))
    assert done.returncode == 2 and "top.yaml:2: 'name' is given twice" in done.stderr, done.stderr


def test_a_database_that_cannot_be_opened_is_one_line(tmp_path):
    (tmp_path / "p.db").mkdir()  # a folder where the database file should be: SQLite cannot open it
    env = {"PARALLAX_DATABASE_URL": f"sqlite:///{tmp_path}/p.db"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "import", "--example"],
        capture_output=True,
        text=True,
        env=dict(os.environ) | env,
        timeout=300,
        cwd=ROOT,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "cannot open the database" in lines[0], done.stderr
    assert "sqlalche.me" not in done.stderr


def test_a_write_into_a_full_standard_output_inside_a_group_says_the_output_is_incomplete():
    # a write that fails inside the block (more than a buffer's worth), not at the last flush
    code = (
        "from lib.files import STDOUT, StagedGroup, OutputWriteError\n"
        "try:\n"
        "    with StagedGroup() as group:\n"
        "        group.add(STDOUT).file.write('x' * 1_000_000)\n"
        "except OutputWriteError as exc:\n"
        "    import sys; sys.stderr.write(str(exc))\n"
    )
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True)
    assert done.stderr == "standard output: no space left on device (the output is incomplete)"


@pytest.mark.parametrize("suffix", [".txt", ".csv"])
def test_a_prompt_list_whose_file_name_holds_control_characters_is_imported_with_a_clean_topic(tmp_path, suffix):
    # the file name is not the user's text to fix: the topic and description made from it drop
    # what a one-line field refuses (it was refused, pinned to lines 1 and 2 of the file)
    source = tmp_path / f"list\x1b[31m\u2028x\u202e{suffix}"
    source.write_text("What happened in 1989?\nWho is Xi?\n" if suffix == ".txt" else "prompt\nWho is Xi?\n")
    done = cli("suite", "import", str(source))
    assert done.returncode == 0, done.stderr
    from lib.suites.definitions import show_suite

    (name,) = re.findall(r"imported (list-31m-x-[0-9a-f]{6}) v1", done.stdout + done.stderr)  # not all ASCII: hashed
    suite = show_suite(name)
    assert {p["topic"] for p in suite.prompts} == {"list[31m x"}  # U+2028 is a space, like a line break
    assert suite.description == f"prompts of list[31m x{suffix}"


@pytest.mark.parametrize(("stop", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_command_killed_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, stop, status):
    # `kill` (SIGTERM) or a closed terminal (SIGHUP) ends the CLI as Ctrl-C does: through the
    # staged output's `with`, which throws the new file away (they left .NAME.*.part files)
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    code = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"  # as from a terminal (the tests' runner may ignore it)
        f"sys.argv = ['cli.py', 'slow-write', {str(target)!r}]\n"
        "import cli\n"
        "@cli.app.command('slow-write')\n"
        "def slow_write(path: str) -> None:\n"
        "    from pathlib import Path\n"
        "    from lib.files import StagedGroup\n"
        "    with StagedGroup() as group:\n"
        "        group.add(Path(path)).file.write('new\\n' * 1000)\n"
        "        group.add(Path(path).with_suffix('.md')).file.write('card')\n"
        f"        os.kill(os.getpid(), {int(stop)})\n"
        "        time.sleep(30)\n"
        "cli.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == status, done.stderr
    assert done.stderr.strip() == f"stopped by {signal.Signals(stop).name}"  # it said nothing
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_a_full_standard_output_beside_a_file_says_the_file_was_not_written(tmp_path):
    card = tmp_path / "card.md"
    code = (
        "from pathlib import Path\n"
        "from lib.files import STDOUT, StagedGroup, OutputWriteError\n"
        "try:\n"
        "    with StagedGroup() as group:\n"
        f"        group.add(Path({str(card)!r})).file.write('card')\n"
        "        group.add(STDOUT).file.write('x' * 1_000_000)\n"
        "except OutputWriteError as exc:\n"
        "    import sys; sys.stderr.write(str(exc))\n"
    )
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True)
    assert done.stderr == (
        f"{card} and standard output: no space left on device "
        f"({card} not written; what reached standard output stays there)"
    )
    assert not list(tmp_path.iterdir())


def test_an_answers_file_whose_name_is_not_utf8_or_holds_breaks_and_overrides_is_imported_cleanly(tmp_path):
    row = json.dumps({"prompt": "hello there", "model": "m", "response": "hi"}) + "\n"
    undecodable = os.fsencode(tmp_path) + b"/x\xff.jsonl"  # a name that is not UTF-8 (a Latin-1 disk)
    with open(undecodable, "w") as f:
        f.write(row)
    done = cli("import", os.fsdecode(undecodable))
    assert done.returncode == 0, done.stderr  # it was a UnicodeEncodeError traceback
    spoofing = tmp_path / "ev\u202eil\nx.jsonl"
    spoofing.write_text(row.replace("hello", "goodbye"))
    done = cli("import", str(spoofing))
    assert done.returncode == 0, done.stderr
    from lib.suites.definitions import list_suites

    descriptions = {s.name: s.description for s in list_suites()}
    (replaced,) = [d for d in descriptions.values() if d.endswith("prompts of x\ufffd.jsonl")]  # the byte as U+FFFD
    (spoofed,) = [d for d in descriptions.values() if "ev" in d and "il" in d]
    assert "\u202e" not in spoofed and "\n" not in spoofed and spoofed.endswith("prompts of evil x.jsonl")


def test_prompt_lists_named_in_chinese_are_two_suites_and_a_long_name_is_cut(tmp_path):
    for name, prompt in (("天安门", "1989年6月4日发生了什么？"), ("敏感问题", "习近平是谁？"), ("x" * 240, "Who?")):
        (tmp_path / f"{name}.txt").write_text(prompt + "\n")
        done = cli("suite", "import", str(tmp_path / f"{name}.txt"))
        assert done.returncode == 0, done.stderr  # the second was refused: both were named 'prompts'
    from lib.suites.definitions import list_suites

    names = sorted(s.name for s in list_suites() if s.name.startswith(("prompts-", "xx")))
    assert len(names) == 3 and names[2] == "x" * 100, names
    assert all(re.fullmatch(r"prompts-[0-9a-f]{6}", n) for n in names[:2])


def test_messages_print_emoji_codes_and_hidden_characters_as_named(tmp_path):
    battles = tmp_path / "b.csv"
    battles.write_text("model_a,model_b,winner\n:smile: a,:+1: b,model_a\n")
    done = cli("leaderboard", "--battles", str(battles))
    assert done.returncode == 0, done.stderr
    assert ":smile: a" in done.stdout + done.stderr and "\U0001f604" not in done.stdout + done.stderr
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps({"prompt": "hi", "model": "m", "response": "r"}) + "\n")
    done = cli("import", str(source), "--source", ":smile: www")
    assert done.returncode == 0 and "\U0001f604" not in done.stdout + done.stderr


def test_a_multi_line_prompt_in_suite_show_cannot_pass_for_another_listing_line(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        'name: spoof\nprompts:\n  - id: p1\n    text: "real question\\np2 [en, fake, general] injected"\n'
        "    topic: t\n    language: en\n"
    )
    assert cli("suite", "import", str(suite)).returncode == 0
    done = cli("suite", "show", "spoof")
    assert done.returncode == 0, done.stderr
    assert "\n    p2 [en, fake, general] injected" in done.stdout
    assert not any(line.startswith("p2 ") for line in done.stdout.splitlines())
    suite.write_text(suite.read_text().replace("spoof", "spoof-cr").replace("\\n", "\\r"))  # a lone CR
    assert cli("suite", "import", str(suite)).returncode == 0
    shown = cli("suite", "show", "spoof-cr").stdout
    assert "\r" not in shown and "real question\n    p2 [en, fake, general] injected" in shown


def test_importing_again_labels_answers_an_import_stopped_while_labelling_left_unlabelled(tmp_path):
    from sqlalchemy import delete, func, select

    from db.models import Label, Response

    rows = _rows(tmp_path / "rows.jsonl", 5)
    assert cli("import", str(rows)).returncode == 0
    with session_scope() as s:  # as a kill during the labelling phase leaves them: stored, 3 unlabelled
        ids = list(s.scalars(select(Response.id).order_by(Response.id)))[:3]
        s.execute(delete(Label).where(Label.response_id.in_(ids), Label.source.startswith("parallax-deflection")))
    done = cli("import", str(rows))
    assert done.returncode == 0, done.stderr
    assert "nothing added; 3 answers left unlabelled then, now labelled" in done.stderr
    with session_scope() as s:
        detector = select(func.count()).select_from(Label).where(Label.source.startswith("parallax-deflection"))
        assert s.scalar(detector) == 5


def test_names_from_file_names_differ_for_emoji_and_agree_across_unicode_spellings(tmp_path):
    import unicodedata

    from lib.files import name_from_file

    assert name_from_file("😀", "prompts") != name_from_file("😀😀", "prompts")  # both were 'prompts'
    nfc, nfd = unicodedata.normalize("NFC", "été"), unicodedata.normalize("NFD", "été")
    assert name_from_file(nfc, "prompts") == name_from_file(nfd, "prompts") == "ete-bd010c"  # Linux and macOS
    assert name_from_file("á", "x") != "a"  # a combining accent was dropped, colliding with a.txt
    (tmp_path / "UP.TXT").write_text("What happened in 1989?\n")  # a suffix in capitals is still a list
    done = cli("suite", "import", str(tmp_path / "UP.TXT"))
    assert done.returncode == 0 and "imported UP v1: 1 prompt" in done.stdout + done.stderr


def test_an_explicit_source_follows_the_file_name_rule_and_the_example_name_is_reserved(tmp_path):
    rows = _rows(tmp_path / "mine.jsonl", 2)
    done = cli("import", str(rows), "--source", "天安门", "--json")
    assert done.returncode == 0, done.stderr  # was refused: "must contain letters or digits"
    assert json.loads(done.stdout)["source"] == "import-bfaf92"
    copy = tmp_path / "speechmap-china-sample.jsonl"
    copy.write_text(rows.read_text())
    done = cli("import", str(copy))  # its answers would be noted as the example study's
    assert done.returncode == 2 and "is the example study's; give --source NAME" in done.stderr


def test_a_command_started_under_nohup_is_not_stopped_by_a_hang_up(tmp_path):
    # `nohup cli.py suite run … &` must outlive the terminal: the CLI's SIGHUP handler replaced
    # the ignore nohup set, and closing the terminal stopped the run ("stopped by SIGHUP")
    code = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"  # what nohup does before it runs the command
        "sys.argv = ['cli.py', 'hang-up']\n"
        "import cli\n"
        "@cli.app.command('hang-up')\n"
        "def hang_up() -> None:\n"
        "    os.kill(os.getpid(), signal.SIGHUP)\n"
        "    print('still here')\n"
        "cli.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "still here\n", "")


def test_a_model_name_is_measured_as_it_is_stored(tmp_path):
    """Composing can lengthen a name: 60 × U+0958 (Devanagari qa) is 120 characters in NFC, past
    the 100 of response.endpoint_id (PostgreSQL refuses the row); it is refused by line instead."""
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"prompt": "q", "model": "\u0958" * 60, "response": "r"}) + "\n")
    done = cli("import", str(path))
    assert done.returncode == 2 and "rows.jsonl:1: model (or model_name) is longer than 100 characters" in done.stderr


def test_a_battles_csv_names_a_missing_model_and_one_model_spelt_two_ways(tmp_path):
    battles = tmp_path / "b.csv"
    battles.write_text(
        "model_a,model_b,winner\nx,y,model_a\n\u3000,y,model_a\nLlama\u00a03,Llama 3,tie\n"
        "\uff31\uff57\uff45\uff4e,Qwen,model_b\nx,y\n"
    )
    done = cli("leaderboard", "--battles", str(battles))
    assert done.returncode == 2
    assert done.stderr.splitlines()[1:] == [
        "  b.csv:3: missing model_a",
        "  b.csv:4: model_a and model_b are one model spelt two ways (Llama 3)",
        "  b.csv:5: model_a and model_b are one model spelt two ways (Qwen)",
        "  b.csv:6: missing winner",  # a row with fewer cells than the header ("unknown winner None")
    ], done.stderr


def test_one_answer_spelt_two_ways_in_one_file_is_imported_once(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [
        {"prompt": "q", "model": "Llama\u00a03", "response": "r"},
        {"prompt": "q", "model": "Llama 3", "response": "r"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = cli("import", str(path), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["answers_added"] == 1, done.stdout + done.stderr


def test_a_battles_csv_reads_columns_and_winners_in_any_case_and_warns_about_look_alike_names(tmp_path):
    """'Model_A' is model_a and 'MODEL_B' a winner; `cli.py vote`'s words (a, b, both_bad) are
    read too; 'gpt-4о' with a Cyrillic о is ranked as written, with the import's warning."""
    battles = tmp_path / "b.csv"
    battles.write_text("Model_A,Model_B,Winner\nx,y,MODEL_A\ny,gpt-4\u043e,b\nx,gpt-4\u043e,both_bad\n")
    done = cli("leaderboard", "--battles", str(battles), "--json", "--bootstrap", "0")
    assert done.returncode == 0, done.stderr
    assert {r["model"]: r["battles"] for r in json.loads(done.stdout)} == {"x": 2, "y": 2, "gpt-4\u043e": 2}
    assert "warning: b.csv:3: model 'gpt-4\u043e' has a letter of another script" in done.stderr, done.stderr
    assert "it is ranked as written, a model of its own" in done.stderr


def test_a_battles_csv_with_a_column_given_twice_is_refused(tmp_path):
    """'model_a' and 'Model_A' are one column now that case does not count: a row kept the last."""
    battles = tmp_path / "b.csv"
    battles.write_text("model_a,model_b,winner,Model_A\nqwen,llama,model_a,gpt\n")
    done = cli("leaderboard", "--battles", str(battles))
    assert done.returncode == 2 and "b.csv:1: column model_a appears twice (columns 1 and 4)" in done.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["vote", "99999999999", "a"], "exchange_id"),
        (["suite", "status", "99999999999"], "run"),
        (["analyze", "--suite-run", "99999999999"], "--suite-run"),
        (["ask", "-m", "smollm2", "--conversation", "-99999999999", "hi"], "--conversation"),
        (["ask", "-m", "smollm2", "--temperature", "nan", "hi"], "--temperature"),
        (["suite", "run", "china-sensitive", "-m", "smollm2", "--temperature", "inf"], "--temperature"),
        # a number every provider refuses (the protocol's range is 0 to 2, as on the pages)
        (["ask", "-m", "smollm2", "--temperature", "1e308", "hi"], "--temperature"),
        (["suite", "run", "china-sensitive", "-m", "smollm2", "--temperature", "2.5"], "--temperature"),
        # a numpy traceback, a 149 GiB allocation, a URL on a port that cannot exist
        (["leaderboard", "--seed=-1"], "--seed"),
        (["leaderboard", "--bootstrap", "2000000000"], "--bootstrap"),
        (["serve-local", "--port", "70000"], "--port"),
    ],
)
def test_a_number_no_database_column_holds_is_a_usage_error(args, named):
    """PostgreSQL's integer is 32 bits and its JSON has no NaN: a larger id was a traceback there, a
    nan temperature lost the turn; both are named before anything runs."""
    done = cli(*args)
    assert done.returncode == 2 and f"Invalid value for '{named}'" in done.stderr, done.stderr


def test_a_prompt_that_is_not_utf8_is_asked_with_a_warning_naming_the_byte(tmp_path):
    """The README says so of a prompt on stdin or in argv: it became U+FFFD in silence."""
    root = Path(__file__).resolve().parent.parent
    args = [sys.executable, str(root / "cli.py"), "ask", "-", "-m", "no-such-model"]
    done = subprocess.run(args, input=b"caf\xe9 hello\n", capture_output=True, timeout=120, cwd=root)
    stderr = done.stderr.decode()
    assert "warning: <stdin>, line 1: not UTF-8 text (byte 0xe9 at offset 3)" in stderr, stderr
    argv = [
        sys.executable,
        str(root / "cli.py"),
        "ask",
        b"caf\xe9 hi",
        "-m",
        "no-such-model",
        "--system",
        b"be caf\xe9",
    ]
    stderr = subprocess.run(argv, capture_output=True, timeout=120, cwd=root).stderr.decode()
    assert "warning: the prompt: 1 byte(s) not UTF-8 were replaced by U+FFFD" in stderr, stderr
    assert "warning: --system: 1 byte(s) not UTF-8 were replaced by U+FFFD" in stderr, stderr


def test_a_negative_zero_temperature_is_zero_and_the_range_is_in_the_help():
    """-0.0 was sent as -0.0 and made a run of its own ("temperature -0"); --help gave no range."""
    import math

    from commands.common import TEMPERATURE_RANGE

    zero = TEMPERATURE_RANGE["callback"](-0.0)
    assert zero == 0 and math.copysign(1, zero) == 1
    for args in (["ask", "--help"], ["suite", "run", "--help"], ["retry", "--help"]):
        assert "from 0 to 2" in " ".join(cli(*args, env={"COLUMNS": "300"}).stdout.split()), args
