"""Provider signals -> (status, error kind): the one table, and the words a user reads.

A provider says how a call went through an HTTP status code, an error body, a stream's last
`finish_reason`, or by dropping the connection. `SIGNALS` maps each of these to the status we
store (ok | error | blocked) and an error kind a user can act on; rows are tried in order and
the first that matches wins. HTTP rows are keyed by status code first, so a 429 whose body says
"safety" is a rate limit, and only 4xx bodies can turn a failure into a content block.

`provider_message` digs the provider's own words out of any error body (a JSON object, a JSON
list like Gemini's, plain text, an HTML error page) and trims them; `explain` puts our sentence
and theirs together; `budget_note` says what to do when the token budget cut an answer.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx2
import openai

from db.vocab import Status
from lib.files import load_json
from lib.providers import local_server

MESSAGE_CHARS = 300
# provider wording of a content block, checked only on 4xx bodies (never on 429)
BLOCK_MARKERS = re.compile(
    r"content exists risk"  # DeepSeek
    r"|data_inspection_failed|inappropriate content"  # DashScope / Qwen
    r"|content[_ ]?filter|content[_ ]policy|content management policy"  # OpenAI, Azure, Moonshot
    r"|invalid_prompt|flagged as potentially violating"  # OpenAI's prompt screening
    r"|\bflagged\b|\bmoderation\b"  # OpenRouter's moderation (HTTP 403)
    r"|prohibited[_ ]content|\bsafety\b|\brecitation\b"  # Gemini
    r"|high risk"  # Moonshot / Kimi
    r"|敏感|不安全|违规|违法",  # Zhipu, Baidu and others in Chinese
    re.IGNORECASE,
)
# the finish reasons of a completed answer (OpenAI, llama.cpp, vLLM, Ollama, TGI, Mistral, Gemini)
NORMAL_FINISH = frozenset(
    {"stop", "length", "tool_calls", "function_call", "eos", "eos_token", "stop_sequence", "end_turn"}
    | {"max_tokens", "model_length", "tool_use"}
)
LENGTH_FINISH = frozenset({"length", "max_tokens", "model_length"})
BLOCK_FINISH = frozenset(
    {"content_filter", "safety", "recitation", "blocklist", "prohibited_content", "spii", "image_safety"}
    | {"sensitive"}  # Zhipu GLM
)


class MissingKey(RuntimeError):
    """The endpoint's key variable is not set."""


class NotEventStream(RuntimeError):
    """A 200 answer to a streaming request that is not an event stream (an HTML page, a JSON error)."""

    def __init__(self, content_type: str, body: object):
        super().__init__(f"expected an event stream, got {content_type or 'no content type'}")
        self.content_type, self.body = content_type, body


@dataclass(frozen=True)
class Signal:
    """One thing a provider said: its source (http | finish | transport), and the details."""

    source: str
    code: int | None = None
    body: str = ""
    reason: str | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Rule:
    """One row of the table: which signals it matches, and what they mean."""

    id: str
    source: str
    describe: str
    status: str
    kind: str | None
    test: Callable[[Signal], bool]


def _codes(*codes: int) -> Callable[[Signal], bool]:
    return lambda s: s.code in codes


def _blocked_body(*codes: int) -> Callable[[Signal], bool]:
    return lambda s: s.code in codes and bool(BLOCK_MARKERS.search(s.body))


def _reasons(names: frozenset) -> Callable[[Signal], bool]:
    return lambda s: (s.reason or "").lower() in names


def _raised(*types: type) -> Callable[[Signal], bool]:
    return lambda s: isinstance(s.error, types)


