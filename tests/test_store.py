"""The store: migrations on an empty database, history rebuilding, search."""

import sqlite3

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from db import conversations, labels
from db.engine import get_engine, session_scope
from db.models import Base
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome

EP = Endpoint(id="m1", name="M1", base_url="http://h/v1", model="m")
EP2 = Endpoint(id="m2", name="M2", base_url="http://h/v1", model="m")


def test_migrations_build_the_whole_schema_on_an_empty_database(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    tables = set(inspect(engine).get_table_names())
    assert {
        "conversation",
        "exchange",
        "response",
        "vote",
        "label",
        "embedding",
        "suite",
        "suite_prompt",
        "suite_run",
        "thumb",
        "alembic_version",
    } <= tables
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(
                conn, opts={"include_object": lambda o, n, t, r, c: not (n or "").startswith("search_fts")}
            ),
            Base.metadata,
        )
        assert diff == []
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_migrating_twice_changes_nothing(tmp_path):
    from alembic.script import ScriptDirectory

    from db.engine import MIGRATIONS, dispose_all

    path = tmp_path / "twice.db"
    url = f"sqlite:///{path}"
    get_engine(url)
    with session_scope(url) as s:
        conversations.create_conversation(s, title="kept across migrations")

    def snapshot():
        conn = sqlite3.connect(path)
        try:
            schema = sorted(conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall())
            version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            titles = conn.execute("SELECT title FROM conversation").fetchall()
        finally:
            conn.close()
        return schema, version, titles

    before = snapshot()
    dispose_all()
    get_engine(url)  # opening again runs the migrations again
    after = snapshot()
    assert after == before
    assert after[1] == [(ScriptDirectory(str(MIGRATIONS)).get_current_head(),)]
    assert after[2] == [("kept across migrations",)]


def _answer(text: str, status: str = "ok") -> Outcome:
    return Outcome(text=text, status=status, done=True)


def test_history_is_rebuilt_per_column_and_skips_failed_turns():
    with session_scope() as s:
        conv = conversations.create_conversation(s)
        e1 = conversations.add_exchange(s, conv.id, "Q1")
        conversations.add_response(s, e1.id, "m1", EP, _answer("A1 from m1"))
        conversations.add_response(s, e1.id, "m2", EP2, _answer("", status="error"))
        e2 = conversations.add_exchange(s, conv.id, "Q2")
        conversations.add_response(s, e2.id, "m1", EP, _answer("first try"))
        conversations.add_response(s, e2.id, "m1", EP, _answer("retried"))
        conversations.add_response(s, e2.id, "m2", EP2, _answer("A2 from m2"))
        cid = conv.id
    with session_scope() as s:
        assert conversations.history_messages(s, cid, "m1") == [
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1 from m1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "retried"},
        ]
        assert conversations.history_messages(s, cid, "m2") == [
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2 from m2"},
        ]
        assert conversations.history_messages(s, cid, "m1", before_turn=1) == [
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1 from m1"},
        ]


def test_search_finds_prompts_and_answers_in_english_and_chinese():
    with session_scope() as s:
        for prompt, answer in [
            ("What happened at Tiananmen?", "In 1989 protests..."),
            ("天安门广场发生了什么？", "我们换个话题吧。"),
            ("Recipe for dumplings", "Flour and water"),
        ]:
            conv = conversations.create_conversation(s)
            ex = conversations.add_exchange(s, conv.id, prompt)
            conversations.add_response(s, ex.id, "m1", EP, _answer(answer))
    with session_scope() as s:
        assert [r.title for r in conversations.list_conversations(s, "tiananmen")[0]] == ["What happened at Tiananmen?"]
        assert conversations.list_conversations(s, "换个话题")[1] == 1
        assert conversations.list_conversations(s, "flour")[0][0].title == "Recipe for dumplings"
        assert conversations.list_conversations(s, "天安")[1] == 1  # 2 characters: LIKE fallback
        page, total = conversations.list_conversations(s, per_page=2)
        assert total == 3 and len(page) == 2 and page[0].title == "Recipe for dumplings"


