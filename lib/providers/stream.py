"""One streamed chat completion against one OpenAI-compatible endpoint.

`build_request` maps our neutral parameters onto each provider's quirks; `stream_chat` yields
the answer as it arrives and ends with a final `Outcome`. Everything a provider sends is
untrusted: each delta is made valid Unicode and cleared of the endpoint's secrets before it
reaches the Outcome (lib/safety.py), and every failure signal (status code, error body,
finish reason, dropped connection) is mapped to a status through the one table in
lib/providers/signals.py.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx2
import openai
from openai import AsyncOpenAI
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import ChatCompletionChunk

from db.vocab import Status
from lib.providers import local_server, signals
from lib.providers.endpoints import Endpoint, api_key
from lib.providers.signals import MissingKey, NotEventStream, explain
from lib.safety import Redactor, SurrogateJoiner, decode_bytes, token_count, url_secrets

__all__ = ["MissingKey", "Outcome", "build_messages", "build_request", "explain", "stream_chat"]
# failures that, once some text has arrived, mean the stream broke off part way
PART_WAY = ("connection", "timeout", "error", "bad_response", "provider_error")
INTERRUPTED_MESSAGE = "Interrupted; the text streamed so far is kept."


@dataclass
class Outcome:
    """Everything recorded about one finished (or failed) streamed answer."""

    text: str = ""
    reasoning: str = ""
    status: str = Status.OK
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

    @property
    def note(self) -> str | None:
        """What to do when the token budget cut this answer (see signals.budget_note), else None."""
        budget = self.params.get("max_tokens") or self.params.get("max_completion_tokens")
        return signals.budget_note(self.text, self.reasoning, self.finish_reason, self.output_tokens, budget)


# what the OpenAI client's create() names (its own request options aside): an endpoint's other
# params (top_k, min_p, repetition_penalty… of llama.cpp and vLLM) go in the body as they are
# (extra_body); passed as arguments they were a TypeError reported as the provider's error
_CREATE_TAKES = frozenset(inspect.signature(AsyncCompletions.create).parameters) - {
    "self",
    "extra_headers",
    "extra_query",
    "extra_body",
    "timeout",
}


def _as_create_takes(request: dict) -> dict:
    """`request` as the client's create() takes it: named arguments, the rest under extra_body."""
    named = {k: v for k, v in request.items() if k in _CREATE_TAKES}
    extra = {k: v for k, v in request.items() if k not in _CREATE_TAKES}
    return named | ({"extra_body": extra} if extra else {})


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
    # one budget, sent under the name the endpoint takes: a typed one (either spelling) wins over
    # the endpoint's params, where `max_tokens` wins over `max_completion_tokens`
    budgets = [
        source.get(name)
        for source in (overrides or {}, endpoint.params)
        for name in ("max_tokens", "max_completion_tokens")
    ]
    for name in ("max_tokens", "max_completion_tokens"):
        params.pop(name, None)
    max_tokens = next((budget for budget in budgets if budget is not None), None)
    if max_tokens is not None:
        params[quirks.max_tokens_param] = int(max_tokens)
    request = {"model": endpoint.model, "messages": messages, "stream": True, **params}
    if quirks.stream_usage:
        request["stream_options"] = {"include_usage": True}
    return request