TIMEOUTS = (openai.APITimeoutError, TimeoutError, asyncio.TimeoutError, httpx2.TimeoutException)
E, B, OK = Status.ERROR, Status.BLOCKED, Status.OK
SIGNALS: tuple[Rule, ...] = (
    # HTTP status codes first; a body only matters for 4xx that can mean a content block
    Rule("http-429", "http", "429 Too Many Requests (whatever the body says)", E, "rate_limit", _codes(429)),
    Rule("http-451", "http", "451 Unavailable For Legal Reasons", B, "blocked", _codes(451)),
    Rule(
        "http-4xx-block",
        "http",
        "400/403/422 whose body is a content block (DeepSeek 'Content Exists Risk', DashScope "
        "data_inspection_failed, OpenAI invalid_prompt, OpenRouter moderation, Gemini safety...)",
        B,
        "blocked",
        _blocked_body(400, 403, 422),
    ),
    Rule("http-401", "http", "401/403 the key is wrong or lacks access", E, "auth", _codes(401, 403)),
    Rule("http-402", "http", "402 Payment Required (no credit left)", E, "quota", _codes(402)),
    Rule("http-404", "http", "404 unknown model or wrong URL", E, "model_not_found", _codes(404)),
    Rule("http-408", "http", "408 Request Timeout", E, "timeout", _codes(408)),
    Rule("http-400", "http", "400/413/422 the request was rejected", E, "bad_request", _codes(400, 413, 422)),
    Rule("http-5xx", "http", "5xx the provider failed", E, "server_error", lambda s: (s.code or 0) >= 500),
    Rule("http-other", "http", "any other status", E, "error", lambda s: True),
    # the last finish_reason of a stream
    Rule(
        "finish-normal",
        "finish",
        "stop, length, tool_calls, function_call and local equivalents",
        OK,
        None,
        _reasons(NORMAL_FINISH),
    ),
    Rule(
        "finish-block",
        "finish",
        "content_filter and provider safety/recitation reasons",
        B,
        "blocked",
        _reasons(BLOCK_FINISH),
    ),
    Rule(
        "finish-none", "finish", "the stream ended without a finish reason", E, "stream_broken", lambda s: not s.reason
    ),
    Rule(
        "finish-other",
        "finish",
        "anything else (OpenRouter 'error', DeepSeek 'insufficient_system_resource')",
        E,
        "provider_error",
        lambda s: True,
    ),
    # transport: what was raised instead of an answer
    Rule("missing-key", "transport", "the key variable is not set", E, "missing_key", _raised(MissingKey)),
    Rule(
        "local-down",
        "transport",
        "the embedded server could not start",
        E,
        "local_unavailable",
        _raised(local_server.LocalModelUnavailable),
    ),
    Rule(
        "not-event-stream", "transport", "a 200 that is not an event stream", E, "bad_response", _raised(NotEventStream)
    ),
    Rule("timeout", "transport", "no answer in time", E, "timeout", _raised(*TIMEOUTS)),
    Rule(
        "connection",
        "transport",
        "connection refused or dropped",
        E,
        "connection",
        _raised(openai.APIConnectionError, httpx2.TransportError, ConnectionError),
    ),
    Rule(
        "stream-error-block",
        "transport",
        "an error event in the stream that is a content block",
        B,
        "blocked",
        lambda s: bool(BLOCK_MARKERS.search(s.body)),
    ),
    Rule("stream-error", "transport", "an error event in the stream", E, "provider_error", _raised(openai.APIError)),
    Rule("unreadable", "transport", "a stream Parallax cannot parse", E, "bad_response", _raised(ValueError)),
    Rule("other", "transport", "anything else", E, "error", lambda s: True),
)

ERROR_HELP = {
    "missing_key": "No API key: {key_help}.",
    "auth": "The provider rejected the API key ({key_env}). Check that it is valid for this endpoint.",
    "quota": "The provider says the account has no credit or quota left (HTTP 402).",
    "model_not_found": (
        "The provider does not know model '{model}'. Check the model name and URL in the endpoint settings."
    ),
    "rate_limit": "Rate limited by the provider (HTTP 429), still after retries. Wait and retry.",
    "timeout": "The provider did not answer in time ({timeout:.0f} s).",
    "connection": "Could not connect to {host}. Is the server running and the URL right?",
    "blocked": "The provider's content filter blocked this request or answer.",
    "server_error": "The provider had an internal error (HTTP {code}).",
    "bad_request": "The provider rejected the request (HTTP {code}).",
    "bad_response": "The provider's answer was not a chat-completion stream.",
    "provider_error": "The provider ended the answer with an error; the text that arrived is kept.",
    "stream_broken": "The stream broke off part way; the text that arrived is kept.",
    "stream_empty": "The stream ended before any text arrived.",
    "context_length": (
        "The conversation is longer than the model's context: start a new conversation or shorten the prompt."
    ),
    "local_unavailable": "The embedded model could not be started.",
    "error": "The request failed.",
}


def lookup(signal: Signal) -> Rule:
    """The first row of SIGNALS that matches `signal` (every source ends with a catch-all)."""
    return next(rule for rule in SIGNALS if rule.source == signal.source and rule.test(signal))


