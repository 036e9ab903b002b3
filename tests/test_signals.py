"""The table of provider signals (lib/providers/signals.py): one example per row, checked to land
on that row, and the provider's own words pulled out of error bodies of every shape."""

import httpx2
import openai
import pytest

from lib.providers import signals
from lib.providers.endpoints import Endpoint
from lib.providers.local_server import LocalModelUnavailable
from lib.providers.signals import SIGNALS, MissingKey, NotEventStream, Signal, lookup

REQUEST = httpx2.Request("POST", "http://h/v1/chat/completions")


def _http(code: int, body: object) -> Signal:
    return Signal("http", code=code, body=signals._body_text(body))


# one signal a real provider sends for each row of the table
EXAMPLES = {
    "http-429": _http(429, {"error": {"message": "Too many requests to the safety system"}}),
    "http-451": _http(451, "Unavailable For Legal Reasons"),
    "http-4xx-block": _http(400, {"error": {"message": "Content Exists Risk"}}),
    "http-401": _http(401, {"error": {"message": "Incorrect API key provided"}}),
    "http-402": _http(402, {"error": {"message": "Insufficient credits"}}),
    "http-404": _http(404, {"error": {"message": "The model `gpt-9` does not exist"}}),
    "http-408": _http(408, "Request Timeout"),
    "http-400": _http(400, [{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}]),
    "http-5xx": _http(502, "<html><title>502 Bad Gateway</title></html>"),
    "http-other": _http(409, "Conflict"),
    "finish-normal": Signal("finish", reason="stop"),
    "finish-block": Signal("finish", reason="content_filter"),
    "finish-none": Signal("finish", reason=None),
    "finish-other": Signal("finish", reason="insufficient_system_resource"),
    "missing-key": Signal("transport", error=MissingKey("DEEPSEEK_API_KEY")),
    "local-down": Signal("transport", error=LocalModelUnavailable("no model file")),
    "not-event-stream": Signal("transport", error=NotEventStream("text/html", "<html></html>")),
    "timeout": Signal("transport", error=openai.APITimeoutError(request=REQUEST)),
    "connection": Signal("transport", error=openai.APIConnectionError(request=REQUEST)),
    "stream-error-block": Signal(
        "transport",
        body='{"code": "content_filter", "message": "blocked"}',
        error=openai.APIError("blocked", REQUEST, body={"code": "content_filter"}),
    ),
    "stream-error": Signal(
        "transport",
        body='{"code": "server_error", "message": "Provider disconnected"}',
        error=openai.APIError("Provider disconnected", REQUEST, body={"code": "server_error"}),
    ),
    "unreadable": Signal("transport", error=ValueError("Expecting value: line 1 column 1")),
    "other": Signal("transport", error=RuntimeError("something else")),
}


def test_every_row_of_the_table_has_an_example():
    assert set(EXAMPLES) == {rule.id for rule in SIGNALS}


@pytest.mark.parametrize("rule", SIGNALS, ids=lambda r: r.id)
def test_each_row_is_the_one_its_example_lands_on(rule):
    assert lookup(EXAMPLES[rule.id]).id == rule.id


@pytest.mark.parametrize(
    ("code", "body", "expected"),
    [
        (429, "the safety classifier is busy", ("error", "rate_limit")),  # status code first
        (
            400,
            '{"error": {"code": "invalid_prompt", "message": "flagged as potentially violating"}}',
            ("blocked", "blocked"),
        ),
        (403, '{"error": {"message": "Your input was flagged for moderation"}}', ("blocked", "blocked")),
        (403, '{"error": {"message": "Project does not have access to model"}}', ("error", "auth")),
        (400, '{"error": {"message": "safety_identifier must be a string"}}', ("error", "bad_request")),
        (500, "content_filter service down", ("error", "server_error")),  # a 5xx is never a block
    ],
)
def test_status_code_decides_before_the_body(code, body, expected):
    rule = lookup(Signal("http", code=code, body=body))
    assert (rule.status, rule.kind) == expected


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("stop", "ok"),
        ("length", "ok"),
        ("tool_calls", "ok"),
        ("function_call", "ok"),
        ("eos", "ok"),  # llama.cpp
        ("SAFETY", "blocked"),  # Gemini
        ("recitation", "blocked"),
        ("sensitive", "blocked"),  # Zhipu GLM
        ("error", "error"),  # OpenRouter
        ("insufficient_system_resource", "error"),  # DeepSeek
        ("something_new", "error"),
    ],
)
def test_finish_reasons(reason, status):
    assert signals.for_finish(reason).status == status


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            [{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}],
            "API key not valid.",
        ),
        (
            {"error": {"message": "Rate limited", "metadata": {"raw": "upstream says slow down"}}},
            "Rate limited: upstream says slow down",
        ),
        ({"detail": "Not Found"}, "Not Found"),
        ({"error": "plain string error"}, "plain string error"),
        (
            "<html><head><title>503 Service Unavailable</title></head>"
            "<body><h1>Down</h1> for maintenance</body></html>",
            "503 Service Unavailable: Down for maintenance",
        ),
        ("  upstream connect error\n or disconnect  ", "upstream connect error or disconnect"),
    ],
)
def test_the_providers_own_message_is_found_in_any_body(body, message):
    assert signals.provider_message(body) == message


def test_long_bodies_are_trimmed():
    assert len(signals.provider_message("x " * 1000)) <= signals.MESSAGE_CHARS


def test_a_400_with_a_list_body_explains_with_the_providers_words_not_just_the_code():
    response = httpx2.Response(400, request=REQUEST, json=[{"error": {"message": "API key not valid."}}])
    exc = openai.BadRequestError("Error code: 400", response=response, body=response.json())
    rule, message, code = signals.for_exception(exc)
    text = signals.explain(rule.kind, Endpoint(id="g", name="G", base_url="http://h/v1", model="m"), message, code)
    assert "API key not valid." in text and "HTTP 400" in text


def test_budget_note_says_what_happened_and_what_to_do():
    note = signals.budget_note("", "thinking...", "length", 256, 256)
    assert "256" in note and "reasoning" in note and "Raise max tokens" in note
    assert "cut off" in signals.budget_note("partial", "", "length", 256, 256)
    assert signals.budget_note("", "", "stop", 3, 256) is None
