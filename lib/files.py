"""Files users hand us and files we write for them.

Reading: one JSONL reader with line numbers, one JSON parser that refuses data nested deeper
than MAX_DEPTH levels (Python's parsers and every walk over parsed data recurse, so "[[[[…" would
end in a RecursionError), and one way to read a user's text file (a regular file, UTF-8, a
problem named with its line), so every caller reports problems the same way.

Writing: an output the user gives as a folder (a trailing slash, or an existing folder) means a
file of a default name inside it, the folder made when missing (never its parents); every file
to write is checked before anything is written (a folder, a device or other special file, a
symbolic link, a missing or read-only folder is refused with a message), and the data goes to a
temporary file beside the target that is renamed onto it only when complete, so a failed or
interrupted write leaves the old file (or nothing) behind, never half a file; a command's several
outputs (a data file and its card, a folder of charts) are staged together (`StagedGroup`) and
renamed only once all are complete. A write that fails (a full disk, an I/O error) becomes
OutputWriteError naming the output, which the CLI's entry point prints as one line. An output
given as `-` is standard output (`STDOUT`), written as UTF-8 as it comes, as Unix tools do."""

from __future__ import annotations

import bisect
import codecs
import csv
import hashlib
import io
import json
import math
import os
import re
import stat
import sys
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from lib.safety import clean_text, control_character, excerpt, unicode_json, valid_unicode

NAME_RUN = re.compile(r"[^A-Za-z0-9_.:-]+")  # what a name typed on the command line may not hold


def name_from_file(stem: str, fallback: str, limit: int = 60) -> str:
    """A name to type on the command line (a suite, an import's source) made from a file's name
    less its suffix: ASCII letters, digits and `_.:-` (accents dropped: `été` -> `ete`), every
    other run a `-`, at most `limit` characters, starting with a letter or digit; `fallback` when
    nothing is left. A name that is not all ASCII (天安门, été, 😀) gets `-` and six hex digits of
    a hash of the whole name (NFC, so a macOS and a Linux spelling agree): two such files are two
    names, and one file always the same."""
    stem = unicodedata.normalize("NFC", clean_text(stem))
    plain = "".join(c for c in unicodedata.normalize("NFKD", stem) if not unicodedata.combining(c))
    name = NAME_RUN.sub("-", plain).lstrip("-._:")
    if not stem.isascii():
        digest = hashlib.sha256(stem.encode()).hexdigest()[:6]
        return f"{name[: limit - 7].rstrip('-.') or fallback}-{digest}"
    return name[:limit].rstrip("-.") or fallback


class OutputPathError(ValueError):
    """An output path that cannot be written safely; the message names the path and the problem."""


class OutputWriteError(OSError):
    """An output that failed while being written (a full disk, an I/O error); the message names
    the output and the reason, and says what was left: for a file, nothing (the old file stays),
    for standard output, what was already written."""


def write_failure(where: object, exc: OSError, left: str | None = None) -> OutputWriteError:
    """The OutputWriteError for `exc` (raised writing `where`: a path, a description of several,
    or STDOUT), its message one line: 'WHERE: no space left on device (nothing was written)';
    `left` replaces what the parenthesis says was left."""
    if isinstance(exc, OutputWriteError):
        return exc
    why = (exc.strerror or str(exc) or type(exc).__name__).strip()
    why = why[:1].lower() + why[1:]
    left = left or ("the output is incomplete" if where is STDOUT else "nothing was written")
    failure = OutputWriteError(f"{where}: {why} ({left})")
    failure.errno = exc.errno
    return failure


def passes_through(exc: BaseException | None) -> bool:
    """Whether an error while writing an output is left as it is: not an OSError, one already
    named, or a closed pipe (`cmd | head`: the reader left, nothing to report)."""
    return not isinstance(exc, OSError) or isinstance(exc, (OutputWriteError, BrokenPipeError))


class InputFileError(ValueError):
    """An input file that cannot be read as text; the message names the file and the line."""


MAX_DEPTH = 100  # levels of nested lists/objects in data a user hands us
TOO_DEEP = f"nested too deeply (more than {MAX_DEPTH} levels of lists or objects)"


