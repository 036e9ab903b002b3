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
    auth                HTTP 401
    usage               like echo, plus a final usage chunk
    fixed-N-DELAY       N tokens, DELAY seconds each (for benchmarks)
    judge               a JSON verdict: refused when the judged answer says "sorry", else answered

Also used by bench/ for fan-out and suite timing. Bound to 127.0.0.1 on a free port.
"""

from __future__ import annotations

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
        delay = 0.0
        if model.startswith("slow-"):
            time.sleep(float(model.split("-", 1)[1]))
        if model.startswith("echo-"):
            delay = float(model.split("-", 1)[1])
        if model.startswith("fixed-"):
            _, count, delay_text = model.split("-")
            words, delay = [f"t{i} " for i in range(int(count))], float(delay_text)
        try:
            self._chunk(model, {"role": "assistant", "content": ""})
            if model == "reasoner":
                for piece in ["Let me ", "think. "]:
                    self._chunk(model, {"reasoning_content": piece, "content": None})
            if model == "filter":
                words = words[:2]
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
            finish = "content_filter" if model == "filter" else "stop"
            self._chunk(model, {}, finish)
            if model == "usage" or request.get("stream_options", {}).get("include_usage"):
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
