"""One streamed chat completion against one OpenAI-compatible endpoint.

`build_request` maps our neutral parameters onto each provider's quirks; `stream_chat` yields
the answer as it arrives and ends with a final `Outcome`; `classify_error` turns client
exceptions into the failure kinds a user can act on (missing key, rate limit, content block...).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx2
import openai
from openai import AsyncOpenAI

from lib import local_server
from lib.endpoints import Endpoint, api_key

BLOCK_MARKERS = (
    "content exists risk",  # DeepSeek
    "data_inspection_failed",  # DashScope / Qwen
    "inappropriate content",
    "content_filter",
    "content_policy_violation",
    "content management policy",
    "safety",
)
STATUS_OK, STATUS_ERROR, STATUS_BLOCKED, STATUS_INTERRUPTED = "ok", "error", "blocked", "interrupted"

ERROR_HELP = {
    "missing_key": "No API key: set the environment variable {key_env} (or put it in .streamlit/secrets.toml).",
    "auth": "The provider rejected the API key ({key_env}). Check that it is valid for this endpoint.",
    "model_not_found": "The provider does not know model '{model}'. Check the model name in the endpoint settings.",
    "rate_limit": "Rate limited by the provider (HTTP 429), still after retries. Wait and retry.",
    "timeout": "The provider did not answer in time ({timeout:.0f} s).",
    "connection": "Could not connect to {host}. Is the server running and the URL right?",
    "blocked": "The provider's content filter blocked this request or answer.",
    "server_error": "The provider had an internal error (HTTP 5xx).",
    "bad_request": "The provider rejected the request (HTTP 400).",
    "stream_broken": "The stream broke off part way; what arrived is kept.",
    "local_unavailable": "The embedded model could not be started.",
    "error": "The request failed.",
}


@dataclass
class Outcome:
    """Everything recorded about one finished (or failed) streamed answer."""

    text: str = ""
    reasoning: str = ""
    status: str = STATUS_OK
    error_kind: str | None = None
    error_message: str | None = None
    finish_reason: str | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    tokens_counted: bool = False
    cost_usd: float | None = None
    params: dict = field(default_factory=dict)
    done: bool = False


def build_messages(endpoint: Endpoint, system: str | None, history: list[dict], prompt: str) -> list[dict]:
    """The message list for one call: policy prompt, system prompt, history, then the prompt.

    Providers without a system role get it folded into the first user turn."""
    system_text = "\n\n".join(s for s in (endpoint.system_prompt, system or "") if s.strip())
    turns = [*history, {"role": "user", "content": prompt}]
    if not system_text:
        return turns
    role = endpoint.quirks.system_role
    if role == "user":
        first = dict(turns[0])
        first["content"] = f"{system_text}\n\n{first['content']}"
        return [first, *turns[1:]]
    return [{"role": role, "content": system_text}, *turns]


def build_request(endpoint: Endpoint, messages: list[dict], overrides: dict | None = None) -> dict:
    """Keyword arguments for chat.completions.create, with the endpoint's quirks applied."""
    params = {**endpoint.params, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    quirks = endpoint.quirks
    if quirks.no_temperature:
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
            params.pop(name, None)
    max_tokens = params.pop("max_tokens", None) or params.pop("max_completion_tokens", None)
    if max_tokens is not None:
        params[quirks.max_tokens_param] = int(max_tokens)
    request = {"model": endpoint.model, "messages": messages, "stream": True, **params}
    if quirks.stream_usage:
        request["stream_options"] = {"include_usage": True}
    return request


def _body_text(exc: openai.APIError) -> str:
    parts = [str(getattr(exc, "message", "") or exc)]
    body = getattr(exc, "body", None)
    if body is not None:
        parts.append(str(body))
    return " ".join(parts).lower()


class MissingKey(RuntimeError):
    """The endpoint's key variable is not set."""


def classify_error(exc: BaseException) -> tuple[str, str]:
    """(status, error_kind) for an exception raised while calling a provider."""
    if isinstance(exc, MissingKey):
        return STATUS_ERROR, "missing_key"
    if isinstance(exc, local_server.LocalModelUnavailable):
        return STATUS_ERROR, "local_unavailable"
    is_status = isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIConnectionError)
    if is_status and any(marker in _body_text(exc) for marker in BLOCK_MARKERS):
        return STATUS_BLOCKED, "blocked"
    kinds = [
        (openai.AuthenticationError, "auth"),
        (openai.PermissionDeniedError, "auth"),
        (openai.NotFoundError, "model_not_found"),
        (openai.RateLimitError, "rate_limit"),
        (openai.APITimeoutError, "timeout"),
        (openai.APIConnectionError, "connection"),
        (openai.InternalServerError, "server_error"),
        (openai.BadRequestError, "bad_request"),
        (openai.UnprocessableEntityError, "bad_request"),
    ]
    for cls, kind in kinds:
        if isinstance(exc, cls):
            return STATUS_ERROR, kind
    if isinstance(exc, TimeoutError):
        return STATUS_ERROR, "timeout"
    return STATUS_ERROR, "error"


def explain(kind: str, endpoint: Endpoint, detail: str | None = None) -> str:
    """A plain sentence for the user about a failure kind, with the provider's detail."""
    text = ERROR_HELP.get(kind, ERROR_HELP["error"]).format(
        key_env=endpoint.key_env or "(none)",
        model=endpoint.model,
        timeout=endpoint.timeout,
        host=endpoint.host,
    )
    return f"{text} ({detail})" if detail else text


