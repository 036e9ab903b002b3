"""Request building per provider quirk, failure classification, reasoning extraction."""

import httpx2
import openai
import pytest

from lib.providers.endpoints import Endpoint, Quirks
from lib.providers.signals import for_exception
from lib.providers.stream import ThinkSplitter, build_messages, build_request


def endpoint(**quirks) -> Endpoint:
    return Endpoint(
        id="x",
        name="X",
        base_url="http://h/v1",
        model="m",
        quirks=Quirks(**quirks),
        params={"temperature": 0.7, "max_tokens": 100},
    )


def test_reasoning_models_get_max_completion_tokens_and_no_temperature():
    o1 = endpoint(no_temperature=True, max_tokens_param="max_completion_tokens", system_role="developer")
    req = build_request(o1, [], {"temperature": 0.2, "max_tokens": 50})
    assert "temperature" not in req and "max_tokens" not in req
    assert req["max_completion_tokens"] == 50 and req["stream"] is True
    msgs = build_messages(o1, "Be brief.", [], "Hi")
    assert msgs[0] == {"role": "developer", "content": "Be brief."}


def test_plain_models_keep_temperature_and_ask_for_usage():
    req = build_request(endpoint(), [], {"temperature": 0.2})
    assert req["temperature"] == 0.2 and req["max_tokens"] == 100
    assert req["stream_options"] == {"include_usage": True}
    assert "stream_options" not in build_request(endpoint(stream_usage=False), [])


@pytest.mark.parametrize(
    "configured", [{"max_completion_tokens": 500}, {"max_tokens": 500, "max_completion_tokens": 900}]
)
@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_one_token_budget_is_sent_and_a_typed_one_wins_whichever_spelling_the_params_use(configured, param):
    quirks = Quirks(max_tokens_param=param)
    ep = Endpoint(id="x", name="X", base_url="http://h/v1", model="m", quirks=quirks, params=dict(configured))
    other = "max_completion_tokens" if param == "max_tokens" else "max_tokens"
    typed = build_request(ep, [], {"max_tokens": 50})
    assert typed[param] == 50 and other not in typed  # both went out: the params' 500 beside the 50
    own = build_request(ep, [], {"max_tokens": None})
    assert own[param] == 500 and other not in own


def test_system_prompt_folds_into_first_user_turn_when_no_system_role():
    ep = endpoint(system_role="user")
    history = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}]
    msgs = build_messages(ep, "Rules.", history, "Q2")
    assert msgs[0] == {"role": "user", "content": "Rules.\n\nQ1"} and msgs[-1]["content"] == "Q2"


def test_policy_prompt_comes_before_the_users_system_prompt():
    ep = Endpoint(id="g", name="G", base_url="embedded", model="m", system_prompt="Policy.")
    assert build_messages(ep, "Mine.", [], "Q")[0]["content"] == "Policy.\n\nMine."
    assert build_messages(ep, None, [], "Q")[0]["content"] == "Policy."


def _status_error(cls, status: int, body: dict):
    request = httpx2.Request("POST", "http://h/v1/chat/completions")
    response = httpx2.Response(status, request=request, json=body)
    return cls(str(body), response=response, body=body.get("error"))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            lambda: _status_error(openai.BadRequestError, 400, {"error": {"message": "Content Exists Risk"}}),
            ("blocked", "blocked"),
        ),
        (
            lambda: _status_error(
                openai.BadRequestError, 400, {"error": {"code": "data_inspection_failed", "message": "x"}}
            ),
            ("blocked", "blocked"),
        ),
        (
            lambda: _status_error(openai.BadRequestError, 400, {"error": {"message": "bad param"}}),
            ("error", "bad_request"),
        ),
        (
            lambda: _status_error(openai.AuthenticationError, 401, {"error": {"message": "no"}}),
            ("error", "auth"),
        ),
        (
            lambda: _status_error(openai.NotFoundError, 404, {"error": {"message": "no model"}}),
            ("error", "model_not_found"),
        ),
        (
            lambda: _status_error(openai.RateLimitError, 429, {"error": {"message": "slow down"}}),
            ("error", "rate_limit"),
        ),
        (
            lambda: _status_error(openai.InternalServerError, 500, {"error": {"message": "oops"}}),
            ("error", "server_error"),
        ),
        (lambda: openai.APITimeoutError(request=httpx2.Request("POST", "http://h")), ("error", "timeout")),
        (
            lambda: openai.APIConnectionError(request=httpx2.Request("POST", "http://h")),
            ("error", "connection"),
        ),
    ],
)
def test_failures_are_classified_so_a_user_can_act(exc, expected):
    rule, _message, _code = for_exception(exc())
    assert (rule.status, rule.kind) == expected


def test_think_tags_are_split_out_even_across_chunks():
    splitter = ThinkSplitter()
    for chunk in ["<thi", "nk>plan ", "it</th", "ink>Answer", " here"]:
        splitter.feed(chunk)
    splitter.flush()
    assert (splitter.text, splitter.reasoning) == ("Answer here", "plan it")