def test_label_filter_follows_the_effective_label():
    with session_scope() as s:
        conv = conversations.create_conversation(s)
        ex = conversations.add_exchange(s, conv.id, "Q")
        row = conversations.add_response(s, ex.id, "m1", EP, _answer("A"))
        labels.set_label(s, row.id, "deflected", "parallax-deflection@x", 0.7, "model:logreg")
    with session_scope() as s:
        assert conversations.list_conversations(s, label="deflected")[1] == 1
        labels.set_label(s, row.id, "answered", "human", 1.0, "human")
    with session_scope() as s:
        assert conversations.list_conversations(s, label="deflected")[1] == 0
        assert conversations.list_conversations(s, label="answered")[1] == 1


def test_text_meant_for_reading_is_cut_to_its_column_and_keys_are_not():
    """A provider's finish reason (untrusted, any length) is kept as far as response.finish_reason
    is wide (32): PostgreSQL refuses a longer value, and with it the whole turn. The full reason
    stays in the error message. Keys (endpoint ids, label sources) are never cut."""
    from db.models import Conversation, Exchange, Label, Response

    with session_scope() as s:
        conv = Conversation(title="t" * 300)
        s.add(conv)
        s.flush()
        exchange = Exchange(conversation_id=conv.id, prompt="p")
        s.add(exchange)
        s.flush()
        row = Response(
            exchange_id=exchange.id,
            slot="a",
            endpoint_id="a",
            status="error",
            finish_reason="moderation_" + "x" * 60,
            base_host="h" * 250,
        )
        row.labels.append(Label(source="human", label="answered", rule="r" * 150))
        s.add(row)
        s.flush()
        row.finish_reason = "y" * 40  # an update is cut too
        s.flush()
        response_id, conversation_id = row.id, conv.id
    with session_scope() as s:
        row, conv = s.get(Response, response_id), s.get(Conversation, conversation_id)
        assert (row.finish_reason, len(row.base_host), len(row.labels[0].rule)) == ("y" * 32, 200, 100)
        assert len(conv.title) == 200 and row.endpoint_id == "a"


def test_a_vote_needs_two_finished_answers():
    """A vote on a turn where one answer failed was recorded, then left out of the leaderboard in
    silence ('1 battle counted'); it is refused as the pages refuse it (they offer Retry)."""
    import pytest

    from lib.conversations import VoteError, vote

    endpoint = Endpoint(id="a", name="A", base_url="http://h/v1", model="m")
    other = Endpoint(id="b", name="B", base_url="http://h/v1", model="m")
    with session_scope() as s:
        conv = conversations.create_conversation(s)
        ex = conversations.add_exchange(s, conv.id, "Capital of France?", language="en")
        conversations.add_response(s, ex.id, "a", endpoint, Outcome(text="Paris.", status="ok"))
        conversations.add_response(s, ex.id, "b", other, Outcome(text="", status="error", error_message="boom"))
        exchange_id = ex.id
    with pytest.raises(VoteError, match=r"B's answer failed \(error\); a vote needs two finished answers"):
        vote(exchange_id, "a")
    with session_scope() as s:
        conversations.add_response(s, exchange_id, "b", other, Outcome(text="Paris, I think.", status="ok"))
    assert vote(exchange_id, "a").b == "B"  # the retried answer is the one shown: now it counts


