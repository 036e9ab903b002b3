"""Runs the embedded model's server as its child and stops it when no process uses it any more —
when the process that started it is gone, however it ended (a SIGKILL, the kernel's out-of-memory
killer, a crash that skips `atexit`), and every process that was using it too.

    python -I server_guard.py OWNER_PID USERS_FILE COMMAND [ARG ...]

Run by file path with the standard library only (it imports nothing of Parallax). The guard polls
its own parent process id twice a second: while the process that started it (OWNER_PID) runs, the
server runs. Once the owner is gone (the guard is given another parent), the server runs while any
other process holds a shared lock (flock) on USERS_FILE — each process using another's server holds
one, and the kernel drops it when that process ends, however it ends — and the guard stops it
(SIGTERM, then SIGKILL after 5 s) and exits when it can take the lock exclusively. USERS_FILE "-"
(or a system without flock) means the owner alone. SIGTERM, SIGINT or SIGHUP to the guard stop the
server the same way, except one the guard was started ignoring (`nohup` ignores SIGHUP): that stays
ignored, by the server too. On Linux the server is also started with the parent-death signal
SIGKILL, so a guard that is itself killed takes the server with it. The guard's exit status is the
server's (0 when the guard stopped it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

try:
    import fcntl
except ImportError:  # not a Unix: the owner alone keeps the server
    fcntl = None

POLL_S = 0.5  # how often the owner is looked for
GRACE_S = 5.0  # how long the server has to stop after SIGTERM before SIGKILL
STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _die_with_guard(guard: int) -> None:  # pragma: no cover - runs in the forked child
    """In the child before exec (Linux): SIGKILL when the guard's thread that forked it ends (the
    guard is single-threaded); exit at once if the guard already ended before that was set."""
    _prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != guard:
        os._exit(1)


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def unused(users: Path | None) -> int | None:
    """An open descriptor holding USERS_FILE's lock exclusively when no process holds it shared
    (the server is unused), else None. Without a users file the server is unused."""
    if users is None or fcntl is None:
        return -1
    try:
        fd = os.open(users, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return -1  # the file cannot be had: the owner alone counted
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def main(argv: list[str]) -> int:
    if len(argv) < 3 or not (argv[0].isascii() and argv[0].isdigit()):
        print("usage: server_guard.py OWNER_PID USERS_FILE|- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    owner = int(argv[0])
    users = None if argv[1] == "-" else Path(argv[1])
    if os.getppid() != owner:  # the owner ended before the guard began: start nothing
        return 0
    guard = os.getpid()
    child = subprocess.Popen(argv[2:], preexec_fn=(lambda: _die_with_guard(guard)) if _prctl else None)  # noqa: PLW1509

    handled = [sig for sig in STOPPING if signal.getsignal(sig) is not signal.SIG_IGN]

    def stop_and_exit(signum: int, frame: object) -> None:
        for sig in handled:  # a second signal while the server stops changes nothing
            signal.signal(sig, signal.SIG_IGN)
        _stop(child)
        os._exit(0)  # nothing of the guard's to clean up

    for sig in handled:
        signal.signal(sig, stop_and_exit)
    while True:
        try:
            status = child.wait(POLL_S)
            return status if status >= 0 else 128 - status  # killed by signal N: 128 + N, as a shell says
        except subprocess.TimeoutExpired:
            if os.getppid() != owner:
                held = unused(users)  # held until the guard exits: no process can start using it now
                if held is not None:
                    _stop(child)
                    return 0


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: nothing to look up after
    except (OSError, AttributeError):
        return None


_prctl = _libc_prctl()

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
