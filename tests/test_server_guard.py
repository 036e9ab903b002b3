"""The embedded server stops when the process that started it is gone, however that process ended
(`lib.providers.server_guard`): a SIGKILL or an out-of-memory kill skips `atexit`, and the server
used to run on, holding its port and a few hundred MB, until someone found it."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lib.providers import local_server
from tests.conftest import ROOT
from tests.test_local_model import chat, need_llama_server, serve_local

# A stand-in server: writes its pid, then waits (the guard neither knows nor cares what it runs)
SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
# An owner that starts a guarded command and then just waits, with no handler of any signal
OWNER = (
    "import subprocess, sys, time; sys.path.insert(0, sys.argv[1]);"
    "from lib.providers.local_server import guarded;"
    "g = subprocess.Popen(guarded(sys.argv[2:])); print(g.pid, flush=True); time.sleep(120)"
)


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting to be reaped has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:  # no /proc here: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_for(condition, within: float = 20.0) -> bool:
    """Poll until `condition()` holds or `within` seconds pass (a bound, not a timing check)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def read_pid(path: Path) -> int:
    assert wait_for(lambda: path.exists() and path.read_text().strip() != ""), "the guarded command never started"
    return int(path.read_text())


def start_owner(*command: str) -> tuple[subprocess.Popen, int]:
    """An owner process running `command` under a guard; (owner, guard pid)."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(ROOT), *command],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a signal to it reaches no test process
    )
    return owner, int(owner.stdout.readline())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_server_stops_when_its_owner_is_killed(tmp_path, sig):
    pidfile = tmp_path / "server.pid"
    owner, guard = start_owner(sys.executable, "-c", SLEEPER, str(pidfile))
    server = read_pid(pidfile)
    try:
        assert alive(server) and alive(guard)
        owner.send_signal(sig)  # the owner has no handler: no atexit, no cleanup of its own
        owner.wait(10)
        assert wait_for(lambda: not alive(server)), "the server outlived its owner"
        assert wait_for(lambda: not alive(guard)), "the guard outlived its owner"
    finally:
        for pid in (server, guard):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_server_stops_when_its_guard_is_killed(tmp_path):
    pidfile = tmp_path / "server.pid"
    owner, guard = start_owner(sys.executable, "-c", SLEEPER, str(pidfile))
    server = read_pid(pidfile)
    try:
        os.kill(guard, signal.SIGKILL)
        assert wait_for(lambda: not alive(server)), "the server outlived its killed guard"
    finally:
        owner.kill()
        if alive(server):
            os.kill(server, signal.SIGKILL)


# runs the rest of its arguments with the stop signals at their defaults, as from a terminal: the
# tests' own runner may have been started ignoring some (nohup, a background job), and they inherit
DEFAULTS = (
    "import os, signal, sys\n"
    "for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM): signal.signal(sig, signal.SIG_DFL)\n"
    "os.execv(sys.argv[1], sys.argv[1:])"
)


@contextlib.contextmanager
def guarded_sleeper(pidfile: Path, prefix: tuple[str, ...] = (sys.executable, "-c", DEFAULTS)):
    """A guard started by this process over a stand-in server: (guard, server pid); both killed after."""
    guard = subprocess.Popen([*prefix, *local_server.guarded([sys.executable, "-c", SLEEPER, str(pidfile)])])
    server = read_pid(pidfile)
    try:
        yield guard, server
    finally:
        guard.kill()
        if alive(server):
            os.kill(server, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stopping_the_guard_stops_the_server_and_exits_zero(tmp_path, sig):
    with guarded_sleeper(tmp_path / "server.pid") as (guard, server):
        guard.send_signal(sig)
        assert guard.wait(20) == 0
        assert wait_for(lambda: not alive(server))


@pytest.mark.parametrize(
    ("code", "status"),
    [("raise SystemExit(3)", 3), ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + 9)],
)
def test_the_guard_exits_with_the_servers_status(code, status):
    """`start` reads a failed start from the guard's exit: the server's status, signals as a shell
    writes them."""
    guard = subprocess.run(local_server.guarded([sys.executable, "-c", code]), timeout=60)
    assert guard.returncode == status


def test_a_guard_whose_owner_is_already_gone_starts_nothing(tmp_path):
    pidfile = tmp_path / "server.pid"
    guard_file = ROOT / "lib" / "providers" / "server_guard.py"
    # owner pid 1 is not the guard's parent: as if the owner had ended before the guard began
    done = subprocess.run(
        [sys.executable, "-I", str(guard_file), "1", "-", sys.executable, "-c", SLEEPER, str(pidfile)], timeout=60
    )
    assert done.returncode == 0 and not pidfile.exists()
    bad = subprocess.run([sys.executable, "-I", str(guard_file), "x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr


EMBEDDED_OWNER = (
    "import json, sys, time; sys.path.insert(0, sys.argv[1]);"
    "from lib.providers import local_server;"
    "url = local_server.ensure_running();"
    "print(json.dumps({'url': url}), flush=True); time.sleep(300)"
)
# the same owner ending normally (its atexit runs) when its standard input closes
OWNER_UNTIL_STDIN_CLOSES = EMBEDDED_OWNER.replace("time.sleep(300)", "sys.stdin.readline()")


@pytest.mark.integration
@pytest.mark.parametrize("kind", [local_server.LLAMA_SERVER, local_server.FALLBACK_SERVER])
def test_the_embedded_server_stops_when_the_process_that_started_it_is_killed(tmp_path, kind):
    """The real servers, started the way the app and the CLI start them (`ensure_running`)."""
    env = {k: v for k, v in os.environ.items() if k != "PARALLAX_LOCAL_URL"} | {"PARALLAX_DATA_DIR": str(tmp_path)}
    if kind == local_server.LLAMA_SERVER:
        need_llama_server()
    else:
        env["PARALLAX_LLAMA_SERVER"] = "off"
    owner = subprocess.Popen(
        [sys.executable, "-c", EMBEDDED_OWNER, str(ROOT)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    guard = None
    try:
        line = owner.stdout.readline()
        assert line, f"the owner could not start the server: {(tmp_path / 'local_server.log').read_text()[-2000:]}"
        url = json.loads(line)["url"]
        guard = json.loads((tmp_path / "local_server.json").read_text())["pid"]
        assert local_server.is_alive(url) and alive(guard)
        owner.kill()
        owner.wait(10)
        assert wait_for(lambda: not local_server.is_alive(url, timeout=0.5), within=30), "the server outlived its owner"
        assert wait_for(lambda: not alive(guard))
    finally:
        owner.kill()
        if guard and alive(guard):
            os.kill(guard, signal.SIGTERM)


@pytest.fixture
def own_data_folder(tmp_path, monkeypatch):
    """This test process as a fresh user of the embedded server, on its own data folder."""
    monkeypatch.delenv("PARALLAX_LOCAL_URL", raising=False)
    monkeypatch.setenv("PARALLAX_DATA_DIR", str(tmp_path))
    for name in ("_owned", "_url", "_borrowed_pid", "_user_fd", "_owned_users_fd", "_exit_registered"):
        monkeypatch.setattr(local_server, name, None)
    yield tmp_path
    local_server._stop_using_others_server()
    local_server._stop_owned()


def start_embedded_owner(script: str | None = None) -> tuple[subprocess.Popen, str, int]:
    """Another process that starts the embedded server on this data folder: (it, url, guard pid)."""
    owner = subprocess.Popen(
        [sys.executable, "-c", script or EMBEDDED_OWNER, str(ROOT)],
        env=dict(os.environ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    line = owner.stdout.readline()
    assert line, "the owner could not start the server"
    guard = json.loads((Path(os.environ["PARALLAX_DATA_DIR"]) / "local_server.json").read_text())["pid"]
    return owner, json.loads(line)["url"], guard


@pytest.mark.integration
@pytest.mark.parametrize("ending", ["killed", "exits"])
def test_a_server_in_use_by_another_process_outlives_its_owner_until_that_one_is_done(own_data_folder, ending):
    """The app using the server a CLI run started: the run ending (killed, or normally) cut the
    app's answers off mid-stream. The server now stops when the last process using it is gone."""
    need_llama_server()
    script = EMBEDDED_OWNER if ending == "killed" else OWNER_UNTIL_STDIN_CLOSES
    owner, theirs, guard = start_embedded_owner(script)
    try:
        assert local_server.ensure_running() == theirs and local_server._owned is None  # used, not owned
        if ending == "killed":
            owner.kill()
        else:
            owner.stdin.close()  # the owner's own exit: its atexit finds the server in use
        owner.wait(20)
        time.sleep(1.5)  # the guard looks twice a second: time for it to (wrongly) stop the server
        assert local_server.is_alive(theirs) and alive(guard)
        assert chat(theirs, "Say hi.")["choices"][0]["message"]["content"]
        assert local_server.ensure_running() == theirs
        local_server._stop_using_others_server()  # done with it (the kernel does this when a process ends)
        assert wait_for(lambda: not local_server.is_listening(theirs) and not alive(guard), within=30)
    finally:
        owner.kill()