class TooDeep(ValueError):
    """Parsed (or half-parsed) data nested deeper than MAX_DEPTH; `line` is where it got too
    deep (1-based, within the text given)."""

    def __init__(self, line: int):
        super().__init__(f"line {line}: {TOO_DEEP}")
        self.line = line


def too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether lists/dicts in `value` nest more than `limit` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


# line ends as editors and Python's text files count them; str.splitlines also breaks at U+2028,
# U+0085, form feeds…, which a JSON string may hold, so it would number the lines after one wrongly
NEWLINE = re.compile(r"\r\n|\r|\n")


def lines_between(text: str, start: int, end: int) -> int:
    """How many line ends (as line_at counts them) lie in text[start:end]."""
    return sum(1 for _ in NEWLINE.finditer(text, start, end))


def line_at(text: str, pos: int) -> tuple[int, int]:
    """(line, column), both 1-based, of offset `pos` in `text`, lines counted as editors count them
    (\\n, \\r\\n or \\r ends one; U+2028, U+0085 or a form feed does not): the one way every reader
    numbers lines (JSON, JSON lists, YAML, CSV)."""
    line, start = 1, 0
    for end in NEWLINE.finditer(text, 0, max(0, pos)):
        line, start = line + 1, end.end()
    return line, pos - start + 1


class LineIndex:
    """The lines of one text as line_at counts them, for many look-ups: `line(pos)` in O(log n)
    (a YAML file's every mapping, say), where line_at would scan from the start each time."""

    def __init__(self, text: str):
        self.starts = [0, *(found.end() for found in NEWLINE.finditer(text))]

    def line(self, pos: int) -> int:
        """The 1-based line of offset `pos`."""
        return bisect.bisect_right(self.starts, max(0, pos))


def deep_line(text: str, limit: int = MAX_DEPTH, quotes: str = '"') -> int:
    """The line where brackets ([ and {) outside quoted strings first nest more than `limit`
    levels (1 when they never do): where to point a user at data nested too deeply."""
    depth, quote, escaped = 0, "", False
    for index, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in quotes:
            quote = char
        elif char in "[{":
            depth += 1
            if depth > limit:
                return line_at(text, index)[0]
        elif char in "]}":
            depth = max(0, depth - 1)
    return 1


LONG_NUMBER = re.compile(r"\d{4000,}")


TOO_LONG_NUMBER = "a number of more than 4,000 digits"  # Python refuses to read such integers (CVE-2020-10735)


def long_number_line(text: str) -> int:
    """The line of the first number of 4,000 digits or more in the text (1 when there is none)."""
    found = LONG_NUMBER.search(text)
    return line_at(text, found.start())[0] if found else 1


NOT_FINITE = "a number JSON cannot hold (NaN, Infinity, or too large for a float)"
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NUMBER_OR_CONSTANT = re.compile(r"-?(?:NaN|Infinity|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)")


class _NotFinite(ValueError):
    """Raised while parsing by parse_constant / parse_float: NaN, Infinity, or a float overflow."""


def _refuse_constant(name: str) -> float:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotFinite(text)
    return value


def not_finite_position(text: str) -> int:
    """The offset of the first NaN, Infinity or float too large for a double outside the JSON
    strings in `text` (0 when none is found)."""
    blanked = _JSON_STRING.sub(lambda m: " " * len(m.group()), text)  # same offsets, strings gone
    for found in _NUMBER_OR_CONSTANT.finditer(blanked):
        number = found.group()
        if "N" in number or "I" in number or math.isinf(float(number)):
            return found.start()
    return 0


def load_json(text: str) -> object:
    """json.loads, refusing data nested more than MAX_DEPTH levels: TooDeep (a ValueError, with
    the line) instead of a RecursionError; json.JSONDecodeError for text that is not JSON, that
    holds a number too long to read, or NaN, Infinity or a float too large (Python's json reads
    them; they are not JSON, and writing them back would make a file no other tool reads)."""
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float, object_pairs_hook=_one_of_each
        )
    except _NotFinite:
        raise json.JSONDecodeError(NOT_FINITE, text, not_finite_position(text)) from None
    except _GivenTwice as twice:
        raise json.JSONDecodeError(twice.message, text, twice.position(text)) from None
    except RecursionError:
        raise TooDeep(deep_line(text)) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # an integer of more than 4,300 digits
        found = LONG_NUMBER.search(text)
        raise json.JSONDecodeError(TOO_LONG_NUMBER, text, found.start() if found else 0) from exc
    if too_deep(value):
        raise TooDeep(deep_line(text))
    return value


