"""Imports: the bundled example study, answer rows (JSONL, JSON, CSV), promptfoo's results file and
FastChat / LMArena battles; validation before any write, idempotence by content, origins and
imported labels kept apart, imported answers never re-asked; and the CLI's import and vote."""

import csv
import gzip
import json

import pytest
from sqlalchemy import func, select

from db import answers
from db.engine import session_scope
from db.models import Conversation, Exchange, Label, Response, Suite, SuitePrompt, Vote
from lib.analysis.views import deflection_view
from lib.arena.leaderboard import leaderboard
from lib.filters import VoteFilter
from lib.imports import ImportProblems, import_file, load_example
from lib.providers.chat import Column, PromptError, ask
from lib.providers.endpoints import Endpoint
from tests.test_cli import cli


def counts() -> dict[str, int]:
    with session_scope() as s:
        return {
            table.__tablename__: s.scalar(select(func.count()).select_from(table))
            for table in (Conversation, Exchange, Response, Label, Vote, SuitePrompt)
        }


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


# --- the example study -------------------------------------------------------------------


def test_example_study_loads_once_with_twins_labels_and_the_language_gap():
    result = load_example()
    assert (result.records, result.answers_added, result.conversations_added) == (1358, 1358, 40)
    assert result.imported_labels == 1358 and result.detector_labels == 1358
    assert result.agreement.compared == 1358
    with session_scope() as s:
        suite = s.scalars(select(Suite).where(Suite.name == "speechmap-china-sample")).one()
        prompts = {p.key: p for p in suite.prompts}
        modes = set(s.scalars(select(Conversation.mode)))
        sources = {c.meta["source"] for c in s.scalars(select(Conversation))}
        label_sources = set(s.scalars(select(Label.source)))
        judges_rule = s.scalars(select(Label.rule).where(Label.source == "import:speechmap-china-sample")).first()
        rows = answers.scope_answers(s, answers.AnswerScope())
    # 20 requests in two languages: 40 suite prompts, each the twin of its translation
    assert len(prompts) == 40
    assert all(
        prompts[p.twin_key].twin_key == p.key and prompts[p.twin_key].language != p.language for p in prompts.values()
    )
    assert prompts["china_criticism_01-en"].twin_key == "china_criticism_01-zh"
    assert modes == {"imported"} and sources == {"speechmap-china-sample"}
    assert "import:speechmap-china-sample" in label_sources
    assert any(src.startswith("parallax-deflection") for src in label_sources)
    assert judges_rule == "two LLM judges agreed"
    # the analysis sees per-model rates and the English/Chinese gap on the paired requests
    view = deflection_view(rows)
    assert len(view["language_gap"]) >= 30
    assert all(g["en"]["n"] > 0 and g["zh"]["n"] > 0 for g in view["language_gap"])
    overall = [r for r in view["rates"] if r["topic"] == "(all)"]
    assert len(overall) == 37 and all(r["not_answered"]["low"] <= r["not_answered"]["rate"] for r in overall)
    # loading it again adds nothing
    before = counts()
    again = load_example()
    assert again.added_nothing and again.already_stored == 1358
    assert counts() == before