@pytest.mark.integration
def test_a_process_using_another_processs_server_starts_its_own_when_that_one_is_gone(own_data_folder):
    """A server that died anyway (a crash, a kill): the next request starts one of its own rather
    than sending to a dead port."""
    need_llama_server()
    owner, theirs, guard = start_embedded_owner()
    try:
        assert local_server.ensure_running() == theirs and local_server._owned is None
        os.kill(guard, signal.SIGKILL)  # the server dies with its guard
        assert wait_for(lambda: not local_server.is_listening(theirs), within=30)
        ours = local_server.ensure_running()
        assert ours != theirs and local_server._owned is not None and local_server.is_alive(ours)
    finally:
        owner.kill()


@pytest.mark.integration
def test_processes_starting_at_once_share_one_server(own_data_folder):
    """Four commands started together on a fresh data folder each started a server of their own."""
    need_llama_server()
    owners = [
        subprocess.Popen(
            [sys.executable, "-c", EMBEDDED_OWNER, str(ROOT)],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(3)
    ]
    try:
        urls = {json.loads(owner.stdout.readline())["url"] for owner in owners}
        assert len(urls) == 1
    finally:
        for owner in owners:
            owner.kill()


@pytest.mark.parametrize(
    "record",
    [
        {"url": "http://localhost:{port}/v1"},  # a host name: where it points is not ours to trust
        {"url": "ftp://127.0.0.1:{port}/v1"},
        {"url": "http://127.0.0.1:{port}/other"},
        [1, 2],
        "x",
    ],
)
def test_a_record_not_written_by_parallax_is_never_used(own_data_folder, record):
    """A tampered or foreign local_server.json must not send prompts elsewhere, nor break an exit."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        if isinstance(record, dict):
            record = {"url": record["url"].format(port=port), "pid": os.getpid()}  # a live pid, a port that listens
        (own_data_folder / "local_server.json").write_text(json.dumps(record))
        assert local_server._recorded() is None and local_server.running_url() is None


def test_a_data_folder_the_server_cannot_write_to_is_named(own_data_folder, monkeypatch):
    blocked = own_data_folder / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("PARALLAX_DATA_DIR", str(blocked / "data"))
    with pytest.raises(local_server.LocalModelUnavailable) as failure:
        local_server.start(timeout=5)
    assert f"cannot write its log {blocked / 'data' / 'local_server.log'}" in str(failure.value)
    assert "PARALLAX_DATA_DIR" in str(failure.value)


@pytest.mark.integration
def test_serve_local_killed_takes_its_server_with_it(tmp_path):
    need_llama_server()
    port = local_server.free_port()
    url = f"http://127.0.0.1:{port}/v1"
    cli = serve_local(port, {**os.environ, "PARALLAX_DATA_DIR": str(tmp_path)}, tmp_path / "serve-local.log")
    try:
        assert wait_for(lambda: local_server.is_alive(url) or cli.poll() is not None, within=120)
        assert cli.poll() is None, (tmp_path / "serve-local.log").read_text(errors="replace")[-2000:]
        cli.kill()  # the command alone, as the out-of-memory killer would; not its process group
        cli.wait(10)
        assert wait_for(lambda: not local_server.is_listening(url), within=30), "the server outlived serve-local"
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)


# runs the rest of its arguments with SIGHUP ignored, as `nohup` does
NOHUP = "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])"


def test_a_hang_up_the_owner_ignores_leaves_the_server_running(tmp_path):
    """`nohup streamlit run app.py &` then logging out: the app ignores SIGHUP and so must its
    server (the guard's handler replaced the ignore and stopped the server under a running app)."""
    with guarded_sleeper(tmp_path / "server.pid", (sys.executable, "-c", NOHUP)) as (guard, server):
        guard.send_signal(signal.SIGHUP)
        os.kill(server, signal.SIGHUP)  # a hang-up reaches the whole process group
        time.sleep(1.0)  # the guard polls twice a second: time for it to (wrongly) act
        assert guard.poll() is None and alive(server)
        guard.terminate()  # what is not ignored still stops both
        assert guard.wait(20) == 0 and wait_for(lambda: not alive(server))


@pytest.mark.parametrize(
    ("script", "said"),
    [("#!/bin/sh\nkill -9 $$\n", "killed by SIGKILL"), ("#!/bin/sh\nexit 3\n", "status 3")],
)
def test_a_server_that_dies_while_starting_is_reported_with_its_exit_status(tmp_path, monkeypatch, script, said):
    """An out-of-memory kill while the model loads said only the log's last info line."""
    binary = tmp_path / "llama-server"
    binary.write_text(script)
    binary.chmod(0o755)
    monkeypatch.setenv("PARALLAX_LLAMA_SERVER", str(binary))
    monkeypatch.setenv("PARALLAX_DATA_DIR", str(tmp_path))
    with pytest.raises(local_server.LocalModelUnavailable) as failure:
        local_server.start(timeout=60)
    assert f"(llama-server) exited ({said})" in str(failure.value)


@pytest.mark.integration
def test_a_borrowed_port_taken_by_a_stranger_is_not_used(own_data_folder):
    """After the owner is gone, something else listening on its old port is not our server."""
    need_llama_server()
    owner, theirs, guard = start_embedded_owner()
    try:
        assert local_server.ensure_running() == theirs
        local_server._stop_using_others_server()  # nothing keeps their server up now
        owner.kill()
        owner.wait(10)
        assert wait_for(lambda: not local_server.is_listening(theirs) and not alive(guard), within=30)
        with socket.socket() as stranger:
            stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            stranger.bind(("127.0.0.1", int(theirs.rsplit(":", 1)[1].split("/")[0])))
            stranger.listen()
            ours = local_server.ensure_running()
            assert ours != theirs and local_server.is_alive(ours)
            assert local_server.running_url() != theirs
    finally:
        owner.kill()


@pytest.mark.integration
def test_a_second_process_uses_a_busy_fallback_server_instead_of_starting_another(own_data_folder, monkeypatch):
    """llama-cpp-python's server answers no request while it generates: a process that asked it
    `GET /models` then started a second server, wrote over the record, and removed it on exit."""
    monkeypatch.setenv("PARALLAX_LLAMA_SERVER", "off")
    owner, theirs, _ = start_embedded_owner()
    try:
        busy = threading.Thread(target=chat, args=(theirs, "Write a long story about a lighthouse.", 400))
        busy.start()
        time.sleep(1.0)  # the answer is being generated
        assert not local_server.is_alive(theirs, timeout=0.5), "the server answered while busy: nothing tested"
        assert local_server.ensure_running() == theirs and local_server._owned is None
        busy.join(120)
        record = json.loads((own_data_folder / "local_server.json").read_text())
        assert record["url"] == theirs
    finally:
        owner.kill()


@pytest.mark.integration
@pytest.mark.parametrize("tamper", ["removed", "a directory", "a new file"])
def test_a_users_file_removed_or_replaced_still_counts_the_processes_using_the_server(own_data_folder, tamper):
    """A clean-up of the data folder under running processes: the owner's exit and its guard took
    a fresh file at the path for "nobody uses it" and cut the user's answers off."""
    need_llama_server()
    script = OWNER_UNTIL_STDIN_CLOSES
    owner, theirs, guard = start_embedded_owner(script)
    try:
        assert local_server.ensure_running() == theirs and local_server._owned is None
        users = local_server.users_file(theirs)
        users.unlink()
        if tamper == "a directory":
            users.mkdir()
        elif tamper == "a new file":
            users.write_text("")
        owner.stdin.close()  # the owner ends normally: its exit and then its guard decide
        owner.wait(20)
        time.sleep(1.5)
        assert local_server.is_alive(theirs) and alive(guard), "the server was stopped under its user"
        local_server._stop_using_others_server()
        assert wait_for(lambda: not local_server.is_listening(theirs) and not alive(guard), within=30)
    finally:
        owner.kill()


STARTS_SLOWLY_AND_FAILS = "#!/bin/sh\necho started >> {log}\nsleep 3\necho 'error: no GPU here' >&2\nexit 1\n"
START_ONCE = """
import sys
sys.path.insert(0, sys.argv[1])
from lib.providers import local_server
try:
    local_server.ensure_running()
except local_server.LocalModelUnavailable as exc:
    print(exc)
"""


def test_processes_waiting_for_a_start_that_fails_are_told_why_without_trying_again(own_data_folder):
    """Three commands at once and a server that fails after a while: each waited for the one
    before it and then tried again itself (a minute of silence each, when a start hangs)."""
    attempts = own_data_folder / "attempts.log"
    binary = own_data_folder / "llama-server"
    binary.write_text(STARTS_SLOWLY_AND_FAILS.format(log=attempts))
    binary.chmod(0o755)
    env = dict(os.environ) | {"PARALLAX_LLAMA_SERVER": str(binary)}
    runs = [
        subprocess.Popen([sys.executable, "-c", START_ONCE, str(ROOT)], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    said = [run.communicate(timeout=120)[0] for run in runs]
    assert all("exited (status 1): error: no GPU here" in line for line in said), said
    assert attempts.read_text().count("started") == 1


def server_of(guard: int) -> int:
    """The pid of the server a guard runs (its one child)."""
    children = Path(f"/proc/{guard}/task/{guard}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a guard's child from /proc")
def test_a_process_moving_to_another_server_holds_its_lock_there(own_data_folder):
    """After a server crash, a long-lived user (the app) moved to the new server someone else
    started while still holding the lock of the dead one: the new server's owner ended and took
    the server away mid-answer."""
    need_llama_server()
    waits = OWNER_UNTIL_STDIN_CLOSES
    first, old, old_guard = start_embedded_owner(waits)
    second = None
    try:
        assert local_server.ensure_running() == old
        os.kill(server_of(old_guard), signal.SIGKILL)  # the server alone dies (out of memory)
        assert wait_for(lambda: not alive(old_guard) and not local_server.is_listening(old), within=30)
        second, new, new_guard = start_embedded_owner(waits)
        assert local_server.ensure_running() == new and local_server._owned is None
        second.stdin.close()  # the new server's owner ends while this process uses it
        second.wait(20)
        time.sleep(1.5)
        assert local_server.is_alive(new) and alive(new_guard), "stopped under the process using it"
        local_server._stop_using_others_server()
        assert wait_for(lambda: not local_server.is_listening(new), within=30)
    finally:
        for owner in (first, second):
            if owner:
                owner.kill()


def test_a_start_failure_is_passed_on_only_to_processes_with_the_same_settings(own_data_folder, monkeypatch):
    monkeypatch.setenv("PARALLAX_LLAMA_SERVER", "off")
    local_server._record_failure("the embedded model server (llama-cpp-python) exited (status 1): boom")
    assert "boom" in local_server._failure_since(time.time() - 60)
    assert local_server._failure_since(time.time() + 60) is None  # older than the wait: not passed on
    monkeypatch.delenv("PARALLAX_LLAMA_SERVER")  # another process's settings
    assert local_server._failure_since(time.time() - 60) is None
    local_server._record_failure(None)  # a start that succeeded clears it
    assert not (own_data_folder / "local_server.failed").exists()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "fails", "said"),
    [
        ("local_server.json", False, "http://127.0.0.1:"),  # read, then written once the server runs
        ("local_server.failed", False, "http://127.0.0.1:"),
        ("local_server.failed", True, "exited"),  # written when the start fails
        ("local_server.log", False, "cannot write its log"),
    ],
)
def test_a_fifo_in_place_of_a_record_does_not_hang_a_start(own_data_folder, name, fails, said):
    """A FIFO at a path the start reads or writes blocked it forever, holding the start lock."""
    need_llama_server()
    os.mkfifo(own_data_folder / name)
    env = dict(os.environ) | ({"PARALLAX_GGUF": str(own_data_folder / "missing.gguf")} if fails else {})
    done = subprocess.run(
        [sys.executable, "-c", START_ONCE + "else:\n    print(local_server.ensure_running())", str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert said in done.stdout, done.stdout + done.stderr


@pytest.mark.integration
def test_a_check_that_fails_once_keeps_the_old_server_until_its_own_runs(own_data_folder, monkeypatch):
    """In the app, one thread may still stream from the server another thread's check gave up on:
    its lock went before the new server was started, and the old one's guard stopped it."""
    need_llama_server()
    owner, theirs, _ = start_embedded_owner()
    try:
        assert local_server.ensure_running() == theirs
        monkeypatch.setattr(local_server, "server_up", lambda url, pid: False)  # a busy machine, once
        held_while_starting = []
        real_start = local_server.start

        def start(*args, **kwargs):
            held_while_starting.append(local_server._user_fd is not None)
            return real_start(*args, **kwargs)

        monkeypatch.setattr(local_server, "start", start)
        ours = local_server.ensure_running()
        assert ours != theirs and held_while_starting == [True] and local_server._user_fd is None
    finally:
        owner.kill()
