"""Export formats: exact keys per row, round-trips, filters, streaming, nothing-to-export."""

import csv
import json

import pytest

from db import conversations
from db import votes as vote_store
from db.engine import session_scope
from db.votes import VoteFilter
from lib.arena.export import FLAT_FIELDS, ROW_KEYS, NothingToExport, dataset_card, iter_rows, write_export
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome
from tests.test_cli import cli

A = Endpoint(
    id="model-a", name="Model Alpha", base_url="https://secret-host.example/v1", model="a", key_env="ALPHA_KEY"
)
B = Endpoint(id="model-b", name="Model Beta", base_url="http://127.0.0.1:1/v1", model="b")


def battle(s, winner, prompt="Q", system=None, blind=True, leaked=False, turns=1, language="en"):
    conv = conversations.create_conversation(s, mode="arena")
    for turn in range(turns):
        ex = conversations.add_exchange(s, conv.id, f"{prompt} turn {turn}", system, language)
        ra = conversations.add_response(s, ex.id, "a", A, Outcome(text=f"alpha answer {turn}", status="ok"))
        rb = conversations.add_response(s, ex.id, "b", B, Outcome(text=f"beta answer {turn}", status="ok"))
    vote_store.add_vote(s, ex.id, ra.id, rb.id, winner, blind=blind, identity_leaked=leaked)
    return ra, rb


@pytest.fixture
def votes(monkeypatch):
    monkeypatch.setenv("ALPHA_KEY", "sk-must-never-appear")
    with session_scope() as s:
        battle(s, "a", "Capital of France?", system="Be brief.")
        battle(s, "b", "Two turns", turns=2)
        battle(s, "tie")
        ra, _ = battle(s, "both_bad", language="zh")
        battle(s, "a", "leaky", leaked=True)
        battle(s, "b", "named vote", blind=False)
        vote_store.add_thumb(s, ra.id, up=True)


@pytest.mark.parametrize("fmt", ["trl", "openai-dpo", "kto"])
def test_every_line_has_exactly_the_documented_keys(votes, tmp_path, fmt):
    path = tmp_path / f"{fmt}.jsonl"
    with session_scope() as s:
        summary = write_export(s, fmt, VoteFilter(), path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == summary.rows > 0
    for row in rows:
        assert set(row) == ROW_KEYS[fmt]
    text = path.read_text()
    assert "sk-must-never-appear" not in text and "secret-host" not in text and "ALPHA_KEY" not in text


def test_trl_rows_hold_system_and_earlier_turns_in_the_prompt(votes):
    with session_scope() as s:
        rows = list(iter_rows(s, "trl", VoteFilter()))
    assert len(rows) == 3  # a, b, named b; tie, both-bad and the leaked battle are out
    first = rows[0]
    assert first["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France? turn 0"},
    ]
    assert first["chosen"] == [{"role": "assistant", "content": "alpha answer 0"}]
    assert first["rejected"] == [{"role": "assistant", "content": "beta answer 0"}]
    second = rows[1]  # B won a two-turn battle: the prompt is B's own history
    assert second["prompt"] == [
        {"role": "user", "content": "Two turns turn 0"},
        {"role": "assistant", "content": "beta answer 0"},
        {"role": "user", "content": "Two turns turn 1"},
    ]
    assert second["chosen"][0]["content"] == "beta answer 1"


def test_openai_preference_rows_match_the_fine_tuning_schema(votes):
    with session_scope() as s:
        row = next(iter_rows(s, "openai-dpo", VoteFilter()))
    assert row["input"]["messages"][-1] == {"role": "user", "content": "Capital of France? turn 0"}
    assert row["preferred_output"] == [{"role": "assistant", "content": "alpha answer 0"}]
    assert row["non_preferred_output"] == [{"role": "assistant", "content": "beta answer 0"}]