class _GivenTwice(ValueError):
    """A JSON object that gives one key twice: Python's json keeps the last in silence."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key
        self.message = f"the key {key!r} is given twice in one object (one would be lost in silence); keep one"

    def position(self, text: str) -> int:
        """Where the key is given the second time (0 when its spelling in the text is not found)."""
        quoted = json.dumps(self.key, ensure_ascii=False)
        first = text.find(quoted)
        second = text.find(quoted, first + 1) if first >= 0 else -1
        return max(second, 0)


def _one_of_each(pairs: list[tuple[str, object]]) -> dict:
    value = dict(pairs)
    if len(value) < len(pairs):
        seen: set[str] = set()
        raise _GivenTwice(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return value


def json_problem(exc: json.JSONDecodeError) -> tuple[int, str]:
    """Where and what for text that did not parse as JSON: (line, counted as editors count it, and
    "not JSON at column C: what the decoder expected, found 'a short excerpt'") — the excerpt is
    a few characters from the error on, sanitised (lib.safety.excerpt), never the whole text."""
    text, pos = exc.doc, exc.pos
    line, column = line_at(text, pos)
    if exc.msg in (TOO_LONG_NUMBER, NOT_FINITE) or exc.msg.startswith("the key "):
        return line, f"column {column}: {exc.msg}"
    rest = NEWLINE.split(text[pos : pos + 200], maxsplit=1)[0]  # the rest of that line, at most
    found = excerpt(rest) if rest else ("the end of the line" if pos < len(text) else "the end of the text")
    if exc.msg.startswith("Invalid control character") and (char := control_character(text[pos : pos + 1])):
        return line, f"column {column}: contains a control character ({char}); remove it"  # as other readers say
    what = re.sub(r"( starting)? at$", "", exc.msg)  # "Unterminated string starting at" preceded a position
    return line, f"not JSON at column {column}: {what[:1].lower()}{what[1:]}, found {found}"


def iter_jsonl(text: str) -> Iterator[tuple[int, object, str | None]]:
    """(line number, parsed value, problem) for each non-blank line of JSONL text.

    A line that is not JSON gives (number, None, "not JSON at column C: what, found '…'"), one
    nested more than MAX_DEPTH levels (number, None, "nested too deeply (…)"); nothing is raised.
    Lines end at \\n, \\r\\n or \\r only, as an editor numbers them. Text is made valid Unicode
    first and again inside each value (a JSON "\\ud83d" escape decodes to a lone surrogate), and a
    leading byte-order mark is ignored. Control characters a value holds (a "\\u0000" or "\\u001b"
    escape) are kept: the caller refuses them where text may hold none (a prompt) and cleans the
    rest (lib.safety.clean_text); one written raw in a line makes it not JSON."""
    for number, line in enumerate(NEWLINE.split(valid_unicode(text).removeprefix("\ufeff")), start=1):
        if not line.strip():
            continue
        try:
            yield number, unicode_json(load_json(line)), None
        except json.JSONDecodeError as exc:
            yield number, None, json_problem(exc)[1]
        except TooDeep:
            yield number, None, TOO_DEEP


UNTERMINATED = "unterminated quoted field: a quote opens a cell on this line and is never closed"


def read_csv(text: str) -> tuple[list[str], list[tuple[int, dict | None, str | None]]]:
    """(header, rows) of CSV text, the one CSV reader: each row is (the line it starts on, counted
    as line_at counts them, {column: cell}, None) or (line, None, problem) — a row with more cells
    than the header has columns, or the file's first CSV error, after which nothing more is read.
    A quote that is never closed is named at the line where it opens (csv would otherwise read
    the rest of the file into one cell); a quote inside a cell that does not start with one is
    text, as spreadsheets read it. A leading byte-order mark is dropped; cells may be long."""
    csv.field_size_limit(2**31 - 1)  # answers are long; the default limit is 131,072 characters
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    rows: list[tuple[int, dict | None, str | None]] = []
    header: list[str] = []
    start = 1
    try:
        for number, cells in enumerate(reader):
            if number == 0:
                header = cells
            elif len(cells) > len(header):
                rows.append((start, None, f"{len(cells) - len(header)} more cell(s) than the header has columns"))
            elif cells:  # a blank line is no row, as csv.DictReader reads it
                rows.append((start, dict(zip(header, cells + [None] * (len(header) - len(cells)), strict=True)), None))
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            rows.append((start, None, UNTERMINATED))
        else:
            rows.append((reader.line_num, None, f"not valid CSV ({exc})"))
    return header, rows


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text (a leading byte-order mark dropped); InputFileError naming `name`, the line, the
    byte and its offset when it is not UTF-8 (a GBK or Latin-1 file, say). Nothing is replaced:
    text that U+FFFD stood in for would be imported as if it had been written so."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")  # not "utf-8-sig": its error positions leave out the mark
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = len(re.findall(rb"\r\n|\r|\n", data[:offset])) + 1  # as line_at counts them
        raise InputFileError(
            f"{name}, line {line}: not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset:,}); "
            "save the file as UTF-8"
        ) from None


def decode_lenient(data: bytes, name: str) -> tuple[str, str | None]:
    """Bytes as text where what is not UTF-8 becomes U+FFFD (a leading byte-order mark dropped), and
    a warning naming `name`, the first line with such bytes, the byte, its offset and how many
    characters were replaced (None for clean UTF-8). Text that is not valid Unicode is made safe and
    the work goes on (issue 12): a GBK or Latin-1 file is read, and the user is told which file and
    line to save as UTF-8 to keep those characters. Control characters are kept for the reader."""
    try:
        return decode_text(data, name), None
    except InputFileError as exc:
        first = str(exc).removesuffix("; save the file as UTF-8")
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    text = data[start:].decode("utf-8", "replace")
    replaced = text.count("\ufffd") - data[start:].decode("utf-8", "ignore").count("\ufffd")
    return text, f"{first}; {replaced:,} character(s) were replaced by U+FFFD — save the file as UTF-8 to keep them"


def check_input_file(path: Path) -> None:
    """InputFileError when `path` is missing, a folder or not a regular file (the message names it)."""
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path} is a folder; give the path of a file inside it")
    if not path.is_file():
        raise InputFileError(f"{path}: not a regular file")


def read_input_bytes(path: Path) -> bytes:
    """A user's input file's bytes; InputFileError when it is missing, a folder, not a regular
    file or unreadable (the message names the file)."""
    path = Path(path)
    check_input_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def read_text_file(path: Path) -> str:
    """A user's text file as str; InputFileError when it is missing, not a regular file, unreadable
    or not UTF-8 (the message names the file, the line and the byte). Control characters are kept
    for the reader to refuse where text may hold none."""
    return decode_text(read_input_bytes(path), str(path))


def read_text_lenient(path: Path) -> tuple[str, str | None]:
    """A user's text file read as `decode_lenient` reads bytes: (text, warning or None);
    InputFileError when it is missing, a folder, not a regular file or unreadable."""
    return decode_lenient(read_input_bytes(path), str(path))


def read_stdin_bytes() -> bytes:
    """Everything on standard input, as bytes (the reader decodes and names problems)."""
    return sys.stdin.buffer.read()


DASH = "-"  # an output (or an input) given as "-" is standard output (input), as Unix tools read it


class GuardedStdout:
    """sys.stdout for the CLI: writes as it does, but a failed write or flush (a full disk, an I/O
    error; not a closed pipe) raises OutputWriteError naming standard output, so the entry point
    can say so in one line; everything else is the wrapped stream's."""

    def __init__(self, stream: IO):
        self._stream = stream

    def write(self, text: str) -> int:
        """Write to the stream; OutputWriteError when it fails."""
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise exc if passes_through(exc) else write_failure(STDOUT, exc) from exc

    def flush(self) -> None:
        """Flush the stream; OutputWriteError when it fails."""
        try:
            self._stream.flush()
        except OSError as exc:
            raise exc if passes_through(exc) else write_failure(STDOUT, exc) from exc

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class StandardOutput:
    """The output a user names with `-`: standard output (`STDOUT`, the one instance)."""

    def __str__(self) -> str:
        return "standard output"

    __repr__ = __str__