def _short(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return message if len(message) <= 500 else message[:500] + "…"


class _ThinkSplitter:
    """Moves <think>...</think> spans out of streamed content into reasoning."""

    def __init__(self) -> None:
        self.inside = False
        self.buffer = ""

    def feed(self, chunk: str) -> tuple[str, str]:
        self.buffer += chunk
        text, reasoning = "", ""
        while self.buffer:
            tag = "</think>" if self.inside else "<think>"
            at = self.buffer.find(tag)
            if at < 0:
                # keep a possible partial tag for the next chunk
                keep = next((n for n in range(len(tag) - 1, 0, -1) if self.buffer.endswith(tag[:n])), 0)
                out, self.buffer = (
                    self.buffer[: len(self.buffer) - keep],
                    self.buffer[len(self.buffer) - keep :],
                )
                if self.inside:
                    reasoning += out
                else:
                    text += out
                break
            out, self.buffer = self.buffer[:at], self.buffer[at + len(tag) :]
            if self.inside:
                reasoning += out
            else:
                text += out
            self.inside = not self.inside
        return text, reasoning

    def flush(self) -> tuple[str, str]:
        out, self.buffer = self.buffer, ""
        return ("", out) if self.inside else (out, "")


def _reasoning_delta(delta: object, field_name: str | None) -> str:
    names = [field_name] if field_name else ["reasoning_content", "reasoning"]
    for name in names:
        value = getattr(delta, name, None)
        if value is None and getattr(delta, "model_extra", None):
            value = delta.model_extra.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


async def stream_chat(
    endpoint: Endpoint,
    messages: list[dict],
    overrides: dict | None = None,
    out: Outcome | None = None,
    http_client: httpx2.AsyncClient | None = None,
) -> AsyncIterator[Outcome]:
    """Stream one answer into `out`, yielding it after each delta and once at the end.

    Never raises for provider failures: they end the stream with status error/blocked. A
    cancellation (the user interrupted) propagates after marking the outcome interrupted.
    Pass a shared `http_client` when streaming several endpoints at once: building a client
    costs ~20 ms (its TLS context), which a fan-out would otherwise pay once per column."""
    out = out if out is not None else Outcome()
    request = build_request(endpoint, messages, overrides)
    out.params = {k: v for k, v in request.items() if k not in ("messages", "stream", "model")}
    start = time.perf_counter()
    splitter = _ThinkSplitter() if endpoint.quirks.think_tags else None
    counted = 0
    try:
        key = api_key(endpoint)
        if key is None:
            raise MissingKey(endpoint.key_env)
        base_url = (await asyncio.to_thread(local_server.ensure_running)) if endpoint.is_embedded else endpoint.base_url
        client = AsyncOpenAI(
            api_key=key,
            base_url=base_url,
            timeout=endpoint.timeout,
            max_retries=endpoint.max_retries,
            http_client=http_client,
        )
        try:
            stream = await client.chat.completions.create(**request)
            async for chunk in stream:
                if chunk.usage is not None:
                    out.input_tokens = chunk.usage.prompt_tokens
                    out.output_tokens = chunk.usage.completion_tokens
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                delta = choice.delta
                text = (delta.content or "") if delta is not None else ""
                reasoning = _reasoning_delta(delta, endpoint.quirks.reasoning_field) if delta else ""
                if splitter and text:
                    text, extra = splitter.feed(text)
                    reasoning += extra
                if text or reasoning:
                    if out.ttft_ms is None:
                        out.ttft_ms = (time.perf_counter() - start) * 1000
                    counted += 1
                    out.text += text
                    out.reasoning += reasoning
                    yield out
                if choice.finish_reason:
                    out.finish_reason = choice.finish_reason
            if endpoint.is_embedded and out.input_tokens is None:  # a server without usage: count the prompt
                out.input_tokens = await asyncio.to_thread(local_server.count_prompt_tokens, request["messages"])
        finally:
            if http_client is None:
                await client.close()
        if splitter:
            text, reasoning = splitter.flush()
            out.text, out.reasoning = out.text + text, out.reasoning + reasoning
        if out.finish_reason is None:
            # a clean end of the connection without a finish reason: the provider died mid-answer
            out.status, out.error_kind = STATUS_ERROR, "stream_broken"
            out.error_message = explain("stream_broken", endpoint, "no finish reason before the end")
        elif out.finish_reason == "content_filter":
            out.status, out.error_kind = STATUS_BLOCKED, "blocked"
            out.error_message = explain("blocked", endpoint, "finish_reason=content_filter")
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
        if not isinstance(exc, Exception):  # cancellation, KeyboardInterrupt, Streamlit rerun
            out.status, out.error_kind = STATUS_INTERRUPTED, "interrupted"
            out.error_message = "Interrupted; the text streamed so far is kept."
            _finish(out, endpoint, start, counted)
            raise
        status, kind = classify_error(exc)
        if status == STATUS_ERROR and out.text and kind in ("connection", "error", "timeout"):
            kind = "stream_broken"
        out.status, out.error_kind = status, kind
        out.error_message = explain(kind, endpoint, None if kind == "missing_key" else _short(exc))
    _finish(out, endpoint, start, counted)
    yield out


def _finish(out: Outcome, endpoint: Endpoint, start: float, counted: int) -> None:
    out.latency_ms = (time.perf_counter() - start) * 1000
    if out.output_tokens is None and counted:
        out.output_tokens, out.tokens_counted = counted, True
    out.cost_usd = endpoint.cost(out.input_tokens, out.output_tokens)
    out.done = True
