"""Faults a new-user trial found, each a kind: an output that is an input (the file read, the
database) however it is spelled; CSV booleans are `true`/`false`, as JSON writes them."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from db.engine import session_scope
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
    ):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "is the database" in done.stderr or "is a file of the database" in done.stderr, done.stderr
        assert database.read_bytes() == before
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