STDOUT = StandardOutput()


def check_output_path(path: Path) -> Path:
    """`path` if a regular file can be written there (new, or replacing a regular file);
    OutputPathError for a folder, a device or other special file, a symbolic link, or a folder
    that is missing or not writable. Writes nothing. STDOUT passes as it is."""
    if path is STDOUT:
        return path
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise OutputPathError(f"{path}: give the name of a file to write")
    if path.is_symlink():
        raise OutputPathError(f"{path} is a symbolic link; give the path of a regular file (nothing was written)")
    if path.exists():
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            raise OutputPathError(f"{path} is a folder; give a file name inside it (nothing was written)")
        if not stat.S_ISREG(mode):
            raise OutputPathError(
                f"{path} is not a regular file (a device, pipe or socket); give a file path (nothing was written)"
            )
        if not os.access(path, os.W_OK):
            raise OutputPathError(f"{path} is not writable (nothing was written)")
    folder = path.parent
    if not folder.exists():
        raise OutputPathError(f"{folder}: no such folder (nothing was written)")
    if not folder.is_dir():
        raise OutputPathError(f"{folder} is not a folder (nothing was written)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{folder} is not writable (nothing was written)")
    return path


def check_output_paths(paths: list[Path], reads: Sequence[tuple[object, str]] = ()) -> list[Path]:
    """Check several outputs of one command before any is written; they must also differ (one
    of them at most is standard output), and none may be a file the command reads: `reads` are
    (path, what it is) pairs ("the input file", "the database"…), compared as files, so another
    spelling of a path, a symbolic link or a hard link to it is the same file."""
    checked = [check_output_path(p) for p in paths]
    if sum(path is STDOUT for path in checked) > 1:
        raise OutputPathError("only one output can be standard output ('-'); give the others a file path")
    seen: dict[Path, Path] = {}
    for path in checked:
        if path is STDOUT:
            continue
        key = path.parent.resolve() / path.name
        if key in seen:
            raise OutputPathError(f"{seen[key]} and {path} are the same file; give two different paths")
        seen[key] = path
        if clash := read_clash(path, reads):
            raise OutputPathError(clash)
    return checked