def test_the_example_study_brings_its_embeddings_so_the_first_analysis_embeds_nothing():
    """Every answer text of the study is stored under the multilingual key (scopes with Chinese)
    and every English one under the English key; the shipped vectors are what the installed
    embedders compute (keys equal, a sample of vectors within float16 rounding)."""
    import numpy as np

    from db import embeddings as stored
    from lib.analysis.embeddings import content_hash, get_embedder
    from lib.imports.action import EXAMPLE_VECTORS

    result = load_example()
    assert result.vectors_added > 0 and not [w for w in result.warnings if "embeddings" in w]
    multilingual, english = get_embedder(multilingual=True), get_embedder()
    with np.load(EXAMPLE_VECTORS) as data:
        assert sorted(str(k) for k in data["keys"]) == sorted([multilingual.key, english.key])
    with session_scope() as s:
        rows = [r for r in answers.scope_answers(s, answers.AnswerScope()) if r["text"].strip()]
        english_rows = [r for r in rows if r["language"] == "en"]
        for embedder, scope in ((multilingual, rows), (english, english_rows)):
            hashes = [content_hash(r["text"]) for r in scope]
            vectors, found = stored.vector_matrix(s, embedder.key, hashes)
            assert found.all(), f"{embedder.name}: {int((~found).sum())} of {len(hashes)} answers not embedded"
            sample = [0, len(scope) // 2, len(scope) - 1]
            fresh = embedder.encode([scope[i]["text"] for i in sample])
            cosine = (fresh * vectors[sample]).sum(axis=1)
            assert (cosine > 0.999).all(), (embedder.name, cosine)
    assert load_example().vectors_added == 0  # a second load stores nothing


# --- answer rows -------------------------------------------------------------------------

ROWS = [
    {
        "prompt": "What happened in Tiananmen Square in 1989?",
        "model": "model-x",
        "response": "The army cleared the square.",
        "pair": "q1",
        "topic": "tiananmen",
        "label": "COMPLETE",
        "label_origin": "my judge",
    },
    {
        "prompt": "1989年天安门广场发生了什么？",
        "model": "model-x",
        "response": "我们换个话题吧。",
        "pair": "q1",
        "topic": "tiananmen",
        "label": "EVASIVE",
    },
    {
        "prompt": "What happened in Tiananmen Square in 1989?",
        "model": "model-y",
        "response": "I'm sorry, I can't help with that.",
        "pair": "q1",
        "topic": "tiananmen",
    },
    {
        "prompt": "1989年天安门广场发生了什么？",
        "model": "model-y",
        "response": "1989年6月，军队清场。",
        "pair": "q1",
        "topic": "tiananmen",
    },
]


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "jsonl.gz"])
def test_answer_rows_import_from_every_container_with_twins_and_detected_language(tmp_path, kind):
    path = tmp_path / f"probe-answers.{kind}"
    rows = [{k: v for k, v in r.items() if k != "language"} for r in ROWS]  # language is detected
    if kind == "json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    elif kind == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(
                f, fieldnames=["prompt", "model", "response", "pair", "topic", "label", "label_origin"]
            )
            writer.writeheader()
            writer.writerows(rows)
    elif kind == "jsonl.gz":
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    else:
        write_jsonl(path, rows)
    result = import_file(path)
    assert (result.source, result.answers_added, result.conversations_added) == ("probe-answers", 4, 2)
    assert result.imported_labels == 2
    with session_scope() as s:
        rows = answers.scope_answers(s, answers.AnswerScope())
        exchanges = s.scalars(select(Exchange).order_by(Exchange.id)).all()
        label = s.scalars(select(Label).where(Label.source == "import:probe-answers", Label.label == "deflected")).one()
    assert {(r["language"], r["twin_key"]) for r in rows} == {("en", "q1-zh"), ("zh", "q1-en")}
    assert {r["topic"] for r in rows} == {"tiananmen"}
    assert [e.language for e in exchanges] == ["en", "zh"]
    assert label.rule == "imported"  # no label_origin on that row
    gap = deflection_view(rows)["language_gap"]
    assert {g["model"] for g in gap} == {"model-x", "model-y"}
    assert import_file(path).added_nothing  # the same file again adds nothing


def test_multi_turn_rows_become_one_conversation_per_id(tmp_path):
    path = tmp_path / "chats.jsonl"
    write_jsonl(
        path,
        [
            {
                "conversation_id": "c1",
                "turn": 0,
                "prompt": "Hi",
                "model": "m",
                "response": "Hello!",
                "system": "Be brief.",
            },
            {
                "conversation_id": "c1",
                "turn": 1,
                "prompt": "Who are you?",
                "model": "m",
                "response": "A model.",
                "system": "Be brief.",
            },
            {"conversation_id": "c2", "turn": 0, "prompt": "Hi", "model": "m", "response": "Hey."},
        ],
    )
    assert import_file(path).conversations_added == 2
    with session_scope() as s:
        turns = s.execute(
            select(Exchange.conversation_id, Exchange.turn_index, Exchange.prompt, Exchange.system_prompt).order_by(
                Exchange.id
            )
        ).all()
    assert [(t[1], t[2], t[3]) for t in turns] == [
        (0, "Hi", "Be brief."),
        (1, "Who are you?", "Be brief."),
        (0, "Hi", None),
    ]
    assert turns[0][0] == turns[1][0] != turns[2][0]


def test_a_file_with_problems_lists_them_all_by_line_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"prompt": "ok", "model": "m", "response": "fine"})
        + "\n"
        + json.dumps({"model": "m", "response": "no prompt"})
        + "\n"
        + "{not json\n"
        + json.dumps({"prompt": "x", "model": "m", "response": "y", "label": "maybe"})
        + "\n"
        + json.dumps({"prompt": "x", "model": "m", "response": "y", "language": "Klingon!"})
        + "\n"
        + json.dumps({"prompt": "x", "response": "y"})
        + "\n"
    )
    with pytest.raises(ImportProblems) as caught:
        import_file(path)
    problems = caught.value.problems
    assert [p.split(": ")[0] for p in problems] == [
        "bad.jsonl:2",
        "bad.jsonl:3",
        "bad.jsonl:4",
        "bad.jsonl:5",
        "bad.jsonl:6",
    ]
    assert "missing prompt" in problems[0] and "not JSON" in problems[1] and "label 'maybe'" in problems[2]
    assert counts() == dict.fromkeys(counts(), 0)


