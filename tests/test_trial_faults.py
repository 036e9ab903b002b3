"""Faults a new-user trial found, each a kind: an output that is an input (the file read, the
database) however it is spelled; a control character (NUL too) in a file's prompts is a named
problem, never turned into U+FFFD (bytes that are not UTF-8 are: issue 12's rule, with a warning
naming the line, byte and offset); an imported prompt has the prompt limit of
the app; CSV booleans are `true`/`false`; classify reads the rows `import` reads."""

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import Exchange, Suite
from tests.conftest import ROOT
from tests.test_cli import cli
from tests.test_export import battle

ROWS = [
    {"prompt": "What happened in 1989?", "response": "I cannot help with that."},
    {"prompt": "Capital of France?", "response": "Paris is the capital of France."},
]


def _cli_in(folder: Path, *args: str, stdin=None) -> subprocess.CompletedProcess:
    """The CLI run from `folder` (for relative paths), stdin from an open file when given."""
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True,
        text=True,
        cwd=folder,
        stdin=stdin,
        env=os.environ,
        timeout=300,
    )


def _rows_file(tmp_path: Path) -> Path:
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def _count(model) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count(model.id)))


# --- 1. an output that is an input ----------------------------------------------------------


@pytest.mark.parametrize("spelling", ["same path", "relative", "./relative", "symlink to the input", "hard link"])
def test_classify_refuses_to_write_over_its_input_however_it_is_spelled(spelling, tmp_path):
    source = _rows_file(tmp_path)
    before = source.read_bytes()
    given_in, given_out = str(source), str(source)
    if spelling == "relative":
        given_out = source.name
    elif spelling == "./relative":
        given_in, given_out = f"./{source.name}", str(source)
    elif spelling == "symlink to the input":
        (tmp_path / "link.jsonl").symlink_to(source)
        given_in = str(tmp_path / "link.jsonl")
    elif spelling == "hard link":
        os.link(source, tmp_path / "hard.jsonl")
        given_out = str(tmp_path / "hard.jsonl")
    done = _cli_in(tmp_path, "classify", given_in, "-o", given_out)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {given_out} is the input file") and "nothing was written" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert source.read_bytes() == before
    assert not list(tmp_path.glob(".*.part"))


def test_classify_refuses_to_write_over_the_file_on_its_standard_input(tmp_path):
    source = _rows_file(tmp_path)
    before = source.read_bytes()
    with source.open("rb") as stdin:
        done = _cli_in(tmp_path, "classify", "-", "-o", source.name, stdin=stdin)
    assert done.returncode == 2 and "is the file on standard input" in done.stderr, done.stderr
    assert source.read_bytes() == before


def test_no_output_is_written_over_the_database(tmp_path):
    with session_scope() as s:
        battle(s, "a", "Capital of France?")
    database = tmp_path / "data" / "test.db"
    before = database.read_bytes()
    for args in (
        ["export", "-f", "csv", "-o", str(database)],
        ["export", "-f", "trl", "-o", str(tmp_path / "out.jsonl"), "--card", str(database)],
        ["classify", str(_rows_file(tmp_path)), "-o", str(database)],
        ["export", "-f", "jsonl", "-o", f"{database}-wal"],
        # missing now, SQLite's or Parallax's own later: by path (they were written as JSONL)
        ["classify", str(_rows_file(tmp_path)), "-o", f"{database}-journal"],
        ["classify", str(_rows_file(tmp_path)), "-o", f"{database}.migrate-lock"],
        # a folder there: the database would not open again
        ["classify", str(_rows_file(tmp_path)), "-o", f"{database}-wal/"],
        ["analyze", "--html", f"{database}-journal"],
    ):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "is the database" in done.stderr or "is a file of the database" in done.stderr, done.stderr
        assert database.read_bytes() == before
    assert not Path(f"{database}-journal").exists() and not Path(f"{database}-wal").is_dir()
    charts = tmp_path / "charts"
    charts.mkdir()
    os.link(database, charts / "map.html")  # a chart file that is the database under another name
    done = cli("analyze", "--html", str(charts))
    assert done.returncode == 2 and f"{charts / 'map.html'} is the database ({database})" in done.stderr, done.stderr
    assert database.read_bytes() == before
    assert not (tmp_path / "out.jsonl").exists()
    with session_scope() as s:  # still a database that opens, with the vote in it
        from db.models import Vote

        assert s.scalar(select(func.count(Vote.id))) == 1