def read_clash(path: Path, reads: Sequence[tuple[object, str]]) -> str | None:
    """A message when `path` is one of `reads` ((path or descriptor, what it is) pairs) — the same
    file however spelled, or the same path while that file is missing (a database's -wal comes and
    goes; in any letter case where the file system ignores it, as macOS's and Windows' do:
    test.db-WAL is then that file) — else None."""
    folder = path.parent.resolve()
    fold = str.casefold if case_insensitive(folder) else str
    key = fold(str(folder / path.name))
    for read, what in reads:
        if same_file(path, read) or (
            not isinstance(read, int) and key == fold(str(Path(read).parent.resolve() / Path(read).name))
        ):
            named = "" if isinstance(read, int) or str(read) == str(path) else f" ({read})"
            return (
                f"{path} is {what}{named}: writing the output there would destroy it; "
                "give another output path (nothing was written)"
            )
    return None


def case_insensitive(folder: Path) -> bool:
    """Whether the file system `folder` (an absolute path) is on ignores letter case: the folder
    spelled in swapped case is the same folder (False when it has no letter, or cannot be read)."""
    swapped = Path(str(folder).swapcase())
    return swapped != folder and same_file(folder, swapped)


def same_file(path: Path, other: object) -> bool:
    """Whether `path` and `other` (a path, or an open file's descriptor) are one file, however
    each is spelled (relative or absolute, through a symbolic link, a hard link); False when
    either does not exist."""
    try:
        there = os.fstat(other) if isinstance(other, int) else os.stat(other)
        return os.path.samestat(os.stat(path), there)
    except (OSError, ValueError, TypeError):
        return False


