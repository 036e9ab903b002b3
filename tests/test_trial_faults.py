"""Faults a new-user trial found, each a kind: CSV booleans are `true`/`false`, as JSON writes them."""

import csv

import pandas as pd

from db.engine import session_scope
from tests.test_cli import cli
from tests.test_export import battle

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