class ThinkSplitter:
    """Separates reasoning sent inside `<think>...</think>` from the answer (the `think_tags` quirk).

    Tags count only at the start of the answer: `<think>` there opens the reasoning, and a
    `</think>` before any `<think>` closes reasoning whose opening tag the chat template already
    put in the prompt (R1 distills behind vLLM or Ollama). After that, and in an answer that does
    not start that way, tags are ordinary text. `text` and `reasoning` are running totals: text
    shown while streaming can still move to the reasoning when a late `</think>` arrives."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self.state = "start"  # start -> inside | open -> text
        self.pending = ""  # leading text that may still become an opening tag
        self.text = ""
        self.reasoning = ""
        self.scanned = 0  # how far the current buffer was searched for a tag

    def feed(self, chunk: str) -> None:
        """Add one streamed piece of content."""
        if self.state == "start":
            self.pending += chunk
            head = self.pending.lstrip()
            if not head or (self.OPEN.startswith(head) and head != self.OPEN):
                return  # not decided yet
            chunk, self.pending = self.pending, ""
            if head.startswith(self.OPEN):
                self.state, chunk = "inside", head[len(self.OPEN) :]
            else:
                self.state = "open"
        if self.state == "inside":
            self.reasoning += chunk
            self._close_in("reasoning")
        elif self.state == "open":
            self.text += chunk
            self._close_in("text")
        elif self.text or chunk.strip():
            self.text += chunk if self.text else chunk.lstrip()  # no blank lines after </think>

    def _close_in(self, field: str) -> None:
        buffer = getattr(self, field)
        start = max(0, self.scanned - len(self.CLOSE))
        close = buffer.find(self.CLOSE, start)
        opened = buffer.find(self.OPEN, start) if field == "text" else -1
        if opened >= 0 and (close < 0 or opened < close):
            self.state = "text"  # a <think> in the middle of an answer is text, and so is all after it
            return
        if close < 0:
            self.scanned = len(buffer)
            return
        # everything before the closing tag was reasoning (the other field is still empty)
        self.reasoning, self.text = buffer[:close], buffer[close + len(self.CLOSE) :].lstrip()
        self.state = "text"

    def flush(self) -> None:
        """The stream ended: undecided leading text is text."""
        self.text, self.pending = self.text + self.pending, ""


def _reasoning_delta(delta: object, field_name: str | None) -> str:
    names = [field_name] if field_name else ["reasoning_content", "reasoning"]
    for name in names:
        value = getattr(delta, name, None)
        if value is None and getattr(delta, "model_extra", None):
            value = delta.model_extra.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


REDACT_EVERY_S = 0.1  # a stream's text is redacted again at least this often (see _Answer._due)
REDACT_ALWAYS_CHARS = 4096  # a text this short is redacted again on every piece


class _Answer:
    """One answer as it arrives: every piece made valid Unicode, `<think>` spans split out,
    and the endpoint's secrets redacted before anything reaches the Outcome."""

    def __init__(self, endpoint: Endpoint, out: Outcome) -> None:
        self.endpoint, self.out = endpoint, out
        self.content, self.thinking = SurrogateJoiner(), SurrogateJoiner()
        self.splitter = ThinkSplitter() if endpoint.quirks.think_tags else None
        self.text, self.reasoning = "", ""
        self.redact = Redactor(url_secrets(endpoint.base_url))
        self.redacted_chars, self.redacted_at = 0, 0.0  # what the Outcome shows was redacted at
        self.redact_cost = 0.0  # seconds the last redaction took

    def _due(self, chars: int) -> bool:
        """Whether to redact the text again now: the whole text is redacted every time (a secret
        may span pieces), so it is done when the text has grown a tenth or a tenth of a second has
        passed (the pages repaint no faster), not on every piece: a 50,000-character answer in
        6,000 pieces cost a minute of redaction."""
        if chars <= REDACT_ALWAYS_CHARS and self.redact_cost < 0.005:  # cheap: shown at once (stalled too)
            return True
        return chars >= self.redacted_chars * 1.1 or time.monotonic() - self.redacted_at >= REDACT_EVERY_S

    def add(self, content: str, reasoning: str, final: bool = False) -> bool:
        """Take one delta (or, with `final`, the end of the stream); True when the Outcome changed."""
        content = self.content.flush() if final else self.content.feed(content)
        reasoning = self.thinking.flush() if final else self.thinking.feed(reasoning)
        self.reasoning += reasoning
        if self.splitter is not None:
            if content:
                self.splitter.feed(content)
            if final:
                self.splitter.flush()
            text, extra = self.splitter.text, self.splitter.reasoning
        else:
            text, extra = self.text + content, ""
        self.text = text
        chars = len(text) + len(self.reasoning) + len(extra)
        if not final and not self._due(chars):
            return False  # shown with the next redaction (the first piece is always shown at once)
        began = time.monotonic()
        # no header rule in an answer: its code writes api_key=os.environ[…], which is no echo
        text, both = self.redact(text, headers=False), self.redact(self.reasoning + extra, headers=False)
        self.redacted_at = time.monotonic()  # after it: a slow redaction is not repeated on every piece
        self.redacted_chars, self.redact_cost = chars, self.redacted_at - began
        if not final:  # a key arriving in pieces is not shown before it can be redacted whole
            text, both = self.redact.held_back(text), self.redact.held_back(both)
        changed = (text, both) != (self.out.text, self.out.reasoning)
        self.out.text, self.out.reasoning = text, both
        return changed

    def cut_off(self) -> None:
        """The stream ended (finished, cut at the token limit, failed, interrupted): a key it was
        sending part way is not kept (`Redactor.held_back`)."""
        self.out.text, self.out.reasoning = (
            self.redact.held_back(self.out.text),
            self.redact.held_back(self.out.reasoning),
        )


