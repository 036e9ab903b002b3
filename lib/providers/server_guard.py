"""Runs the embedded model's server as its child and stops it when no process uses it any more —
when the process that started it is gone, however it ended (a SIGKILL, the kernel's out-of-memory
killer, a crash that skips `atexit`), and every process that was using it too.

    python -I server_guard.py OWNER_PID USERS_FILE COMMAND [ARG ...]

Run by file path with the standard library only (it imports nothing of Parallax). The guard polls
its own parent process id twice a second: while the process that started it (OWNER_PID) runs, the
server runs. Once the owner is gone (the guard is given another parent), the server runs while any
other process holds a shared lock (flock) on USERS_FILE — each process using another's server holds
one, and the kernel drops it when that process ends, however it ends — and the guard stops it
(SIGTERM, then SIGKILL after 5 s), removes USERS_FILE and exits when it can take the lock
exclusively. The guard opens USERS_FILE when it starts and keeps it open, so a file removed or
replaced while processes use it still counts them. USERS_FILE "-" (or a system without flock)
means the owner alone. SIGTERM, SIGINT or SIGHUP to the guard stop the
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


def open_users(users: Path | None) -> int | None:
    """The users file opened (created if missing) for its starter: a descriptor that keeps naming
    this server's file even if the path is later removed or replaced. None: no file, or no flock."""
    if users is None or fcntl is None:
        return None
    try:
        return os.open(users, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None


def _exclusive(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def unused(held: int | None, users: Path | None) -> bool:
    """Whether no other process uses the server: no shared lock on the file `held` names, nor on a
    different file now at path `users` (the first was removed or replaced while processes used
    it). On True the locks stay taken, so no process can start using it while it stops; they go
    with the descriptors. Without a users file: True (the owner alone counted)."""
    if held is None:
        return True
    if not _exclusive(held):
        return False
    try:
        now = os.open(users, os.O_RDWR | os.O_CLOEXEC)  # never created here: a user would have made it
    except OSError:
        return True  # gone, or not a file one can lock: no process uses it through that path
    if os.path.sameopenfile(held, now):
        os.close(now)
        return True
    if _exclusive(now):
        return True  # the descriptor is left open: its lock is held until the caller exits
    os.close(now)
    fcntl.flock(held, fcntl.LOCK_UN)
    return False


def names(fd: int, path: Path) -> bool:
    """Whether `path` is (still) the file open as `fd`: not removed, not replaced."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def remove_users(held: int | None, users: Path | None) -> None:
    """Remove the users file at `users` if it is still the one `held` names (a server that stopped)."""
    if held is not None and users is not None and names(held, users):
        try:
            os.unlink(users)
        except OSError:
            pass


def main(argv: list[str]) -> int:
    if len(argv) < 3 or not (argv[0].isascii() and argv[0].isdigit()):
        print("usage: server_guard.py OWNER_PID USERS_FILE|- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    owner = int(argv[0])
    users = None if argv[1] == "-" else Path(argv[1])
    if os.getppid() != owner:  # the owner ended before the guard began: start nothing
        return 0
    guard = os.getpid()
    held = open_users(users)  # before the server answers, so before any process can use it
    child = subprocess.Popen(argv[2:], preexec_fn=(lambda: _die_with_guard(guard)) if _prctl else None)  # noqa: PLW1509

    handled = [sig for sig in STOPPING if signal.getsignal(sig) is not signal.SIG_IGN]

    def stop_and_exit(signum: int, frame: object) -> None:
        for sig in handled:  # a second signal while the server stops changes nothing
            signal.signal(sig, signal.SIG_IGN)
        _stop(child)
        remove_users(held, users)
        os._exit(0)

    for sig in handled:
        signal.signal(sig, stop_and_exit)
    while True:
        try:
            status = child.wait(POLL_S)
            remove_users(held, users)
            return status if status >= 0 else 128 - status  # killed by signal N: 128 + N, as a shell says
        except subprocess.TimeoutExpired:
            if os.getppid() != owner and unused(held, users):
                _stop(child)
                remove_users(held, users)
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