def for_finish(reason: str | None) -> Rule:
    """The row for a stream's last finish_reason (None: the stream ended without one)."""
    return lookup(Signal("finish", reason=reason))


def _status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if code is None and isinstance(exc, openai.APIError) and isinstance(exc.body, dict):
        code = exc.body.get("code")  # an error event inside a stream carries the upstream code
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def for_exception(exc: BaseException) -> tuple[Rule, str, int | None]:
    """(row, the provider's own message, HTTP status code) for an exception raised while calling
    a provider. An error event inside a stream is looked up by the code it carries."""
    body = getattr(exc, "body", None)
    message = provider_message(body) if body is not None else ""
    if not message and not isinstance(exc, openai.APIStatusError):
        message = _trim(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
    code = _status_code(exc)
    if isinstance(exc, openai.APIStatusError) or (isinstance(exc, openai.APIError) and code and code >= 400):
        return lookup(Signal("http", code=code, body=_body_text(body), error=exc)), message, code
    return lookup(Signal("transport", body=_body_text(body) if body is not None else "", error=exc)), message, None


def _body_text(body: object) -> str:
    if isinstance(body, str):
        return body
    try:
        return json.dumps(body, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(body)


_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.S | re.I)
_HEAD = re.compile(r"<head\b.*?</head\s*>", re.S | re.I)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.S | re.I)


def _trim(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def provider_message(body: object) -> str:
    """The provider's own words from an error body of any shape, on one line, trimmed."""
    if body is None:
        return ""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        stripped = body.strip()
        if stripped[:1] in "[{":
            try:  # load_json: a body nested deeper than MAX_DEPTH is read as text, not a RecursionError
                return provider_message(load_json(stripped))
            except ValueError:
                pass
        if "<" in stripped and ">" in stripped:  # an HTML error page: its title and its text
            title = _TITLE.search(stripped)
            text = html.unescape(_TAGS.sub(" ", _HEAD.sub(" ", stripped)))
            head = html.unescape(title.group(1)).strip() if title else ""
            text = " ".join(text.split())
            stripped = text if not head or text.startswith(head) else f"{head}: {text}"
        return _trim(stripped)
    if isinstance(body, list):
        return "; ".join(m for m in (provider_message(item) for item in body[:3]) if m)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, (str, list)):
            return provider_message(error)
        if isinstance(error, dict):
            for name in ("message", "msg", "error_msg", "detail", "error_description", "error"):
                value = error.get(name)
                if isinstance(value, (str, list, dict)) and value:
                    text = provider_message(value)
                    raw = (error.get("metadata") or {}).get("raw") if isinstance(error.get("metadata"), dict) else None
                    if raw:  # OpenRouter wraps the upstream provider's own error here
                        text = f"{text}: {provider_message(raw)}"
                    return _trim(text)
        return _trim(_body_text(body))
    return _trim(str(body))


def explain(kind: str, endpoint, detail: str | None = None, code: int | None = None) -> str:
    """A plain sentence for the user about a failure kind, followed by the provider's own words."""
    from lib.providers.endpoints import where_keys_go

    text = ERROR_HELP.get(kind, ERROR_HELP["error"]).format(
        key_env=endpoint.key_env or "(none)",
        key_help=where_keys_go(endpoint.key_env or "(none)"),
        model=endpoint.model,
        timeout=endpoint.timeout,
        host=endpoint.host,
        code=code or "error",
    )
    return f"{text} Provider said: {detail}" if detail else text


def budget_note(
    text: str, reasoning: str | None, finish_reason: str | None, output_tokens: int | None, max_tokens=None
) -> str | None:
    """What to tell the user when the token budget cut an answer (None when it did not)."""
    if (finish_reason or "").lower() not in LENGTH_FINISH:
        return None
    limit = f"its whole budget of {max_tokens} output tokens" if max_tokens else "its whole output budget"
    if not (text or "").strip():
        spent = "on reasoning" if (reasoning or "").strip() else "before writing any answer"
        return (
            f"No answer: the model used {limit} {spent} and was cut off (finish_reason '{finish_reason}'). "
            "Raise max tokens and ask again."
        )
    budget = max_tokens or output_tokens
    return f"The answer was cut off at the token limit ({budget or '?'} tokens). Raise max tokens for the rest."
