"""Runs the embedded model's server as its child and stops it when the process that started the
server is gone, however it ended (a SIGKILL, the kernel's out-of-memory killer, a crash that skips
`atexit`).

    python -I server_guard.py OWNER_PID COMMAND [ARG ...]

Run by file path with the standard library only (it imports nothing of Parallax). The guard polls
its own parent process id twice a second: when the process that started it (OWNER_PID) ends, the
guard is given another parent, and it stops the server (SIGTERM, then SIGKILL after 5 s) and exits.
SIGTERM, SIGINT or SIGHUP to the guard stop the server the same way, except one the guard was
started ignoring (`nohup` ignores SIGHUP): that stays ignored, by the server too. On Linux the server is also
started with the parent-death signal SIGKILL, so a guard that is itself killed takes the server
with it. The guard's exit status is the server's (0 when the guard stopped it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

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


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not (argv[0].isascii() and argv[0].isdigit()):
        print("usage: server_guard.py OWNER_PID COMMAND [ARG ...]", file=sys.stderr)
        return 2
    owner = int(argv[0])
    if os.getppid() != owner:  # the owner ended before the guard began: start nothing
        return 0
    guard = os.getpid()
    child = subprocess.Popen(argv[1:], preexec_fn=(lambda: _die_with_guard(guard)) if _prctl else None)  # noqa: PLW1509

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