SEPARATORS = tuple({"/", os.sep, os.altsep or "/"})


def output_file(given: str | os.PathLike[str], name: str) -> tuple[Path, Path | None]:
    """The file to write for an output a user gave, and the folder made for it (None when none
    was): `given` itself, or `name` inside it when `given` ends with a slash or is an existing
    folder (`-o out/` means the folder out, which is made when missing; its parent must exist).
    OutputPathError naming the path for an empty path or a folder that cannot be made; writes
    no file, and the target file itself is not checked (`check_output_path` does that). `-` is
    STDOUT (a file named "-" is `./-`)."""
    text = os.fspath(given)  # a str: Path() would drop the trailing slash that says "a folder"
    if text == DASH:
        return STDOUT, None
    if not text.strip():
        raise OutputPathError("the output path is empty: give a file, or a folder ending in /")
    path = Path(text)
    if not (text.endswith(SEPARATORS) or path.is_dir()):
        return path, None
    return path / name, (path if make_output_folder(path) else None)


def make_output_folder(folder: Path) -> bool:
    """Make `folder` to write outputs into unless it is a folder already; whether it was made.
    Its parent must exist (a mistyped parent is refused, not created). OutputPathError naming the
    path when a file or a link is in its place or it cannot be made."""
    folder = Path(folder)
    if folder.is_dir():
        return False
    if folder.is_symlink() or folder.exists():
        raise OutputPathError(f"{folder} is not a folder (nothing was written)")
    parent = folder.parent
    if not parent.exists():
        raise OutputPathError(f"{parent}: no such folder (nothing was written)")
    if not parent.is_dir():
        raise OutputPathError(f"{parent} is not a folder (nothing was written)")
    try:
        folder.mkdir()
    except OSError as exc:
        raise OutputPathError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None
    return True


def remove_if_empty(folder: Path) -> None:
    """Remove a folder made for outputs when nothing was written into it (anything else stays)."""
    try:
        Path(folder).rmdir()
    except OSError:
        pass  # not empty (something was written), or already gone


def _new_file_mode() -> int:
    """The mode a plain open() would give a new file (0o666 less the umask), read without
    changing the process umask (os.umask would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


class _Staged:
    """The context-manager shape every staged output shares: commit when the block ends without
    an error; on any error discard, and name the output(s) when a write in the block failed (a
    full disk) — a closed pipe or an interrupt passes as it is. Subclasses give `commit`,
    `discard` and `described`."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
            return
        self.discard()
        if not passes_through(exc):
            raise self.failure(exc) from exc

    def failure(self, exc: OSError) -> OutputWriteError:
        """The one-line error for a write that failed inside the block."""
        return write_failure(self.described(), exc)


class StagedFile(_Staged):
    """A temporary file beside `path`, opened for writing; `commit()` renames it onto `path`
    (after checking the target again), `discard()` removes it. As a context manager it commits
    on success and discards on any error."""

    def __init__(self, path: Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None):
        self.path = check_output_path(path)
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part")
        self.tmp = Path(name)
        try:
            keep = self.path.stat().st_mode & 0o777 if self.path.exists() else _new_file_mode()
            os.fchmod(fd, keep)
            binary = "b" in mode
            self.file: IO = os.fdopen(fd, mode, encoding=None if binary else encoding, newline=newline)
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise
        self.done = self.finished = False

    def finish(self) -> None:
        """Flush, sync and close the temporary file (where a full disk shows), renaming nothing;
        on an error it is removed and OutputWriteError (naming the target) raised."""
        if self.finished or self.done:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        except BaseException as exc:
            self.discard()
            if passes_through(exc):
                raise
            raise write_failure(self.path, exc) from exc
        self.finished = True

    def commit(self) -> Path:
        """Finish the file and rename it onto the target; the target path."""
        if self.done:
            return self.path
        self.finish()
        try:
            check_output_path(self.path)  # it may have changed since we started
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        self.done = True
        return self.path

    def discard(self) -> None:
        """Close and remove the temporary file; the target is left as it was."""
        if self.done:
            return
        self.done = True
        try:
            self.file.close()
        except OSError:
            pass  # thrown away anyway: closing flushes again, and a full disk says so twice
        finally:
            self.tmp.unlink(missing_ok=True)

    def described(self) -> object:
        """The target, for a message."""
        return self.path