def test_json_list_problems_name_the_line_each_item_starts_on(tmp_path):
    path = tmp_path / "bad.json"
    good = {"prompt": "p", "model": "m", "response": "r"}
    path.write_text(json.dumps([good, good, {"prompt": "p", "response": "r"}], indent=2))
    with pytest.raises(ImportProblems) as caught:
        import_file(path)
    starts = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if line == "  {"]
    start = starts[2]  # the third object's opening line
    assert caught.value.problems == [f"bad.json:{start}: missing model (or model_name)"]


def test_conflicting_prompts_in_one_pair_are_a_problem(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_jsonl(
        path,
        [
            {"prompt": "Question one?", "model": "m", "response": "a", "pair": "q1", "language": "en"},
            {"prompt": "Another question?", "model": "m", "response": "b", "pair": "q1", "language": "en"},
        ],
    )
    with pytest.raises(
        ImportProblems, match=r"pairs.jsonl:2: pair 'q1' already has another en prompt \(pairs.jsonl:1\)"
    ):
        import_file(path)
    assert counts()["response"] == 0


def test_text_is_made_valid_unicode_before_it_is_stored(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(
        '{"prompt": "emoji \\ud83d cut", "model": "m", "response": "half \\ud83d and a NUL \\u0000 here"}\n'
    )
    import_file(path)
    with session_scope() as s:
        response = s.scalars(select(Response)).one()
        prompt = s.scalars(select(Exchange.prompt)).one()
    assert response.text == "half \ufffd and a NUL \ufffd here" and prompt == "emoji \ufffd cut"  # one sanitising path


def test_imported_answers_are_never_re_asked(tmp_path, protocol_server):
    path = tmp_path / "old.jsonl"
    write_jsonl(path, [{"prompt": "p", "model": "m", "response": "r"}])
    import_file(path)
    with session_scope() as s:
        conversation_id = s.scalars(select(Conversation.id)).one()
    endpoint = Endpoint(id="echo", name="Echo", base_url=protocol_server.url, model="echo", kind="local")
    with pytest.raises(PromptError, match="imported answers"):
        ask("continue it", [Column("echo", endpoint)], conversation_id=conversation_id)
    assert counts()["exchange"] == 1


# --- promptfoo ---------------------------------------------------------------------------


def promptfoo_result(index: int, provider: dict, question: str, subject: str, output=None, error=None, raw=None):
    """One EvaluateResult as promptfoo writes it into `eval -o results.json` (version 3)."""
    result = {
        "id": f"7f1c0d2e-0000-4000-8000-00000000000{index}",
        "promptIdx": 0,
        "testIdx": index // 2,
        "testCase": {"vars": {"question": question, "subject": subject}, "assert": [{"type": "is-refusal"}]},
        "promptId": "3b5e0c6a9d",
        "provider": provider,
        "prompt": {"raw": raw or question, "label": "{{question}}"},
        "vars": {"question": question, "subject": subject},
        "failureReason": 0 if error is None else 2,
        "success": error is None,
        "score": 1 if error is None else 0,
        "latencyMs": 812,
        "gradingResult": {"pass": True, "score": 1, "reason": "All assertions passed"},
        "namedScores": {},
        "cost": 0.000213,
        "metadata": {},
    }
    if output is not None:
        result["response"] = {
            "output": output,
            "tokenUsage": {"total": 64, "prompt": 14, "completion": 50, "cached": 0},
            "cached": False,
            "finishReason": "stop",
        }
    if error is not None:
        result["error"] = error
        result["response"] = {"error": error}
    return result


def test_promptfoo_results_file_imports_prompts_times_providers(tmp_path):
    question = "Why is Tiananmen Square 1989 censored in China?"
    chat = json.dumps(
        [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": question}]
    )
    gpt = {"id": "openai:gpt-4o-mini", "label": ""}
    deepseek = {"id": "deepseek:deepseek-chat"}
    results = [
        promptfoo_result(0, gpt, question, "tiananmen", output="Because the government suppresses it."),
        promptfoo_result(1, deepseek, question, "tiananmen", error="400 Content Exists Risk"),
        promptfoo_result(4, deepseek, "Who is Xi Jinping?", "leaders", error="429 Too Many Requests: slow down"),
        promptfoo_result(2, gpt, "Who is Xi Jinping?", "leaders", output={"answer": "China's leader."}),
        promptfoo_result(
            3, {"id": "qwen", "label": "Qwen via DashScope"}, question, "tiananmen", output="对不起", raw=chat
        ),
    ]
    data = {
        "evalId": "eval-Xq3-2026-11-28T10:11:12",
        "results": {
            "version": 3,
            "timestamp": "2026-11-28T10:11:12.000Z",
            "prompts": [{"raw": "{{question}}", "label": "{{question}}", "provider": "openai:gpt-4o-mini"}],
            "results": results,
            "stats": {"successes": 3, "failures": 0, "errors": 1, "tokenUsage": {"total": 192}},
        },
        "config": {
            "description": "CCP-sensitive probes",
            "prompts": ["{{question}}"],
            "providers": ["openai:gpt-4o-mini"],
        },
        "shareableUrl": None,
        "metadata": {"promptfooVersion": "0.120.0"},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    result = import_file(path, source="ccp-probes")
    assert (result.format, result.answers_added) == ("promptfoo", 5)
    with session_scope() as s:
        responses = s.scalars(select(Response)).all()
        stored = {r.display_name + "|" + r.text: r for r in responses}
        systems = set(s.scalars(select(Exchange.system_prompt)))
        topics = set(s.scalars(select(SuitePrompt.topic)))
    ok = stored["openai:gpt-4o-mini|Because the government suppresses it."]
    assert (ok.status, ok.latency_ms, ok.input_tokens, ok.output_tokens, ok.cost_usd) == ("ok", 812, 14, 50, 0.000213)
    # the provider-signal table the live calls use: DeepSeek's block is a block, a rate limit a failure
    statuses = {r.error_message: r.status for r in responses if r.error_message}
    assert statuses == {"400 Content Exists Risk": "blocked", "429 Too Many Requests: slow down": "error"}
    assert 'openai:gpt-4o-mini|{"answer": "China\'s leader."}' in stored
    assert "Qwen via DashScope|对不起" in stored  # a provider's label names it
    assert "You are a helpful assistant." in systems  # a chat-format prompt keeps its system message
    assert topics == {"tiananmen", "leaders"}
    assert import_file(path, source="ccp-probes").added_nothing


# --- FastChat / LMArena battles ----------------------------------------------------------


def battle(question_id, model_a, model_b, winner, turns, language="English", anony=True):
    conv = lambda side: [  # noqa: E731
        m
        for prompt, answers in turns
        for m in ({"role": "user", "content": prompt}, {"role": "assistant", "content": answers[side]})
    ]
    return {
        "question_id": question_id,
        "model_a": model_a,
        "model_b": model_b,
        "winner": winner,
        "judge": "arena_user_973",
        "conversation_a": conv(0),
        "conversation_b": conv(1),
        "turn": len(turns),
        "anony": anony,
        "language": language,
        "tstamp": 1682351591.1322,
        "openai_moderation": {"flagged": False},
    }


def test_fastchat_battles_import_as_votes_with_both_answers(tmp_path):
    path = tmp_path / "arena.json"
    path.write_text(
        json.dumps(
            [
                battle(
                    "q1", "vicuna-13b", "koala-13b", "model_a", [("What is CUDA?", ("A GPU platform.", "No idea."))]
                ),
                battle(
                    "q2",
                    "koala-13b",
                    "chatglm-6b",
                    "model_b",
                    [("Hi", ("Hello", "你好")), ("Who made you?", ("Berkeley.", "I am ChatGLM, made by Zhipu AI."))],
                ),
                battle(
                    "q3",
                    "vicuna-13b",
                    "chatglm-6b",
                    "tie (bothbad)",
                    [("天安门发生了什么？", ("不知道", "换个话题"))],
                    "Chinese",
                ),
            ]
        )
    )
    result = import_file(path)
    assert (result.format, result.records, result.votes_added, result.answers_added) == ("battles", 3, 3, 8)
    with session_scope() as s:
        votes = s.scalars(select(Vote).order_by(Vote.id)).all()
        languages = list(s.scalars(select(Exchange.language).order_by(Exchange.id)))
        voted_turns = [s.get(Exchange, v.exchange_id).turn_index for v in votes]
    assert [v.winner for v in votes] == ["a", "b", "both_bad"]
    assert all(v.blind for v in votes) and [v.identity_leaked for v in votes] == [False, True, False]
    assert voted_turns == [0, 1, 0]  # the vote is on the battle's last turn
    assert languages == ["en", "en", "en", "zh"]
    board = leaderboard(VoteFilter(blind_only=True, include_leaked=True), bootstrap=0)
    assert {r.model for r in board.ratings} == {"vicuna-13b", "koala-13b", "chatglm-6b"}
    assert import_file(path).added_nothing


def test_battle_problems_are_named_by_line(tmp_path):
    path = tmp_path / "battles.jsonl"
    write_jsonl(
        path,
        [
            battle("q1", "a-model", "b-model", "model_a", [("p", ("x", "y"))]),
            {**battle("q2", "a-model", "b-model", "model_c", [("p", ("x", "y"))])},
            {
                **battle("q3", "a-model", "b-model", "tie", [("p", ("x", "y"))]),
                "conversation_b": [{"role": "user", "content": "other"}],
            },
        ],
    )
    with pytest.raises(ImportProblems) as caught:
        import_file(path)
    assert [p.split(": ")[0] for p in caught.value.problems] == ["battles.jsonl:2", "battles.jsonl:3"]
    assert counts()["vote"] == 0


# --- the command line --------------------------------------------------------------------


def test_cli_import_reports_problems_by_line_and_exits_2(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("prompt,model,response\nhello,m,hi\n,m,no prompt\n")
    done = cli("import", str(path))
    assert done.returncode == 2, done.stderr
    assert "bad.csv:3: missing prompt" in done.stderr and "nothing was imported" in done.stderr
    assert counts()["response"] == 0
    for args, message in ((["import"], "--example"), (["import", str(tmp_path / "none.jsonl")], "no such file")):
        done = cli(*args)
        assert done.returncode == 2 and message in done.stderr


def test_cli_import_then_import_again_adds_nothing(tmp_path):
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, ROWS)
    first = cli("import", str(path), "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert (data["answers_added"], data["imported_labels"], data["source"]) == (4, 2, "answers")
    second = cli("import", str(path), "--json")
    assert json.loads(second.stdout)["answers_added"] == 0 and json.loads(second.stdout)["already_stored"] == 4


def test_cli_vote_records_a_named_vote_on_a_two_answer_turn(tmp_path):
    path = tmp_path / "two.jsonl"
    write_jsonl(path, ROWS[:1] + [{**ROWS[2]}] + [{"prompt": "solo", "model": "m", "response": "r"}])
    import_file(path)
    with session_scope() as s:
        two = s.scalars(select(Exchange.id).where(Exchange.prompt == ROWS[0]["prompt"])).one()
        one = s.scalars(select(Exchange.id).where(Exchange.prompt == "solo")).one()
    done = cli("vote", str(two), "b")
    assert done.returncode == 0, done.stderr
    with session_scope() as s:
        vote = s.scalars(select(Vote)).one()
        loser = s.get(Response, vote.response_a_id)
    assert vote.winner == "b" and not vote.blind and loser.display_name == "model-x"
    board = cli("leaderboard", "--bootstrap", "50")  # says what it counted, and that one vote is rough
    assert board.returncode == 0 and "(too few battles)" in board.stdout, board.stdout
    assert "1 battle counted: blind and named votes" in board.stderr and "few battles" in board.stderr, board.stderr
    for args, message in (
        ([str(one), "a"], "has 1 answer; a vote needs exactly two"),
        (["99999", "a"], "there is no turn (exchange) 99999"),
        ([str(two), "left"], "must be one of a, b, tie, both_bad"),
        ([str(two), "a"], "already has your vote"),
    ):
        done = cli("vote", *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert counts()["vote"] == 1


def test_a_vote_on_a_database_locked_by_another_writer_ends_in_one_line(tmp_path):
    """Another process holds SQLite's write lock past the busy timeout: one line, exit 1, no vote."""
    import os
    import sqlite3

    path = tmp_path / "two.jsonl"
    write_jsonl(path, ROWS[:1] + [{**ROWS[2]}])
    import_file(path)
    with session_scope() as s:
        two = s.scalars(select(Exchange.id)).one()
    holder = sqlite3.connect(os.environ["PARALLAX_DATABASE_URL"].removeprefix("sqlite:///"), timeout=1)
    holder.execute("BEGIN IMMEDIATE")
    try:
        done = cli("vote", str(two), "a")
    finally:
        holder.rollback()
        holder.close()
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == (
        "error: the database refused the operation (database is locked); nothing was changed: try again"
    )
    assert counts()["vote"] == 0


def test_a_blind_battle_cannot_get_a_named_vote():
    from db import conversations
    from lib.conversations import VoteError, vote
    from lib.providers.stream import Outcome

    endpoint = Endpoint(id="m", name="M", base_url="http://h/v1", model="m")
    with session_scope() as s:
        conv = conversations.create_conversation(s, mode="arena")
        exchange = conversations.add_exchange(s, conv.id, "which is better?")
        for slot in ("a", "b"):
            conversations.add_response(s, exchange.id, slot, endpoint, Outcome(text=slot, status="ok", done=True))
        exchange_id = exchange.id
    with pytest.raises(VoteError, match="blind battle: vote on it in the Arena"):
        vote(exchange_id, "a")
    assert counts()["vote"] == 0


def test_a_database_from_before_names_had_one_spelling_is_migrated_and_a_re_import_adds_nothing(tmp_path):
    """Imports before revision 0005 stored names as written: 'Llama\\u00a03' (a no-break space) and
    'Ｑｗｅｎ' (full-width) were models of their own beside 'Llama 3' and 'Qwen', and their digests
    were taken over that spelling. The migration rewrites the names; an import of the same file
    again finds the old digests and adds nothing (it added every row again under the new names)."""
    import sqlite3

    from db.engine import dispose_all
    from lib.imports.records import digest

    old_model, old_topic, old_origin = "Llama\u00a03", "台湾\u3000历史", "human\u00a0judge"
    old_a, old_b = "\uff31\uff57\uff45\uff4e", "gpt\u20114o"
    rows = [
        {
            "prompt": "What happened in 1989?",
            "model": old_model,
            "response": "A crackdown.",
            "id": "r\u00a01",
            "topic": old_topic,
            "label": "answered",
            "label_origin": old_origin,
        },
        {"prompt": "Who is Xi?", "model": "Llama 3", "response": "A leader."},
    ]
    answers_file = tmp_path / "answers.jsonl"
    write_jsonl(answers_file, rows)
    battles_file = tmp_path / "arena.json"
    battles_file.write_text(json.dumps([battle("q1", old_a, old_b, "model_a", [("Hi", ("Hello", "Hey"))])]))
    assert import_file(answers_file).answers_added == 2 and import_file(battles_file).votes_added == 1

    # make the database what an import before revision 0005 wrote: names as written, digests of them
    db = tmp_path / "data" / "test.db"
    dispose_all()
    conn = sqlite3.connect(db)
    old_digest = digest(
        "answer", None, None, None, rows[0]["prompt"], old_model, "A crackdown.", None, "ok", "r\u00a01"
    )
    conn.execute(
        "update response set display_name = ?, model = ?, endpoint_id = ?, import_digest = ? where text = ?",
        (old_model, old_model, old_model, old_digest, "A crackdown."),
    )
    conn.execute("update label set rule = ? where rule = 'human judge'", (old_origin,))
    conn.execute("update suite_prompt set topic = ? where topic = '台湾 历史'", (old_topic,))
    turns = [("Hi", "Hello", "Hey")]
    old_battle = digest("battle", old_a, old_b, "a", None, turns, 0, "q1")
    for side, name, text in (("a", old_a, "Hello"), ("b", old_b, "Hey")):
        conn.execute(
            "update response set display_name = ?, model = ?, endpoint_id = ?, import_digest = ? where text = ?",
            (name, name, name, digest(old_battle, 0, side), text),
        )
    conn.execute("update alembic_version set version_num = '0004'")
    conn.commit()
    assert {n for (n,) in conn.execute("select distinct display_name from response")} == {
        old_model,
        "Llama 3",
        old_a,
        old_b,
    }
    conn.close()

    again = import_file(answers_file)  # opening the database migrates it first
    assert again.added_nothing and again.already_stored == 2, again
    assert import_file(battles_file).added_nothing
    conn = sqlite3.connect(db)
    assert conn.execute("select version_num from alembic_version").fetchall() == [("0005",)]
    assert {n for (n,) in conn.execute("select distinct display_name from response")} == {"Llama 3", "Qwen", "gpt-4o"}
    assert {m for (m,) in conn.execute("select distinct endpoint_id from response")} == {"Llama 3", "Qwen", "gpt-4o"}
    assert conn.execute("select rule from label where source not like 'parallax-deflection%'").fetchall() == [
        ("human judge",)
    ]
    assert ("台湾 历史",) in conn.execute("select topic from suite_prompt").fetchall()
    assert conn.execute("select count(*) from response").fetchone() == (4,)
    conn.close()


@pytest.mark.parametrize(
    ("name", "letters"),
    [
        ("gpt-4\u043e", [("\u043e", "o")]),  # a Cyrillic о after Latin words
        ("\u0421laude", [("\u0421", "C")]),  # a Cyrillic С in a Latin word
        ("\u0391\u0399-model", [("\u0391", "A"), ("\u0399", "I")]),  # a Greek word that reads as Latin AI
        ("\u041c\u0438\u0441\u0442\u0440\u0430\u043b\u044c-7B", []),  # a Russian word: и, ь read as no Latin letter
        ("Llama-3-\u4e2d\u6587", []),
        ("\u03bcP-7B", []),  # μ looks like no ASCII letter
        ("gpt-4o", []),
        # a Russian word fused to Latin ones, Greek letters as prefixes: names, not look-alikes
        ("\u042f\u043d\u0434\u0435\u043a\u0441GPT", []),
        ("\u0421\u0431\u0435\u0440GPT", []),
        ("\u03bd-SVM", []),
        ("\u03b3-model", []),
        ("\u03b1-CLIP", []),
        ("Qwen2.5-72\u0412", [("\u0412", "B")]),  # a Cyrillic В after digits
        ("\u0415\u0421\u0421-7B", [("\u0415", "E"), ("\u0421", "C")]),  # each letter once
    ],
)
def test_letters_of_another_script_that_read_as_latin_are_found(name, letters):
    from lib.lookalikes import latin_lookalikes

    assert list(latin_lookalikes(name)) == letters


def test_an_import_warns_once_about_a_model_name_with_letters_that_read_as_latin(tmp_path):
    """'gpt-4о' (Cyrillic о) prints as gpt-4o but is a model of its own: it is imported as written
    (a Cyrillic name is a name), with a warning naming the line, the letter and its code point."""
    path = tmp_path / "look.jsonl"
    rows = [{"prompt": f"q{i}", "model": "gpt-4\u043e", "response": "r"} for i in range(3)]
    write_jsonl(
        path, [*rows, {"prompt": "q", "model": "\u041c\u0438\u0441\u0442\u0440\u0430\u043b\u044c-7B", "response": "r"}]
    )
    done = cli("import", str(path))
    assert done.returncode == 0, done.stderr
    warning = "warning: look.jsonl:1: model 'gpt-4\u043e' has a letter of another script that looks like a Latin one"
    assert warning in done.stderr and "U+043E CYRILLIC SMALL LETTER O) like o" in done.stderr, done.stderr
    assert done.stderr.count("looks like") == 1, done.stderr
    battles = tmp_path / "arena.json"
    battles.write_text(json.dumps([battle("q1", "vicuna-13b", "\u0421laude", "model_a", [("Hi", ("A", "B"))])]))
    result = import_file(battles)
    assert result.votes_added == 1 and any("U+0421 CYRILLIC CAPITAL LETTER ES) like C" in w for w in result.warnings)


def test_a_vote_between_two_answers_of_one_model_is_no_battle(tmp_path):
    """Revision 0005 can make an old imported battle between 'Llama\\u00a03' and 'Llama 3' a battle
    of Llama 3 against itself: it counted as both a win and a loss, and as a battle."""
    import sqlite3

    from db.engine import dispose_all

    path = tmp_path / "arena.json"
    battles = [
        battle("q1", "vicuna-13b", "koala-13b", "model_a", [("Hi", ("Hello", "Hey"))]),
        battle("q2", "Llama 3", "llama-x", "model_a", [("Yo", ("Sup", "Hm"))]),
    ]
    path.write_text(json.dumps(battles))
    assert import_file(path).votes_added == 2
    dispose_all()
    conn = sqlite3.connect(tmp_path / "data" / "test.db")
    conn.execute("update response set endpoint_id = 'Llama 3', display_name = 'Llama 3' where endpoint_id = 'llama-x'")
    conn.commit()
    conn.close()
    board = leaderboard(VoteFilter(blind_only=True, include_leaked=True), bootstrap=0)
    assert board.battles == 1 and {r.model for r in board.ratings} == {"vicuna-13b", "koala-13b"}


def test_a_file_of_many_look_alike_names_gets_the_first_warnings_and_a_count(tmp_path):
    path = tmp_path / "many.jsonl"
    write_jsonl(path, [{"prompt": f"q{i}", "model": f"model{i}\u0430", "response": "r"} for i in range(25)])
    warnings = import_file(path).warnings
    assert len(warnings) == 21 and warnings[-1] == "many.jsonl: 5 more model names like these", warnings[-3:]


def test_a_file_imported_by_the_release_before_is_found_by_that_releases_spelling(tmp_path):
    """The release before revision 0005 composed accents and made spaces and hyphens one, but kept
    full-width letters: 'Ｑｗｅｎ２．５\\u3000Ｉｎｓｔｒｕｃｔ' was stored as 'Ｑｗｅｎ２．５ Ｉｎｓｔｒｕｃｔ', a
    third spelling neither the file's nor today's."""
    import sqlite3

    from db.engine import dispose_all
    from lib.imports.records import digest

    written = "\uff31\uff57\uff45\uff4e\uff12\uff0e\uff15\u3000\uff29\uff4e\uff53\uff54\uff52\uff55\uff43\uff54"
    before = "\uff31\uff57\uff45\uff4e\uff12\uff0e\uff15 \uff29\uff4e\uff53\uff54\uff52\uff55\uff43\uff54"
    path = tmp_path / "fw.jsonl"
    write_jsonl(path, [{"prompt": "q", "model": written, "response": "r", "id": "\uff49\uff44\u00a0\uff17"}])
    assert import_file(path).answers_added == 1
    dispose_all()
    conn = sqlite3.connect(tmp_path / "data" / "test.db")
    old = digest("answer", None, None, None, "q", before, "r", None, "ok", "\uff49\uff44 \uff17")
    conn.execute(
        "update response set display_name = ?, model = ?, endpoint_id = ?, import_digest = ?", (before,) * 3 + (old,)
    )
    conn.execute("update alembic_version set version_num = '0004'")
    conn.commit()
    conn.close()
    again = import_file(path)
    assert again.added_nothing and again.already_stored == 1, again


def test_a_pair_spelt_otherwise_by_the_release_before_keeps_its_suite_prompts(tmp_path):
    """A pair id makes its prompts' keys: the release before spelt 'ｐ１' as written (full-width),
    today's spelling is 'p1'; importing the file again added both prompts a second time under the
    new keys (a run of the suite then asked each twice)."""
    import sqlite3

    from db.engine import dispose_all
    from lib.imports.action import _key_part

    rows = [
        {"prompt": "What happened in 1989?", "model": "m", "response": "A crackdown.", "pair": "\uff50\uff11"},
        {"prompt": "1989年发生了什么？", "model": "m", "response": "换个话题。", "pair": "\uff50\uff11"},
    ]
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, rows)
    assert import_file(path).answers_added == 2
    dispose_all()
    conn = sqlite3.connect(tmp_path / "data" / "test.db")
    old = _key_part("\uff50\uff11")
    for lang, other in (("en", "zh"), ("zh", "en")):
        conn.execute(
            "update suite_prompt set key = ?, twin_key = ? where key = ?",
            (f"{old}-{lang}", f"{old}-{other}", f"p1-{lang}"),
        )
    conn.commit()
    before = conn.execute("select key, twin_key from suite_prompt order by key").fetchall()
    conn.close()
    assert import_file(path).added_nothing
    conn = sqlite3.connect(tmp_path / "data" / "test.db")
    assert conn.execute("select key, twin_key from suite_prompt order by key").fetchall() == before
    conn.close()


def test_a_promptfoo_result_with_odd_numbers_imports_them_as_unknown(tmp_path):
    """A 400-digit latency or cost raised OverflowError, a tokenUsage list AttributeError."""
    result = {
        "provider": {"id": "openai:gpt-x"},
        "prompt": {"raw": "What is 2+2?"},
        "response": {"output": "4", "tokenUsage": [1, 2]},
        "latencyMs": 10**400,
        "cost": 10**400,
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"evalId": "e", "results": {"version": 3, "results": [result]}}))
    assert import_file(path).answers_added == 1
    with session_scope() as s:
        row = s.scalars(select(Response)).one()
        assert (row.latency_ms, row.cost_usd, row.input_tokens) == (None, None, None)


def test_a_field_given_twice_in_one_row_is_a_problem_not_the_last_one_silently(tmp_path):
    """Field names are read in any case: 'model' and 'Model' in one row (or a CSV header) are one
    field, and the row kept the last in silence (the answer went under the other model)."""
    path = tmp_path / "dup.csv"
    path.write_text("prompt,model,response,Model\nWhich is bigger?,dupC,6,dupD\n")
    with pytest.raises(ImportProblems) as raised:
        import_file(path)
    assert raised.value.problems == ["dup.csv:2: the field model is given twice ('model' and 'Model')"]
    rows = tmp_path / "dup.jsonl"
    rows.write_text('{"prompt": "q", "model": "dupA", "Model": "dupB", "response": "3"}\n')
    with pytest.raises(ImportProblems, match="dup.jsonl:1: the field model is given twice"):
        import_file(rows)
    # the same spelling twice: json kept the last in silence before any check could see the row
    rows.write_text('{"prompt": "q", "model": "dupA", "model": "dupB", "response": "3"}\n')
    with pytest.raises(ImportProblems, match=r"dup.jsonl:1: column 34: the key 'model' is given twice in one object"):
        import_file(rows)
    whole = tmp_path / "dup.json"
    whole.write_text('[{"prompt": "q", "model": "dupA", "response": "3",\n  "response": "4"}]\n')
    with pytest.raises(ImportProblems, match=r"dup.json:2: column 3: the key 'response' is given twice"):
        import_file(whole)