def _usage(usage: object) -> dict | None:
    """A provider's usage object as the client reads it, its counts checked (`token_count`): a count
    of 10.5, "n/a" or 1e300 is unknown, not a reason to throw the answer away; None unless both
    counts are usable."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens"))
    if prompt is None or completion is None:  # unknown, not 0 (the answer's own count is taken then)
        return None
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _event(body: dict) -> dict:
    """An event read whole (not from the client's stream) with its untrusted numbers made safe."""
    created = body.get("created")
    return body | {
        "created": created if isinstance(created, int) and 0 <= created < 2**53 else 0,
        "usage": _usage(body.get("usage")),
    }


def _chunk_from_completion(body: dict) -> ChatCompletionChunk:
    """A whole (non-streamed) chat completion as one chunk: some servers ignore stream=true."""
    choice = body["choices"][0]
    return ChatCompletionChunk.model_validate(
        _event(
            {
                "id": str(body.get("id") or "completion"),
                "object": "chat.completion.chunk",
                "created": body.get("created"),
                "model": str(body.get("model") or ""),
                "choices": [
                    {"index": 0, "delta": choice.get("message") or {}, "finish_reason": choice.get("finish_reason")}
                ],
                "usage": body.get("usage"),
            }
        )
    )


async def _chunks(stream) -> AsyncIterator[ChatCompletionChunk]:
    """The stream's chunks; a 200 that is not an event stream is read whole and either used (a
    full completion, or events sent under the wrong content type) or raised as the failure it
    describes, with the provider's own words."""
    response = stream.response
    content_type = response.headers.get("content-type", "")
    if not content_type or "event-stream" in content_type:
        async for chunk in stream:
            yield chunk
        return
    try:
        raw = decode_bytes(await response.aread())
    finally:
        await response.aclose()
    body: object = raw
    try:
        body = json.loads(raw)
    except ValueError:
        events = [line[5:].strip() for line in raw.splitlines() if line.startswith("data:")]
        if events:
            for data in events:
                if data != "[DONE]":
                    event = json.loads(data)
                    yield ChatCompletionChunk.model_validate(_event(event) if isinstance(event, dict) else event)
            return
    if isinstance(body, dict) and isinstance(body.get("choices"), list) and body["choices"]:
        try:
            yield _chunk_from_completion(body)
            return
        except (KeyError, TypeError, ValueError, OverflowError):
            pass
    if isinstance(body, dict) and body.get("error"):
        message = signals.provider_message(body) or "an error in a 200 response"
        raise openai.APIError(message, response.request, body=body["error"])
    raise NotEventStream(content_type, body)


def _progress(chunk: ChatCompletionChunk, reasoning_field: str | None) -> bool:
    """Whether a chunk moves the answer on: text or reasoning, a finish reason or the usage."""
    if chunk.usage is not None:
        return True
    for choice in chunk.choices or []:
        delta = choice.delta
        if choice.finish_reason or (delta is not None and (delta.content or _reasoning_delta(delta, reasoning_field))):
            return True
    return False


async def _each_within(
    chunks: AsyncIterator[ChatCompletionChunk], seconds: float, reasoning_field: str | None = None
) -> AsyncIterator:
    """The chunks, as long as each `seconds` bring some progress (see `_progress`): TimeoutError
    otherwise. The HTTP read timeout alone restarts on any byte, so a provider that sends only
    keep-alive comments (": PROCESSING") or empty deltas could hold an answer open for ever."""
    iterator = aiter(chunks)
    deadline = time.monotonic() + seconds
    while True:
        try:  # in this task (not wait_for's): a cancelled page never leaves the stream mid-read
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise TimeoutError(
                f"no text for {seconds:g} s (keep-alive comments and empty chunks do not count)"
            ) from None
        if _progress(chunk, reasoning_field):
            deadline = time.monotonic() + seconds
        yield chunk


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
    # the policy prompt the model saw ("" for none), so exports show the prompt as it was sent
    out.params["policy_system_prompt"] = endpoint.system_prompt
    start = time.perf_counter()
    answer = _Answer(endpoint, out)
    counted = 0
    try:
        key = api_key(endpoint)
        if key is None:
            raise MissingKey(endpoint.key_env)
        # the key's pieces are looked for only where there is a key (not the placeholder local servers get)
        answer.redact = Redactor(url_secrets(endpoint.base_url), key=key if endpoint.key_env else None)
        base_url = (await asyncio.to_thread(local_server.ensure_running)) if endpoint.is_embedded else endpoint.base_url
        client = AsyncOpenAI(
            api_key=key,
            base_url=base_url,
            timeout=endpoint.timeout,
            max_retries=endpoint.max_retries,
            http_client=http_client,
        )
        try:
            stream = await client.chat.completions.create(**_as_create_takes(request))
            async for chunk in _each_within(_chunks(stream), endpoint.timeout, endpoint.quirks.reasoning_field):
                if chunk.usage is not None:
                    out.input_tokens = token_count(chunk.usage.prompt_tokens)  # untrusted: any number
                    out.output_tokens = token_count(chunk.usage.completion_tokens)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                delta = choice.delta
                text = (delta.content or "") if delta is not None else ""
                reasoning = _reasoning_delta(delta, endpoint.quirks.reasoning_field) if delta else ""
                if text or reasoning:
                    counted += 1
                    if answer.add(text, reasoning):
                        if out.ttft_ms is None:
                            out.ttft_ms = (time.perf_counter() - start) * 1000
                        yield out
                if choice.finish_reason:
                    out.finish_reason = answer.redact(str(choice.finish_reason))
            if endpoint.is_embedded and out.input_tokens is None:  # a server without usage: count the prompt
                out.input_tokens = await asyncio.to_thread(local_server.count_prompt_tokens, request["messages"])
        finally:
            if http_client is None:
                await client.close()
        answer.add("", "", final=True)
        answer.cut_off()
        rule = signals.for_finish(out.finish_reason)
        if rule.status != Status.OK:
            kind = "stream_empty" if rule.kind == "stream_broken" and not out.text else rule.kind
            detail = f"finish_reason '{out.finish_reason}'" if out.finish_reason else None
            out.status, out.error_kind = rule.status, kind
            out.error_message = explain(kind, endpoint, detail)
            if kind == "stream_empty" and endpoint.is_embedded and (out.input_tokens or 0) > local_server.CONTEXT:
                # llama-cpp-python's server (the fallback) ends such a stream with nothing: say why
                out.error_kind = "context_length"
                out.error_message = explain(out.error_kind, endpoint) + (
                    f" ({out.input_tokens:,} prompt tokens; the embedded model reads {local_server.CONTEXT:,})"
                )
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
        answer.add("", "", final=True)
        answer.cut_off()
        if not isinstance(exc, Exception):  # cancellation, KeyboardInterrupt, Streamlit rerun
            out.status, out.error_kind = Status.INTERRUPTED, "interrupted"
            out.error_message = INTERRUPTED_MESSAGE
            _finish(out, endpoint, start, counted)
            raise
        rule, detail, code = signals.for_exception(exc)
        kind = rule.kind
        if rule.status == Status.ERROR and kind in PART_WAY and (out.text or out.reasoning):
            kind = "stream_broken"  # it failed part way: what arrived is kept
        out.status, out.error_kind = rule.status, kind
        out.error_message = explain(kind, endpoint, None if kind == "missing_key" else answer.redact(detail), code)
    _finish(out, endpoint, start, counted)
    yield out


def _finish(out: Outcome, endpoint: Endpoint, start: float, counted: int) -> None:
    out.latency_ms = (time.perf_counter() - start) * 1000
    if out.output_tokens is None and counted:
        out.output_tokens, out.tokens_counted = counted, True
    out.cost_usd = endpoint.cost(out.input_tokens, out.output_tokens)
    out.done = True
