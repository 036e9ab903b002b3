"""What every command shares: the consoles, the one way to fail, output paths as the user meant
them, and safe loading of the endpoints file and the database (each turns a user's mistake into
a message and exit 2).

Model answers, prompts, endpoint ids and file contents are untrusted: `[/INST]` is common in
model output and `[link=...]` would make a terminal hyperlink. So the consoles never read Rich
markup (`markup=False`); our own styling is passed as styles, and untrusted text goes through
`plain`, which also drops control characters (terminal escape sequences).

On a terminal, text wraps at its width. Piped or redirected to a file, nothing is hard-wrapped:
each entry stays on its one line, whatever its length, so `grep` and `cut` see it whole (Rich
would otherwise wrap at 80 columns, the width it assumes without a terminal)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

from lib.providers.endpoints import MAX_TEMPERATURE
from lib.safety import terminal_text

PIPE_WIDTH = 10_000  # tables in a pipe or file take the width their content needs, up to this


class _SafeConsole(Console):
    """A console that prints no control character (an escape sequence, a bell) nor bidirectional
    override from any text it is given: every str it renders (a message, a table cell, a file
    name in an f-string) goes through lib.safety.terminal_text, the one sanitising path, as does
    a Text passed to print. Its own styling (colours) is not text, so it stays."""

    def render_str(self, text: str, **kwargs) -> Text:
        """Console.render_str, on the text made safe for a terminal."""
        return super().render_str(terminal_text(text), **kwargs)

    def print(self, *objects, **kwargs) -> None:
        """Console.print, each Text's characters made safe for a terminal (its styles kept)."""
        super().print(*(_safe(o) if isinstance(o, Text) else o for o in objects), **kwargs)


def _safe(text: Text) -> Text:
    """`text` itself when it is safe for a terminal, else its characters made safe (one style)."""
    clean = terminal_text(text.plain)
    return text if clean == text.plain else Text(clean, style=text.style)


