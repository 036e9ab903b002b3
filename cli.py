"""Parallax without a browser: the same capabilities as the app, from the terminal.

Usage errors (bad input the user can fix) print one clear message and exit 2. The commands
live in commands/ (chat, results, data, suites); this file only assembles them."""

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import typer  # noqa: E402

from commands import chat, data, results, suites  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Compare language models side by side.")


def _no_type_beside_switches() -> None:
    """Typer 0.29's rich --help prints a type beside every option, `<bool>` beside switches that
    take no value (--db, --json, --help); show none there, as its plain help does. The values of
    other options keep theirs (<int>, <path>). Typer has no setting for this."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_no_type_beside_switches()


@app.callback()
def check_settings() -> None:
    """Refuse a bad PARALLAX_ setting before any command runs (one message naming it, exit 2)."""
    from commands.common import settings_or_fail

    settings_or_fail()


for group in (chat.app, results.app, data.app):
    for command in group.registered_commands:
        app.registered_commands.append(command)
app.add_typer(suites.app, name="suite")


def main() -> None:
    """Entry point. A database that refuses an operation (locked by another writer for longer
    than the busy timeout, a full disk, a lost server) ends the command with one line, exit 1;
    so does an output that cannot be written (a full disk, an I/O error: lib.files.OutputWriteError
    names the file and says nothing was written, or that standard output is incomplete). A
    closed pipe (`| head`) ends it quietly, as Click does."""
    from sqlalchemy.exc import OperationalError

    from lib.files import GuardedStdout, OutputWriteError
    from lib.safety import terminal_text

    sys.stdout = GuardedStdout(sys.stdout)
    for stop in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(stop) is not signal.SIG_IGN:  # `nohup` ignores SIGHUP: it stays ignored
            signal.signal(stop, _stopped)
    try:
        try:
            app()
        finally:
            sys.stdout.flush()  # what is still buffered fails here, not unreported at exit
    except OperationalError as exc:
        cause = getattr(exc, "orig", None) or exc
        why = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
        print(f"error: the database refused the operation ({why}); nothing was changed: try again", file=sys.stderr)
        sys.exit(1)
    except OutputWriteError as exc:
        _drop_stdout()
        print(f"error: {terminal_text(exc)}", file=sys.stderr)
        sys.exit(1)


def _stopped(signum: int, _frame) -> None:
    """SIGTERM or SIGHUP (a `kill`, a closed terminal; not one the command was started ignoring, as
    under `nohup`): end as Ctrl-C does, through every `finally`
    and `with` — staged outputs are thrown away, the old files kept, a suite worker's lease freed,
    the embedded model server stopped — with exit status 128 + the signal's number. A second
    such signal ends the process at once."""
    signal.signal(signum, signal.SIG_DFL)
    print(f"stopped by {signal.Signals(signum).name}", file=sys.stderr)
    raise SystemExit(128 + signum)


def _drop_stdout() -> None:
    """Point standard output at /dev/null: what is left in its buffer cannot be written, and
    Python would report that again (a traceback) when it flushes at exit."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    main()