def test_a_retry_is_refused_for_battles_imports_and_earlier_turns():
    """`retry` asks again only what the Compare page's Retry would: the last turn of a named
    conversation, never a blind battle's (retried in the Arena, which keeps it blind) or an import."""
    import pytest

    from db.vocab import Mode
    from lib.conversations import RetryError, retry_plan

    endpoint = Endpoint(id="a", name="A", base_url="http://h/v1", model="m")
    made = {}
    with session_scope() as s:
        for mode in (Mode.ARENA, Mode.IMPORTED):
            conv = conversations.create_conversation(s, mode=mode)
            ex = conversations.add_exchange(s, conv.id, "Capital of France?", language="en")
            conversations.add_response(s, ex.id, "a", endpoint, Outcome(text="", status="error", error_message="x"))
            made[mode] = ex.id
    with pytest.raises(RetryError, match="part of a blind battle: retry it in the Arena"):
        retry_plan(made[Mode.ARENA])
    with pytest.raises(RetryError, match="was imported: imported answers are kept as they were"):
        retry_plan(made[Mode.IMPORTED], ["a"])
    with session_scope() as s:
        conv = conversations.create_conversation(s)
        first = conversations.add_exchange(s, conv.id, "One?", language="en")
        conversations.add_response(s, first.id, "a", endpoint, Outcome(text="", status="error", error_message="x"))
        first_id, conversation_id = first.id, conv.id
    with session_scope() as s:
        conv = conversations.create_conversation(s, mode=Mode.SUITE)
        ex = conversations.add_exchange(s, conv.id, "Capital of France?", language="en")
        conversations.add_response(s, ex.id, "a", endpoint, Outcome(text="Paris.", status="ok"))
        suite_exchange, suite_conversation = ex.id, conv.id
    with pytest.raises(RetryError, match="is an item of suite run .*suite resume"):
        retry_plan(suite_exchange, ["a"])  # another answer would count twice in the run's rates
    from lib.providers.chat import Column, PromptError, ask

    for exchange_id in (suite_exchange, None):  # nor continued, nor retried through ask
        with pytest.raises(PromptError, match="is an item of suite run"):
            ask("More?", [Column("a", endpoint)], conversation_id=suite_conversation, exchange_id=exchange_id)
    plan = retry_plan(first_id)
    assert (plan.conversation_id, plan.prompt, plan.slots) == (conversation_id, "One?", ["a"])


def test_an_answer_that_did_not_finish_takes_no_label_of_a_person():
    """Its status says what happened and it is left out of every rate: a person's label on it
    ('refused' on an empty error) was stored and became a training row for the detector."""
    import pytest

    from db import labels as label_store
    from db.vocab import Label as LabelName
    from db.vocab import LabelSource
    from lib.conversations import save_human_label

    endpoint = Endpoint(id="a", name="A", base_url="http://h/v1", model="m")
    with session_scope() as s:
        conv = conversations.create_conversation(s)
        ex = conversations.add_exchange(s, conv.id, "Capital of France?", language="en")
        failed = conversations.add_response(s, ex.id, "a", endpoint, Outcome(text="Par", status="interrupted")).id
        finished = conversations.add_response(s, ex.id, "a", endpoint, Outcome(text="Paris.", status="ok")).id
        # a label stored before this check (an older release) is no training row either
        label_store.set_label(s, failed, "refused", LabelSource.HUMAN, 1.0, LabelSource.HUMAN)
    with pytest.raises(ValueError, match=r"did not finish \(interrupted\)"):
        save_human_label(failed, "answered")
    with session_scope() as s:  # finished with no text (a budget spent on reasoning): its label is 'empty'
        empty = conversations.add_response(s, ex.id, "a", endpoint, Outcome(text="  ", status="ok")).id
        label_store.set_label(s, empty, "refused", LabelSource.HUMAN, 1.0, LabelSource.HUMAN)
    with pytest.raises(ValueError, match="has no text"):
        save_human_label(empty, "refused")
    with pytest.raises(ValueError, match="there is no answer 999999"):
        save_human_label(999999, "refused")
    save_human_label(finished, "answered")
    with session_scope() as s:
        rows = label_store.human_labels(s, tuple(LabelName.ALL))
    assert [(text, label) for _, _, text, _, label in rows] == [("Paris.", "answered")]
