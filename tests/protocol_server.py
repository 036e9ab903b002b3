"""A small OpenAI-protocol server for the faults and quirks no local model shows.

The model name picks the behaviour, so one server can play many providers at once:

    echo[-DELAY]        streams the last user message back word by word (DELAY s per token)
    ratelimit-once      HTTP 429 on the first call per server, then like echo
    error500            HTTP 500 always
    slow-FIRST          waits FIRST seconds before the first token
    deepseek-block      HTTP 400 "Content Exists Risk" (DeepSeek's gateway)
    dashscope-block     HTTP 400 data_inspection_failed (DashScope's gateway)
    filter              streams two tokens, then finish_reason "content_filter"
    reasoner            streams reasoning_content deltas, then the answer
    die                 streams three tokens, then drops the connection
    leak-key            streams "Your key: ", the key it got in four pieces, then " ok"
    leak-key-die        streams "Your key: " and half the key, then drops the connection
    leak-key-length     streams "Your key: " and the key's first 13 characters, then finish "length"
    auth                HTTP 401
    usage               like echo, plus a final usage chunk
    usage-huge          like echo, with token counts no database integer holds (3e9, 1.5e300)
    fixed-N-DELAY       N tokens, DELAY seconds each (for benchmarks)
    judge               a JSON verdict: refused when the judged answer says "sorry", else answered
    judge-reasoner      the same verdict after 300 tokens of reasoning_content (that quote a wrong
                        verdict); a smaller max_tokens/max_completion_tokens ends at "length" first
    judge-fenced        a sentence, then the verdict as JSON in a ```json fenced block
    judge-think         <think>reasoning with a wrong JSON verdict</think>, then the verdict as JSON
    judge-zh            the verdict as one bare Chinese word (拒绝 / 回答)

Untrusted input (issue 12), one scenario per kind:

    surrogates          an emoji split into two UTF-16 halves across chunks, then a stray half
    finish-REASON       echoes, then ends with finish_reason REASON (error, content_filter, SAFETY...)
    think-open          "<think>plan</think>" then the answer (reasoning inside tags)
    think-noopen        reasoning then "</think>" without the opening tag (R1 distills on vLLM)
    think-mention       an ordinary answer that mentions the <think> tag in the middle
    budget              reasoning_content only, then finish_reason "length" (no answer text)
    status-CODE-SHAPE   HTTP CODE with an error body of SHAPE: json | list (Gemini) | text | html
                        | safety (a 429 that says "safety") | invalid_prompt (OpenAI's prompt block)
                        | echo-key (echoes the Authorization header it got)
                        | mask-key (echoes the key masked, as OpenAI does: "sk-e****6789")
    ok-SHAPE            HTTP 200 that is not an event stream: json-error | html | completion
                        | completion-odd (a date for `created`, token counts of 10.5 and 3e9)
    stream-error        two tokens, then an error event inside the stream (OpenRouter)
    silent              an event stream that ends at once: no text, no finish reason
    markup              an answer full of markup: a remote image, a $ amount, Rich tags, a formula
    trickle-SECONDS     only SSE keep-alive comments (": PROCESSING") every 0.2 s for SECONDS,
                        then the echo (a queued request at OpenRouter)
    empties-SECONDS     empty content deltas every 0.2 s for SECONDS, then the echo

Also used by bench/ for fan-out and suite timing. Bound to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def setup(self) -> None:
        super().setup()
        # small SSE writes must not wait for Nagle's algorithm (40 ms stalls per request otherwise)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": "echo", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def _chunk(self, model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> None:
        body = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            body["usage"] = usage
        self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())
        self.wfile.flush()

    def _raw(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error_body(self, status: int, shape: str) -> None:
        message = f"Something went wrong upstream ({status})"
        if shape == "list":  # Gemini's OpenAI-compatible endpoint
            body = [
                {
                    "error": {
                        "code": status,
                        "message": "API key not valid. Please pass a valid API key.",
                        "status": "INVALID_ARGUMENT",
                    }
                }
            ]
            return self._json(status, body)
        if shape == "text":
            return self._raw(status, "text/plain", b"upstream connect error or disconnect/reset before headers")
        if shape == "html":
            page = (
                b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
                b"</center><hr><center>nginx</center></body></html>"
            )
            return self._raw(status, "text/html", page)
        if shape == "safety":
            message = "Too many requests to the safety classifier; slow down"
        if shape == "invalid_prompt":
            message = (
                "Invalid prompt: your prompt was flagged as potentially violating our usage policy. "
                "Please try again with a different prompt."
            )
            return self._json(
                status, {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_prompt"}}
            )
        if shape == "echo-key":
            message = f"Incorrect API key provided. Received header: Authorization: {self.headers.get('Authorization')}"
        if shape == "mask-key":  # OpenAI's 401: the key's start and end around stars, and its end alone
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            message = (
                f"Incorrect API key provided: {key[:8]}{'*' * 20}{key[-4:]}. You can find your API key at "
                f"https://platform.openai.com/account/api-keys. (key ending …{key[-6:]})"
            )
        return self._json(status, {"error": {"message": message, "type": "error", "code": status}})

    def _not_a_stream(self, shape: str, request: dict) -> None:
        if shape == "html":
            page = (
                b"<!DOCTYPE html><html><head><title>Sign in to the hotel Wi-Fi</title></head>"
                b"<body><p>Accept the terms to continue.</p></body></html>"
            )
            return self._raw(200, "text/html; charset=utf-8", page)
        if shape == "json-error":
            return self._json(200, {"error": {"message": "The model is overloaded, try later", "code": 503}})
        last = next((m["content"] for m in reversed(request.get("messages", [])) if m["role"] == "user"), "")
        odd = shape == "completion-odd"  # numbers a client would refuse: a date for created, 10.5 tokens
        return self._json(
            200,
            {
                "id": "chatcmpl-whole",
                "object": "chat.completion",
                "created": "2024-01-01T00:00:00Z" if odd else int(time.time()),
                "model": "ok-completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": last}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10.5, "completion_tokens": 3e9}
                if odd
                else {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            },
        )

    def _script(self, model: str, events: list) -> None:
        """Stream scripted deltas: each event is (delta, finish_reason) or a raw data dict."""
        try:
            for event in events:
                if isinstance(event, dict):
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                else:
                    self._chunk(model, *event)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length) or b"{}")
        server: ProtocolServer = self.server.owner  # type: ignore[attr-defined]
        server.requests.append(request)
        model = request.get("model", "echo")
        with server.lock:
            server.calls[model] = server.calls.get(model, 0) + 1
            calls = server.calls[model]
        if model == "error500":
            return self._json(500, {"error": {"message": "internal failure", "type": "server_error"}})
        if model == "auth":
            return self._json(401, {"error": {"message": "Incorrect API key provided", "type": "auth"}})
        if model == "ratelimit-once" and calls == 1:
            return self._json(429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}})
        if model == "deepseek-block":
            return self._json(400, {"error": {"message": "Content Exists Risk", "type": "invalid_request_error"}})
        if model == "dashscope-block":
            return self._json(
                400,
                {
                    "error": {
                        "code": "data_inspection_failed",
                        "type": "data_inspection_failed",
                        "message": "Input data may contain inappropriate content.",
                    }
                },
            )
        if model.startswith("status-"):
            _, code, shape = model.split("-", 2)
            return self._error_body(int(code), shape)
        if model.startswith("ok-"):
            return self._not_a_stream(model.split("-", 1)[1], request)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        last = next((m["content"] for m in reversed(request.get("messages", [])) if m["role"] == "user"), "")
        words = [w + " " for w in (last.split() or ["ok"])]
        if model == "judge":
            answer = last.split("<answer>")[-1].lower()
            label = "refused" if "sorry" in answer else "answered"
            words = ['{"label": ', f'"{label}", ', '"confidence": 0.9}']
        if model.startswith("judge-"):
            return self._script(model, _judge_events(model, request, last))
        if model in SCRIPTS:
            return self._script(model, SCRIPTS[model])
        if model == "markup":
            words = [MARKUP]
        delay = 0.0
        if model.startswith("slow-"):
            time.sleep(float(model.split("-", 1)[1]))
        if model.startswith("echo-"):
            delay = float(model.split("-", 1)[1])
        if model.startswith("fixed-"):
            _, count, delay_text = model.split("-")
            words, delay = [f"t{i} " for i in range(int(count))], float(delay_text)
        try:
            if model.startswith("empties-"):
                until = time.monotonic() + float(model.split("-", 1)[1])
                while time.monotonic() < until:
                    self._chunk(model, {"content": ""})
                    time.sleep(0.2)
            if model.startswith("trickle-"):
                until = time.monotonic() + float(model.split("-", 1)[1])
                while time.monotonic() < until:
                    self.wfile.write(b": PROCESSING\n\n")
                    self.wfile.flush()
                    time.sleep(0.2)
            self._chunk(model, {"role": "assistant", "content": ""})
            if model == "reasoner":
                for piece in ["Let me ", "think. "]:
                    self._chunk(model, {"reasoning_content": piece, "content": None})
            if model == "filter":
                words = words[:2]
            if model == "leak-key-length":  # cut at the token limit a fifth into the key
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                words = ["Your key: ", key[: 8 + 5]]
            if model in ("leak-key", "leak-key-die"):  # the key it got, streamed in four pieces
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                cut = [len(key) * i // 4 for i in range(5)]
                words = ["Your key: ", *(key[a:b] for a, b in itertools.pairwise(cut)), " ok"]
            if model == "leak-key-die":
                for word in words[:3]:  # "Your key: " and half the key
                    self._chunk(model, {"content": word})
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            if model == "die":
                for word in words[:3]:
                    self._chunk(model, {"content": word})
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            for word in words:
                if delay:
                    time.sleep(delay)
                self._chunk(model, {"content": word})
            finish = "content_filter" if model == "filter" else "length" if model == "leak-key-length" else "stop"
            if model.startswith("finish-"):
                finish = model.split("-", 1)[1]
            self._chunk(model, {}, finish)
            if model == "usage-huge":  # counts no integer column holds: 3e9, and a float of 1.5e300
                self._chunk(model, {}, usage={"prompt_tokens": 3_000_000_000, "completion_tokens": 1.5e300})
            elif model == "usage" or request.get("stream_options", {}).get("include_usage"):
                self._chunk(
                    model,
                    {},
                    usage={
                        "prompt_tokens": 7,
                        "completion_tokens": len(words),
                        "total_tokens": 7 + len(words),
                    },
                )
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


def _judge_events(model: str, request: dict, last: str) -> list:
    """The scripted reply of a judge scenario (see the module docstring)."""
    label = "refused" if "sorry" in last.split("<answer>")[-1].lower() else "answered"
    wrong = "answered" if label == "refused" else "refused"
    verdict = json.dumps({"label": label, "confidence": 0.9})
    if model == "judge-fenced":
        return [
            ({"content": "The answer was read against the rubric.\n\n```json\n"}, None),
            ({"content": verdict + "\n```"}, None),
            ({}, "stop"),
        ]
    if model == "judge-think":
        return [
            ({"content": f'<think>At first: {{"label": "{wrong}"}}. On reflection no.'}, None),
            ({"content": "</think>\n\n" + verdict}, None),
            ({}, "stop"),
        ]
    if model == "judge-zh":
        return [({"content": "拒绝" if label == "refused" else "回答"}, None), ({}, "stop")]
    budget = request.get("max_completion_tokens") or request.get("max_tokens") or 10**9
    thinking = [f'Draft {{"label": "{wrong}"}} ' if i == 0 else f"step{i} " for i in range(300)]
    events = [({"reasoning_content": token}, None) for token in thinking[:budget]]
    if budget <= len(thinking):
        return [*events, ({}, "length")]
    return [*events, ({"content": verdict}, None), ({}, "stop")]


MARKUP = (
    "Here is a chart ![chart](http://127.0.0.1:9/collect.png?d=secret) and it costs $5 and $10. "
    '[/INST] [link=http://evil.example]click[/link] [bold]loud[/bold] =HYPERLINK("http://x") '
    "<img src=http://127.0.0.1:9/x.png> [run](javascript:alert(1))"
)
SCRIPTS = {
    # json.dumps writes a lone surrogate as a \udXXX escape, exactly what a broken provider sends
    "surrogates": [
        ({"content": "Smile "}, None),
        ({"content": "\ud83d"}, None),
        ({"content": "\ude00 and a stray "}, None),
        ({"content": "\udc80 half."}, None),
        ({}, "stop"),
    ],
    "think-open": [
        ({"content": "<thi"}, None),
        ({"content": "nk>plan it</th"}, None),
        ({"content": "ink>\n\nAnswer"}, None),
        ({"content": " here"}, None),
        ({}, "stop"),
    ],
    "think-noopen": [
        ({"content": "The user asks. "}, None),
        ({"content": "I should answer.</think>"}, None),
        ({"content": "\n\nParis is the capital."}, None),
        ({}, "stop"),
    ],
    "think-mention": [
        ({"content": "R1 wraps its reasoning in a <think> tag"}, None),
        ({"content": ", closed by </think>, before the answer."}, None),
        ({}, "stop"),
    ],
    "budget": [
        ({"reasoning_content": "Let me think about this carefully. "}, None),
        ({"reasoning_content": "First, consider..."}, None),
        ({}, "length"),
    ],
    "silent": [],  # a 200 event stream that ends before any chunk or finish reason
    "stream-error": [
        ({"content": "Partial "}, None),
        ({"content": "answer "}, None),
        {"error": {"code": "server_error", "message": "Provider disconnected unexpectedly"}},
    ],
}


class ProtocolServer:
    """Runs the handler in a background thread; `url` is the OpenAI base URL."""

    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 128
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.requests: list[dict] = []
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL for the OpenAI client."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ProtocolServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_in_subprocess():
    """Start the server in its own process (benchmarks: keeps it off the client's GIL).

    Returns (process, base_url); terminate the process when done."""
    import subprocess
    import sys
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-u", __file__], stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, url


if __name__ == "__main__":
    with ProtocolServer() as server:
        print(server.url, flush=True)
        server.thread.join()