def test_kto_rows_come_from_votes_and_thumbs(votes):
    with session_scope() as s:
        rows = list(iter_rows(s, "kto", VoteFilter()))
    labels = [r["label"] for r in rows]
    # a: T,F  b(2 turns): T,F  tie: none  both_bad: F (its A side has a thumb)  named b: T,F  thumb: T
    assert labels == [True, False, True, False, False, True, False, True]
    assert all(r["completion"][0]["role"] == "assistant" for r in rows)


def test_flat_csv_round_trips_with_every_field(votes, tmp_path):
    path = tmp_path / "all.csv"
    with session_scope() as s:
        write_export(s, "csv", VoteFilter(include_leaked=True), path)
    with open(path, encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == FLAT_FIELDS and len(rows) == 6
    assert {r["winner"] for r in rows} == {"a", "b", "tie", "both_bad"}
    assert rows[0]["model_a"] == "model-a" and rows[0]["response_b"] == "beta answer 0"


def test_filters_blind_language_and_leaks(votes):
    with session_scope() as s:
        assert len(list(iter_rows(s, "jsonl", VoteFilter()))) == 5
        assert len(list(iter_rows(s, "jsonl", VoteFilter(include_leaked=True)))) == 6
        assert len(list(iter_rows(s, "jsonl", VoteFilter(blind_only=True)))) == 4
        assert [r["winner"] for r in iter_rows(s, "jsonl", VoteFilter(language="zh"))] == ["both_bad"]


def test_nothing_to_export_writes_no_file(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with session_scope() as s, pytest.raises(NothingToExport):
        write_export(s, "trl", VoteFilter(), out / "empty.jsonl")
    assert list(out.iterdir()) == []


def test_dataset_card_names_counts_models_and_filters():
    card = dataset_card("trl", 12, VoteFilter(blind_only=True, language="zh"), ["model-a", "model-b"])
    assert "Rows: 12" in card and "`model-a`, `model-b`" in card and "blind_only: `True`" in card
    assert "Licence" in card and "\\" not in card  # read as written: no backslash escapes in the plain file


@pytest.mark.parametrize("fmt", ["trl", "openai-dpo", "kto", "jsonl", "csv"])
def test_every_card_lists_the_models_whose_answers_its_rows_hold(votes, tmp_path, fmt):
    done = cli("export", "-f", fmt, "-o", str(tmp_path / "data"), "--card", str(tmp_path / "card.md"))
    assert done.returncode == 0, done.stderr
    card = (tmp_path / "card.md").read_text()
    (models,) = [line for line in card.splitlines() if line.startswith("- Models")]
    assert models.endswith(": `model-a`, `model-b`"), models  # not "see rows": training rows name no model


def test_a_hostile_model_name_in_a_card_renders_as_text_and_reads_as_written():
    from markdown_it import MarkdownIt

    names = [
        "alpha-7b",
        "![x](http://evil.example/p.png)",
        "<img src=x onerror=alert(1)>",
        "a`b``c",
        "[link](javascript:x)",
    ]
    card = dataset_card("jsonl", 3, VoteFilter(), names)
    tokens = MarkdownIt("commonmark").parse(card)
    kinds = {child.type for t in tokens for child in (t.children or [])} | {t.type for t in tokens}
    assert not kinds & {"image", "link_open", "html_inline", "html_block"}, kinds
    models = next(line for line in card.splitlines() if line.startswith("- Models"))
    assert "`alpha-7b`" in models and "alpha\\-7b" not in models
    spans = [child.content for t in tokens for child in (t.children or []) if child.type == "code_inline"]
    assert set(names) <= set(spans), spans


def test_changing_a_thumb_keeps_one_row_per_voter():
    with session_scope() as s:
        ra, _ = battle(s, "a")
        vote_store.add_thumb(s, ra.id, up=True)
        vote_store.add_thumb(s, ra.id, up=False)
        rows = list(vote_store.iter_thumbs(s, VoteFilter()))
    assert len(rows) == 1 and rows[0][0].up is False
