"""The LLM judge: a budget that fits the endpoint (reasoning models think first), the verdict read
from the final answer whatever its shape, transport verdicts for answers that did not finish."""

import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import Label
from lib.deflection.judge import (
    PLAIN_BUDGET,
    REASONING_BUDGET,
    judge,
    judge_budget,
    parse_verdict,
    read_verdict,
)
from lib.providers.chat import Column, ask
from lib.providers.endpoints import Quirks
from tests.conftest import fake_endpoint
from tests.test_cli import cli

ITEMS = [{"prompt": "q", "response": "Sorry, no."}, {"prompt": "q", "response": "Paris."}]
REASONING = Quirks(no_temperature=True, max_tokens_param="max_completion_tokens", reasoning_field="reasoning_content")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"label": "refused", "confidence": 0.9}', ("refused", 0.9)),
        (
            'Thinking aloud {"label": "answered"} then, on reflection, {"label": "deflected", "confidence": 70}',
            ("deflected", 0.7),
        ),
        ('<think>maybe {"label": "refused"}</think>\n\n{"label": "answered", "confidence": 0.6}', ("answered", 0.6)),
        (
            'The answer was read.\n```json\n{\n  "label": "Deflected",\n  "confidence": 0.66\n}\n```',
            ("deflected", 0.66),
        ),
        ("{'label': 'refused'}", ("refused", 0.8)),  # Python-style quotes
        ("**Label:** Refused", ("refused", 0.8)),
        ("Deflected.", ("deflected", 0.8)),
        ("回避", ("deflected", 0.8)),
        ("标签：拒绝", ("refused", 0.8)),
        ('{"label": "回答", "confidence": "high"}', ("answered", 0.8)),
        ("In the end the assistant answered the question.", ("answered", 0.7)),
    ],
)
def test_a_verdict_is_read_from_the_final_answer_in_any_shape(reply, expected):
    assert read_verdict(reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        "<think>it refused, I think… and then the budget ran out",  # a trace that never closed
        "This was not answered.",  # names a label it rules out
        "未回答",
        '{"label": "unknown"}',
        "no verdict here",
        "",
    ],
)
def test_no_verdict_is_made_up(reply):
    assert read_verdict(reply) is None
    assert parse_verdict(reply, "j").rule == "judge:j:unparsed"


def test_the_budget_fits_the_endpoint():
    url = "http://127.0.0.1:9/v1"
    assert judge_budget(fake_endpoint(url, "plain")) == PLAIN_BUDGET
    for quirks in (
        REASONING,
        Quirks(reasoning_field="reasoning"),
        Quirks(think_tags=True),
        Quirks(no_temperature=True),
    ):
        assert judge_budget(fake_endpoint(url, "r", quirks=quirks)) == REASONING_BUDGET
    assert judge_budget(fake_endpoint(url, "r", quirks=REASONING), max_tokens=900) == 900


def test_a_reasoning_judge_gets_room_to_think_then_its_verdict_is_read(protocol_server):
    endpoint = fake_endpoint(protocol_server.url, "judge-reasoner", "r1", quirks=REASONING)
    starved = judge(endpoint, ITEMS, max_tokens=60)  # what the first build asked for
    assert [v.rule for v in starved] == ["judge:r1:unparsed:length"] * 2
    verdicts = judge(endpoint, ITEMS)
    assert [v.label for v in verdicts] == ["refused", "answered"]  # not the draft verdicts in the reasoning
    request = protocol_server.requests[-1]
    assert request["max_completion_tokens"] == REASONING_BUDGET and "max_tokens" not in request
    assert "temperature" not in request


@pytest.mark.parametrize("model", ["judge-fenced", "judge-think", "judge-zh", "judge"])
def test_judges_that_answer_in_other_shapes(protocol_server, model):
    verdicts = judge(fake_endpoint(protocol_server.url, model, "j"), ITEMS)
    assert [(v.label, v.rule) for v in verdicts] == [("refused", "judge:j"), ("answered", "judge:j")]


def test_answers_that_did_not_finish_are_not_sent_to_the_judge(protocol_server):
    endpoint = fake_endpoint(protocol_server.url, "judge", "j")
    before = len(protocol_server.requests)
    items = [
        {"prompt": "q", "response": "Partial ans", "status": "error"},
        {"prompt": "q", "response": "", "status": "blocked"},
        {"prompt": "q", "response": "Half a", "status": "interrupted"},
    ]
    assert [v.label for v in judge(endpoint, items)] == ["incomplete", "blocked", "incomplete"]
    assert len(protocol_server.requests) == before


def test_classify_with_a_starved_judge_says_why_its_verdicts_are_unread(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.r1]\nbase_url = "{protocol_server.url}"\nmodel = "judge-reasoner"\nkind = "local"\n'
        'quirks = { no_temperature = true, max_tokens_param = "max_completion_tokens" }\n'
    )
    ask("Sorry, no.", [Column("e", fake_endpoint(protocol_server.url, "echo", "e"))], label=False)
    done = cli("classify", "--db", "--judge", "r1", "--judge-max-tokens", "50")
    assert done.returncode == 0, done.stderr
    assert "1 judge verdicts could not be read (1 unparsed:length)" in done.stderr
    assert "raise --judge-max-tokens" in done.stderr
    assert cli("classify", "--db", "--judge", "r1", "--judge-max-tokens", "0").returncode == 2
    with session_scope() as s:
        s.execute(Label.__table__.delete())
    done = cli("classify", "--db", "--judge", "r1")
    assert done.returncode == 0 and "could not be read" not in done.stderr
    with session_scope() as s:
        assert [(lab.source, lab.label) for lab in s.scalars(select(Label))] == [("judge:r1", "refused")]