def test_a_database_file_in_another_letter_case_is_refused_where_case_is_ignored(tmp_path, monkeypatch):
    """On macOS's and Windows' file systems test.db-WAL is the database's -wal: refused while that
    file is missing too (it comes and goes); where case counts (Linux) it is another file."""
    from lib import files

    database = tmp_path / "test.db"
    reads = [(database, "the database"), (tmp_path / "test.db-wal", "a file of the database")]
    assert files.case_insensitive(tmp_path) is False  # this machine's file system counts case
    assert files.read_clash(tmp_path / "test.db-WAL", reads) is None
    monkeypatch.setattr(files, "case_insensitive", lambda folder: True)
    for name, what in (
        ("test.db-WAL", "a file of the database"),
        ("Test.Db-Wal", "a file"),
        ("TEST.DB", "the database"),
    ):
        assert f"is {what}" in (files.read_clash(tmp_path / name, reads) or ""), name


def test_no_output_is_written_over_the_embedded_servers_state(tmp_path):
    """The embedded server's record, lock and log, a users file and a suite run's log are read by
    Parallax itself: an output there (missing now or not) is refused as the database's files are
    (the record written over as JSONL named no server, so a second one started)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "local_server.8765.users").write_text("")
    (data / "suite_run_3.log").write_text("log\n")
    names = ("local_server.json", "local_server.lock", "local_server.log", "local_server.8765.users", "suite_run_3.log")
    for name in names:
        done = cli("classify", str(_rows_file(tmp_path)), "-o", str(data / name))
        assert done.returncode == 2 and "a state file of Parallax's embedded server" in done.stderr, (name, done.stderr)
    assert not (data / "local_server.json").exists() and (data / "suite_run_3.log").read_text() == "log\n"
    # a file output is told about writing over it (it read 'a folder there'); names Parallax will
    # use later (a future run's log, another port's users file) are refused too, as files or folders
    done = cli("export", "-f", "jsonl", "-o", str(data / "local_server.json"))
    assert done.returncode == 2 and "writing the output there would destroy it" in done.stderr, done.stderr
    for args in (
        ["export", "-f", "jsonl", "-o", str(data / "suite_run_99.log")],
        ["analyze", "--html", str(data / "suite_run_98.log")],
        ["classify", str(_rows_file(tmp_path)), "-o", str(data / "local_server.9999.users/")],
        ["classify", str(_rows_file(tmp_path)), "-o", str(tmp_path / "data" / ".." / "data" / "local_server.failed")],
        # in any case: on a case-insensitive file system (macOS, Windows) it is the same file
        ["export", "-f", "jsonl", "-o", str(data / "Local_Server.JSON")],
        ["analyze", "--html", str(data / "SUITE_RUN_97.LOG")],
    ):
        done = cli(*args)
        assert done.returncode == 2 and "a state file of Parallax's embedded server" in done.stderr, (args, done.stderr)
    assert sorted(p.name for p in data.iterdir() if "suite_run" in p.name or "users" in p.name) == [
        "local_server.8765.users",
        "suite_run_3.log",
    ]
    done = cli("classify", str(_rows_file(tmp_path)), "-o", str(data / "labels.jsonl"))  # beside them is fine
    assert done.returncode == 0, done.stderr


# --- 2. control characters and bytes that are not UTF-8 --------------------------------------


SUITE_NUL = [
    ("yaml", 'name: nul\nprompts:\n  - {id: a, text: "bad\\0text", language: en, topic: t}\n', ":3: prompt 'a'"),
    ("yaml-raw", "name: nul\nprompts:\n  - {id: a, text: bad\x00text, language: en, topic: t}\n", ":3: contains"),
    ("jsonl", '{"id": "a", "text": "bad\\u0000text", "language": "en", "topic": "t"}\n', ":1: prompt 'a'"),
    ("jsonl-raw", '{"id": "a", "text": "bad\x00text", "language": "en", "topic": "t"}\n', ":1: column 25: contains"),
    ("txt", "fine question\nbad\x00question\n", ":2: prompt '2'"),
    ("csv", "prompt,topic\nfine,t\nbad\x00,t\n", ":3: prompt '2'"),
]


@pytest.mark.parametrize(("kind", "text", "where"), SUITE_NUL, ids=[k for k, _, _ in SUITE_NUL])
def test_a_nul_in_a_suite_prompt_is_refused_like_any_control_character(kind, text, where, tmp_path):
    path = tmp_path / f"nul.{kind.split('-')[0]}"
    path.write_text(text, encoding="utf-8")
    done = cli("suite", "import", str(path))
    assert done.returncode == 2, done.stderr
    assert f"nul.{kind.split('-')[0]}{where}" in done.stderr and "control character (NUL); remove it" in done.stderr
    assert "\ufffd" not in done.stderr
    with session_scope() as s:
        assert s.scalar(select(func.count(Suite.id)).where(Suite.name.in_(["nul"]))) == 0


@pytest.mark.parametrize("escape", ["\\u0000", "\\u001b", "\\u0007"])
def test_a_control_character_in_an_imported_or_classified_prompt_is_a_named_problem(escape, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        json.dumps({"prompt": "fine", "model": "m", "response": "ok"})
        + "\n"
        + '{"prompt": "bad'
        + escape
        + '", "model": "m", "response": "ok"}\n'
    )
    for args in (["import", str(path)], ["classify", str(path), "-o", str(tmp_path / "out.jsonl")]):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "rows.jsonl:2: prompt (or question, input) contains a control character (" in done.stderr, done.stderr
    assert _count(Exchange) == 0 and not (tmp_path / "out.jsonl").exists()


def test_a_nul_in_an_answer_is_kept_out_of_storage_not_refused(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "q", "model": "m", "response": "model text\\u0000 with a NUL"}\n')
    done = cli("import", str(path))
    assert done.returncode == 0, done.stderr  # model text is what it is: stored clean (U+FFFD)
    with session_scope() as s:
        from db.models import Response

        assert s.scalar(select(Response.text)) == "model text\ufffd with a NUL"


GBK = "天安门".encode("gbk")
NOT_UTF8 = [
    ("suite", "s.yaml", b"name: s\nprompts:\n  - {id: a, text: " + GBK + b", language: zh, topic: t}\n", 3),
    (
        "import",
        "rows.jsonl",
        b'{"prompt": "q", "model": "m", "response": "ok"}\n{"prompt": "' + GBK + b'", "model": "m", "response": "r"}\n',
        2,
    ),
    ("import", "rows.csv", b"prompt,model,response\nq,m,ok\nq2,m,caf\xe9\n", 3),
    ("import", "rows.jsonl.gz", gzip.compress(b'{"prompt": "q", "model": "m", "response": "\xff"}\n'), 1),
    ("classify", "in.jsonl", b'{"response": "fine"}\n{"response": "' + GBK + b'"}\n', 2),
]


@pytest.mark.parametrize(("command", "name", "data", "line"), NOT_UTF8, ids=[n for _, n, _, _ in NOT_UTF8])
def test_a_file_that_is_not_utf8_is_read_with_a_warning_naming_the_line_and_byte(command, name, data, line, tmp_path):
    # issue 12: text that is not valid Unicode is made safe (U+FFFD) and the work goes on; the user
    # is told which file, line and byte to save as UTF-8
    path = tmp_path / name
    path.write_bytes(data)
    args = {"suite": ["suite", "import", str(path)], "import": ["import", str(path)]}.get(command)
    args = args or ["classify", str(path), "-o", str(tmp_path / "out.jsonl")]
    done = cli(*args)
    assert f"{name}, line {line}: not UTF-8 text (byte 0x" in done.stderr and "at offset" in done.stderr
    assert "replaced by U+FFFD" in done.stderr and "Traceback" not in done.stderr
    assert done.returncode == 0, done.stderr
    if command == "import":
        assert _count(Exchange) == (1 if name == "rows.jsonl.gz" else 2)
    if command == "classify":
        assert len((tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def test_classify_reads_standard_input_that_is_not_utf8_with_a_warning(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "classify", "-", "-o", str(tmp_path / "out.jsonl")],
        input=b'{"response": "' + GBK + b'"}\n',
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 0 and "<stdin>, line 1: not UTF-8 text" in stderr, stderr
    assert json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))["response"].count("\ufffd") == 3


# --- 3. an imported prompt has the app's prompt limit ----------------------------------------


def test_an_imported_prompt_over_the_prompt_limit_is_a_named_problem(tmp_path):
    env = {"PARALLAX_MAX_PROMPT_CHARS": "50"}
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"question": "x" * 50, "model": "m", "response": "a" * 5000})  # at the limit; a long answer
        + "\n"
        + json.dumps({"question": "y" * 51, "model": "m", "response": "ok"})
        + "\n"
    )
    done = cli("import", str(rows), env=env)
    assert done.returncode == 2, done.stderr
    assert (
        "rows.jsonl:2: question is 51 characters; the limit for a prompt is 50 "
        "(PARALLAX_MAX_PROMPT_CHARS; raise it to import longer prompts)"
    ) in done.stderr, done.stderr
    assert "rows.jsonl:1" not in done.stderr and _count(Exchange) == 0
    assert cli("import", str(rows), env={"PARALLAX_MAX_PROMPT_CHARS": "51"}).returncode == 0


def test_battles_and_promptfoo_prompts_have_the_prompt_limit_too(tmp_path):
    env = {"PARALLAX_MAX_PROMPT_CHARS": "20"}
    long = "z" * 21
    side = [{"role": "user", "content": long}, {"role": "assistant", "content": "ok"}]
    battles = tmp_path / "battles.jsonl"
    battle_row = {"model_a": "a", "model_b": "b", "winner": "model_a", "conversation_a": side, "conversation_b": side}
    battles.write_text(json.dumps(battle_row) + "\n")
    done = cli("import", str(battles), env=env)
    assert done.returncode == 2 and "battles.jsonl:1: a user message of conversation_a is 21 characters" in done.stderr
    promptfoo = tmp_path / "results.json"
    result = {"provider": {"id": "m"}, "prompt": {"raw": long}, "response": {"output": "ok"}}
    promptfoo.write_text(json.dumps({"results": {"results": [result]}}))
    done = cli("import", str(promptfoo), env=env)
    assert done.returncode == 2 and "results.json: result 1: prompt.raw's user message is 21" in done.stderr


# --- 4. CSV booleans -------------------------------------------------------------------------


def test_csv_export_writes_booleans_as_json_does_and_pandas_reads_them_as_booleans(tmp_path):
    with session_scope() as s:
        battle(s, "a", '=HYPERLINK("http://x")', blind=True)
        battle(s, "b", "named", blind=False)
    path = tmp_path / "votes.csv"
    done = cli("export", "-f", "csv", "-o", str(path), "--include-leaked")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(path.open(encoding="utf-8-sig", newline="")))
    assert {r["blind"] for r in rows} == {"true", "false"} and {r["identity_leaked"] for r in rows} == {"false"}
    frame = pd.read_csv(path, encoding="utf-8-sig")
    assert frame["blind"].dtype == bool and frame["identity_leaked"].dtype == bool
    assert sorted(frame["blind"].tolist()) == [False, True]
    assert '\'=HYPERLINK("http://x") turn 0' in set(frame["prompt"])  # formulas still neutralised


# --- 5. classify reads what import reads -----------------------------------------------------


def test_classify_reads_the_field_names_and_formats_import_reads(tmp_path):
    rows = [
        {"question": "What happened in 1989?", "model_name": "m", "answer": "I cannot help with that.", "id": "1"},
        # what only an import stores is not checked: a language Parallax does not compare, a label
        # of an earlier classify run, are written back as they were
        {"input": "Capital of France?", "completion": "Paris is the capital of France.", "id": "2", "language": "ru"},
    ]
    jsonl = tmp_path / "speechmap.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    as_csv = tmp_path / "rows.csv"
    as_csv.write_text("id,prompt,output,status\n1,q,I cannot help with that.,ok\n2,q,,BLOCKED\n")
    as_json = tmp_path / "rows.json.gz"
    as_json.write_bytes(gzip.compress(json.dumps(rows).encode()))
    for source, first in ((jsonl, "refused"), (as_csv, "refused"), (as_json, "refused")):
        target = tmp_path / f"{source.name}.out.jsonl"
        done = cli("classify", str(source), "-o", str(target))
        assert done.returncode == 0, (source, done.stderr)
        out = [json.loads(line) for line in target.read_text().splitlines()]
        assert [r["id"] for r in out] == ["1", "2"] and out[0]["label"] == first, out
        assert all({"label", "confidence", "rule"} <= set(r) for r in out)
    assert out[1]["label"] == "answered" and out[1]["completion"] == "Paris is the capital of France."
    assert out[1]["language"] == "ru"
    relabel = tmp_path / "again.jsonl"  # an earlier output, with a label no import accepts, read again
    relabel.write_text(json.dumps({"response": "", "status": "error", "label": "incomplete"}) + "\n")
    done = cli("classify", str(relabel), "-o", str(tmp_path / "again.out.jsonl"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "again.out.jsonl").read_text())["label"] == "incomplete"
    csv_out = [json.loads(line) for line in (tmp_path / "rows.csv.out.jsonl").read_text().splitlines()]
    assert csv_out[1]["status"] == "blocked" and csv_out[1]["label"] == "blocked"
    battles = tmp_path / "battles.jsonl"
    side = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    battle_row = {"model_a": "a", "model_b": "b", "winner": "tie", "conversation_a": side, "conversation_b": side}
    battles.write_text(json.dumps(battle_row) + "\n")
    done = cli("classify", str(battles), "-o", str(tmp_path / "b.out.jsonl"))
    assert done.returncode == 2 and "holds pairwise battles" in done.stderr, done.stderr


def test_a_suite_uploaded_on_the_page_is_read_as_a_suite_file_is(tmp_path):
    from lib.suites.definitions import SuiteError, import_bytes

    with pytest.raises(SuiteError) as caught:
        import_bytes(b'name: up\nprompts:\n  - {id: a, text: "a\\0b", language: en, topic: t}\n', "up.yaml")
    assert "control character (NUL)" in caught.value.problems[0], caught.value.problems
    gbk_file = "name: gbk\nprompts:\n  - {id: a, text: 天安门, language: zh, topic: t}\n".encode("gbk")
    gbk = import_bytes(gbk_file, "g.yaml")
    assert gbk.created and gbk.warnings[0].startswith("g.yaml, line 3: not UTF-8 text"), gbk.warnings
    assert import_bytes(b"name: up\nprompts:\n  - {id: a, text: hi, language: en, topic: t}\n", "up.yaml").created