class _StdoutFile(_Staged):
    """Standard output with StagedFile's interface (`file`, `commit`, `discard`): UTF-8 text
    written as it comes, line ends as written (the same bytes a file would get); nothing can
    be taken back, so `discard` only stops writing."""

    def __init__(self) -> None:
        sys.stdout.flush()  # what print() wrote before goes first
        self.path = STDOUT
        self.file: IO = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        self.done = False

    def finish(self) -> None:
        """Flush what was written (where a closed pipe or a full disk shows); OutputWriteError
        naming standard output when it fails (a closed pipe passes as it is)."""
        if not self.done:
            try:
                self.file.flush()
            except OSError as exc:
                if passes_through(exc):
                    raise
                raise write_failure(STDOUT, exc) from exc

    def commit(self) -> StandardOutput:
        """Flush what was written; standard output itself stays open."""
        if not self.done:
            try:
                self.finish()
            finally:
                self.done = True
                self.file.detach()  # closing (or collecting) the wrapper would close standard output
        return STDOUT

    def discard(self) -> None:
        """Stop writing (what was written stays written); never raises a write error."""
        try:
            self.commit()
        except OSError:
            pass

    def described(self) -> StandardOutput:
        """Standard output, for a message."""
        return STDOUT


def staged_file(path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None):
    """A StagedFile for `path`, or standard output when `path` is STDOUT (text modes only)."""
    if path is STDOUT:
        return _StdoutFile()
    return StagedFile(path, mode, encoding, newline)


class StagedGroup(_Staged):
    """Outputs of one command that appear together or not at all (a data file and its card, the
    charts of a folder): `add` stages each (staged_file), and `commit` first finishes every one
    (flush, sync, close: where a full disk or a failed write shows) and only then renames them
    into place, so a failure leaves every old file (or nothing) behind, never a new data file
    beside an old card. As a context manager it commits on success and discards on any error."""

    def __init__(self) -> None:
        self.files: list = []

    def add(self, path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None):
        """Stage `path` (a StagedFile, or standard output for STDOUT) in this group; the staged file."""
        staged = staged_file(path, mode, encoding, newline)
        self.files.append(staged)
        return staged

    def commit(self) -> None:
        """Finish every file, then rename each into place; on an error, discard what is left."""
        try:
            for staged in self.files:
                staged.finish()
            for staged in self.files:  # every target checked again before any is replaced
                check_output_path(staged.path)
            for staged in self.files:
                staged.commit()
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Remove every temporary file not yet renamed; targets are left as they were."""
        for staged in self.files:
            staged.discard()

    def failure(self, exc: OSError) -> OutputWriteError:
        """The one-line error for a write that failed inside the block; with standard output among
        several outputs, what was written there stays written, which the message says."""
        files = [str(staged.path) for staged in self.files if staged.path is not STDOUT]
        if len(files) < len(self.files) and files:
            left = f"{' and '.join(files)} not written; what reached standard output stays there"
            return write_failure(self.described(), exc, left)
        return write_failure(self.described(), exc)

    def described(self) -> object:
        """The group's outputs for a message: the one file (STDOUT as it is), their folder, or the
        files listed."""
        paths = [staged.path for staged in self.files]
        if len(paths) == 1:
            return paths[0]
        folders = {path.parent for path in paths if path is not STDOUT}
        if len(folders) == 1 and STDOUT not in paths:
            return f"{folders.pop()}/ ({len(paths)} files)"
        return " and ".join(str(path) for path in paths)


@contextmanager
def atomic_output(
    path: Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO]:
    """Write `path` all at once: yields a file beside it that replaces it only if the block ends
    without an error. OutputPathError (nothing written) when the target is not a regular file."""
    with StagedFile(path, mode, encoding, newline) as staged:
        yield staged.file


def write_text_atomic(path: Path, text: str) -> Path:
    """Replace `path` with `text` (UTF-8) in one step; OutputPathError when it cannot be written safely."""
    with atomic_output(path) as out:
        out.write(text)
    return Path(path)