def _console(stderr: bool) -> Console:
    """A console for standard output or error. Messages on stderr never wrap; on stdout, text
    wraps at a terminal's width and never when piped, where tables get the width they need
    (or $COLUMNS when set)."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty())
    width = PIPE_WIDTH if piped and not os.environ.get("COLUMNS", "").strip().isdigit() else None
    # no markup, no :emoji: codes: a model named ':smile:' is printed as it is named
    return _SafeConsole(stderr=stderr, soft_wrap=stderr or piped, width=width, markup=False, emoji=False)


err = _console(stderr=True)
out = _console(stderr=False)


def plain(text: object, style: str = "") -> Text:
    """Untrusted text as Rich Text: printed exactly as written, never read as markup."""
    return Text(terminal_text(text), style=style)


def fail(message: str) -> None:
    """Print a usage error and exit 2."""
    err.print(Text.assemble(("error:", "bold red"), " ", plain(message)), highlight=False)
    raise typer.Exit(2)


# an id or count typed on the command line is a database integer (PostgreSQL's: 32 bits, which
# refused a larger one with a traceback); click names the option and the range, exit 2
ID_RANGE = {"min": -(2**31), "max": 2**31 - 1}
COUNT_RANGE = {"min": 1, "max": 2**31 - 1}


def _finite_temperature(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_TEMPERATURE):  # nan passes click's
        raise typer.BadParameter(f"{value:g} is not a temperature (a number from 0 to {MAX_TEMPERATURE:g})")
    return None if value is None else value + 0.0  # -0.0 is 0: the same run, not another


# nan and inf reached the request and the database; 1e308 a request every provider refuses
TEMPERATURE_RANGE = {"callback": _finite_temperature}
TEMPERATURE_HELP = f"Sampling temperature, from 0 to {MAX_TEMPERATURE:g} (the OpenAI protocol's range)."
MAX_PROBLEMS_SHOWN = 50


def fail_problems(source: object, problems: list[str], outcome: str) -> None:
    """Refuse an input with problems, in the one format every reader's command uses: 'error: SOURCE
    has N problems; OUTCOME', then each problem on its own line as FILE:LINE: message (the first
    MAX_PROBLEMS_SHOWN), and exit 2."""
    from lib.present import plural

    err.print(
        Text.assemble(("error:", "bold red"), " ", plain(f"{source} has {plural(len(problems), 'problem')}; {outcome}"))
    )
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        err.print(plain(f"  {problem}"), highlight=False)
    if len(problems) > MAX_PROBLEMS_SHOWN:
        err.print(f"  … and {len(problems) - MAX_PROBLEMS_SHOWN} more", highlight=False)
    raise typer.Exit(2)


def heading(title: str, first: bool = False) -> None:
    """Start a section of text output: a blank line (none before the `first`), then its title
    (bold on a terminal, plain text when piped), so a reader sees where one section ends and the
    next begins."""
    if not first:
        out.print()
    out.print(Text(title, style="bold"))


def output_or_fail(ctx: typer.Context, given: str, name: str) -> Path:
    """The file an output option names: `given`, or `name` inside it when `given` ends with a slash
    or is an existing folder (made when missing, and removed again when the command `ctx` ends
    without writing into it: a failed command leaves nothing behind); exit 2 naming the path when
    it cannot be used; `-` is lib.files.STDOUT. The caller checks the file itself (`outputs_or_fail`)."""
    from lib.files import DASH, OutputPathError, output_file, remove_if_empty

    text = os.fspath(given)
    if text != DASH and text.endswith(tuple({"/", os.sep})):  # a folder would be made there
        _not_a_file_read(Path(text.rstrip("/" + os.sep) or os.sep))
    try:
        path, made = output_file(given, name)
    except OutputPathError as exc:
        fail(str(exc))
    if made is not None:
        ctx.call_on_close(lambda: remove_if_empty(made))
    return path


def output_folder_or_fail(ctx: typer.Context, folder: Path, names: list[str]) -> list[Path]:
    """The files `names` inside the output folder `folder` (made when missing, its parent must
    exist; removed again if nothing is written into it), each checked (`outputs_or_fail`); or
    exit 2 naming the path."""
    from lib.files import OutputPathError, make_output_folder, remove_if_empty

    _not_a_file_read(folder)

    try:
        if make_output_folder(folder):
            ctx.call_on_close(lambda: remove_if_empty(folder))
    except OutputPathError as exc:
        fail(str(exc))
    return outputs_or_fail([folder / name for name in names])


def _not_a_file_read(folder: Path) -> None:
    """Exit 2 when an output folder that may be made is at the path of a file Parallax reads (a
    folder made at the database's `-wal` left the database unable to open)."""
    from lib.files import read_clash
    from lib.storage import files_read, state_file_clash

    if clash := read_clash(folder, files_read()) or state_file_clash(folder):
        fail(clash.replace("writing the output there", "a folder there"))


def outputs_or_fail(paths: list, *inputs: tuple[object, str]) -> list:
    """`paths` checked before anything is written (lib.files.check_output_paths), none of them one
    of `inputs` ((path or file descriptor, what it is) pairs) or a file Parallax reads itself (the
    database, the endpoints and secrets files), however spelled; or exit 2 naming the path."""
    from lib.files import STDOUT, OutputPathError, check_output_paths
    from lib.storage import files_read, state_file_clash

    for path in paths:
        if path is not STDOUT and path is not None and (clash := state_file_clash(Path(path))):
            fail(clash)
    try:
        return check_output_paths(paths, reads=[*inputs, *files_read()])
    except OutputPathError as exc:
        fail(str(exc))


def settings_or_fail() -> None:
    """Check every PARALLAX_ environment setting, or exit 2 naming the bad one."""
    from lib.storage import ConfigError, check_settings

    try:
        check_settings()
    except ConfigError as exc:
        fail(str(exc))


def load_endpoints_or_fail():
    """The configured endpoints, or exit 2 naming the file, line and problem."""
    from lib.providers.endpoints import EndpointConfigError, load_endpoints

    try:
        return load_endpoints()
    except EndpointConfigError as exc:
        if len(exc.problems) > 1:
            fail_problems("the endpoints configuration", exc.problems, "fix them and retry")
        fail(str(exc))


def open_db_or_fail() -> None:
    """Open (and migrate) the database, or exit 2 saying why."""
    from lib.storage import DatabaseUnavailable, open_database

    try:
        open_database()
    except DatabaseUnavailable as exc:
        fail(str(exc))


def day_or_fail(text: Optional[str], name: str):
    """A YYYY-MM-DD option as a date (None when not given), or exit 2 naming the option."""
    from lib.filters import FilterError, parse_day

    try:
        return parse_day(text, name)
    except FilterError as exc:
        fail(str(exc))


def vote_filter_or_fail(
    blind_only: bool, language: Optional[str], since: Optional[str], until: Optional[str], include_leaked: bool
):
    """Vote filters from command-line text, or exit 2 for a bad date or language."""
    from lib.filters import FilterError, vote_filter

    first, last = day_or_fail(since, "since"), day_or_fail(until, "until")
    try:
        return vote_filter(
            blind_only=blind_only, include_leaked=include_leaked, language=language, first=first, last=last
        )
    except FilterError as exc:
        fail(f"--{exc}")
