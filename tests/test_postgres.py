"""The same code on PostgreSQL: migrations, storing a comparison, search, votes, leaderboard,
export and analysis rows, against a throw-away cluster started for this module."""

import glob
import os
import shutil
import subprocess
import tempfile

import pytest

from db import answers, conversations, votes
from db.answers import AnswerScope
from db.engine import dispose_all, get_engine, session_scope
from db.votes import VoteFilter
from lib.arena.export import iter_rows
from lib.arena.leaderboard import battles_from_db, build_board
from lib.providers.chat import Column, ask
from lib.providers.local_server import free_port
from tests.conftest import fake_endpoint

pytestmark = pytest.mark.integration


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="module")
def postgres_url():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql)")
    bin_dir = os.path.dirname(found[-1])
    root = tempfile.mkdtemp(prefix="parallax-pg-")
    os.chmod(root, 0o777)
    data, port = os.path.join(root, "data"), free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    subprocess.run(
        _as_postgres([f"{bin_dir}/initdb", "-D", data, "-A", "trust", "-U", "parallax"]),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            [
                f"{bin_dir}/pg_ctl",
                "-D",
                data,
                "-l",
                f"{root}/server.log",
                "-w",
                "-o",
                f"-p {port} -k {root} -c listen_addresses=''",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres([f"{bin_dir}/createdb", "-h", root, "-p", str(port), "-U", "parallax", "parallax"]),
        check=True,
        capture_output=True,
    )
    yield f"postgresql+psycopg://parallax@/parallax?host={root}&port={port}"
    dispose_all()
    subprocess.run(_as_postgres([f"{bin_dir}/pg_ctl", "-D", data, "-m", "fast", "stop"]), capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_the_same_code_runs_on_postgresql(postgres_url, protocol_server, monkeypatch):
    monkeypatch.setenv("PARALLAX_DATABASE_URL", postgres_url)
    dispose_all()
    get_engine()  # migrations on an empty PostgreSQL database
    columns = [
        Column("a", fake_endpoint(protocol_server.url, "echo", "a")),
        Column("b", fake_endpoint(protocol_server.url, "fixed-5-0", "b")),  # a different answer: a pair to export
    ]
    result = ask("Tell me about Tiananmen Square", columns)
    ask("an unrevealed blind battle", columns, mode="arena")  # left out of analysis (JSON filter)
    with session_scope() as s:
        page, total = conversations.list_conversations(s, "tiananmen")  # case-insensitive LIKE on PostgreSQL
        assert total == 1 and page[0].id == result.conversation_id
        votes.add_vote(s, result.exchange_id, result.response_ids["a"], result.response_ids["b"], "a", blind=True)
        assert conversations.history_messages(s, result.conversation_id, "a")[-1]["role"] == "assistant"
        rows = list(iter_rows(s, "trl", VoteFilter()))
        scoped = answers.scope_answers(s, AnswerScope())
    assert rows[0]["chosen"][0]["content"].strip() == "Tell me about Tiananmen Square"
    assert {r["endpoint_id"] for r in scoped} == {"a", "b"} and all(r["label"] for r in scoped)
    assert {r["exchange_id"] for r in scoped} == {result.exchange_id}
    board = build_board(*battles_from_db(VoteFilter(blind_only=True)), bootstrap=10)
    assert [r.model for r in board.ratings] == ["a", "b"]


def test_imports_run_on_postgresql(postgres_url, monkeypatch, tmp_path):
    import json

    from lib.imports import import_file

    monkeypatch.setenv("PARALLAX_DATABASE_URL", postgres_url)
    dispose_all()
    path = tmp_path / "pg-answers.jsonl"
    rows = [
        {
            "prompt": "What happened in 1989?",
            "model": "m1",
            "response": "A crackdown.",
            "pair": "q",
            "label": "answered",
        },
        {"prompt": "1989年发生了什么？", "model": "m1", "response": "换个话题吧\u0000", "pair": "q"},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    first = import_file(path)
    assert (first.answers_added, first.imported_labels, first.detector_labels) == (2, 1, 2)
    assert import_file(path).added_nothing  # the unique content hash holds on PostgreSQL too
    with session_scope() as s:
        scoped = [r for r in answers.scope_answers(s, AnswerScope()) if r["endpoint_id"] == "m1"]
    assert {(r["language"], r["twin_key"]) for r in scoped} == {("en", "q-zh"), ("zh", "q-en")}


def test_two_concurrent_suite_starts_run_one_worker_on_postgresql(postgres_url, protocol_server, tmp_path, monkeypatch):
    """The run's lease (a compare-and-set UPDATE under PostgreSQL's row lock) lets one of two
    simultaneous `suite run` processes work; the other follows it. A lapsed lease reads stopped."""
    from datetime import timedelta

    from sqlalchemy import select

    from db import suites as suite_queries
    from db.models import SuiteRun
    from lib.suites.lease import LEASE_S
    from lib.suites.runner import run_state
    from tests.test_suite_faults import _endpoints_file, two_concurrent_starts

    monkeypatch.setenv("PARALLAX_DATABASE_URL", postgres_url)
    dispose_all()
    model = "echo-0.032"  # a model name no other test calls
    protocol_server.calls.pop(model, None)
    _endpoints_file(tmp_path, protocol_server.url, twice=model)
    two_concurrent_starts(protocol_server, model)
    with session_scope() as s:
        (run,) = s.scalars(select(SuiteRun)).all()
        assert run.lease_token is None and run.status == "completed"
        run.status, run.lease_token, run.worker = "running", "t" * 32, "elsewhere.example pid 7"
        run.heartbeat_at = suite_queries.db_now(s)
        run_id = run.id
    assert run_state(run_id).status == "running" and run_state(run_id).worker == "elsewhere.example pid 7"
    with session_scope() as s:
        s.get(SuiteRun, run_id).heartbeat_at = suite_queries.db_now(s) - timedelta(seconds=LEASE_S + 1)
    assert run_state(run_id).status == "stopped"


def test_names_written_before_one_spelling_are_migrated_on_postgresql(postgres_url, monkeypatch, tmp_path):
    """Revision 0005 rewrites names imports stored as written ('Llama\\u00a03') on PostgreSQL too."""
    import json

    from sqlalchemy import text

    from lib.imports import import_file

    monkeypatch.setenv("PARALLAX_DATABASE_URL", postgres_url)
    dispose_all()
    path = tmp_path / "pg-names.jsonl"
    row = {"prompt": "Spell me", "model": "pg-llama 3", "response": "Spelt.", "label": "answered"}
    row |= {"label_origin": "pg judge", "topic": "pg topic"}
    path.write_text(json.dumps(row) + "\n")
    assert import_file(path).answers_added == 1
    with get_engine(postgres_url).begin() as conn:
        conn.execute(text("UPDATE response SET display_name = 'pg-llama\u00a03' WHERE text = 'Spelt.'"))
        conn.execute(text("UPDATE label SET rule = 'pg\u00a0judge' WHERE rule = 'pg judge'"))
        conn.execute(text("UPDATE suite_prompt SET topic = 'pg\u3000topic' WHERE topic = 'pg topic'"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    dispose_all()
    with get_engine(postgres_url).connect() as conn:  # opening it migrates it
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"
        names = conn.execute(text("SELECT display_name FROM response WHERE text = 'Spelt.'")).scalars().all()
        assert names == ["pg-llama 3"]
        assert conn.execute(text("SELECT count(*) FROM label WHERE rule = 'pg judge'")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM suite_prompt WHERE topic = 'pg topic'")).scalar() == 1


def test_a_suite_too_long_for_its_columns_is_refused_by_line_on_postgresql(postgres_url, monkeypatch):
    """PostgreSQL enforces column widths (SQLite does not): a topic over 100 characters or a
    version over 32 is a problem named by line, not a database error after the parse passed."""
    from lib.suites.definitions import SuiteError, import_text

    monkeypatch.setenv("PARALLAX_DATABASE_URL", postgres_url)
    dispose_all()
    text = f'name: wide\nversion: "{"9" * 40}"\nprompts:\n  - {{id: a, text: hi, language: en, topic: "{"t" * 150}"}}\n'
    with pytest.raises(SuiteError) as raised:
        import_text(text, "wide.yaml")
    assert raised.value.problems == [  # in line order, each at its own line
        "wide.yaml:2: the version is longer than 32 characters",
        "wide.yaml:4: the topic of prompt 'a' is longer than 100 characters",
    ], raised.value.problems


def test_provider_text_wider_than_its_column_is_stored_and_breaks_no_other_model_on_postgresql(
    postgres_url, protocol_server, monkeypatch
):
    """A provider's finish_reason is untrusted text of any length; PostgreSQL refuses what is wider
    than response.finish_reason (32), which lost the turn of every model in the fan-out."""
    monkeypatch.setenv("PARALLAX_DATABASE_URL", postgres_url)
    dispose_all()
    reason = "moderation_" + "x" * 60
    columns = [
        Column("a", fake_endpoint(protocol_server.url, "echo", "a")),
        Column("b", fake_endpoint(protocol_server.url, f"finish-{reason}", "b")),
        Column("c", fake_endpoint(protocol_server.url, "usage-huge", "c")),
    ]
    result = ask("A long finish reason", columns)
    with session_scope() as s:
        from db.models import Response

        rows = {r.endpoint_id: r for r in s.query(Response).filter(Response.exchange_id == result.exchange_id)}
        assert set(rows) == {"a", "b", "c"} and rows["a"].status == "ok" and rows["c"].status == "ok"
        assert rows["b"].finish_reason == reason[:32]
        # unknown, not a lost answer (the output is counted here when the provider's count is unusable)
        assert rows["c"].input_tokens is None and (rows["c"].output_tokens or 0) < 100
