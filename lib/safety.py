"""The one sanitising path for text that crosses Parallax's trust boundary.

Provider streams, error bodies, model text, prompts from the command line or stdin, files users
hand us and form fields are untrusted. Every entry point passes its text through here:

- `clean_text` makes any string storable and printable: lone UTF-16 surrogates (a JSON
  `"\\ud83d"`, an argv byte that was not UTF-8) and NUL characters become U+FFFD, while a pair
  of surrogate halves that arrived separately is joined into the character it encodes;
  `valid_unicode` (and `unicode_json` for parsed data) does the same but keeps NULs, for file
  readers that must first refuse control characters where text may hold none (a prompt in a
  suite or an import: NUL is refused as ESC is) and clean the rest field by field after;
  `SurrogateJoiner` does the same across streamed chunks, holding back a dangling first half.
- `Redactor` removes an endpoint's key and the credentials of its base URL from provider text.
- `terminal_text` drops control characters (escape sequences) before text reaches a terminal;
  `control_character` names the first one in text that must have none (a prompt or a model name
  in a file: refused with its file and line, never stored).
- `one_line_problem` says what has no place in a one-line field (a model name, a topic, an id:
  line breaks, bidirectional formatting, characters that show nothing of their own) and
  `one_line_name` gives such a field its one spelling (NFC, one kind of space and hyphen, ASCII
  for full-width letters), so that two names that print the same are one name.
- `csv_cell` neutralises spreadsheet formulas (OWASP's CSV-injection guidance) and writes
  booleans as `true`/`false`, as the JSON formats do.
- `json_text` writes JSON that is safe to print: what json.dumps leaves raw but a terminal acts on
  or that hides text (C1 controls, format characters such as bidirectional overrides and zero-width
  spaces, line separators, lone surrogates) as `\\uXXXX` escapes.
- `chart_text` makes data text (a model name, a topic, a prompt) literal in a Plotly figure.
- `excerpt` quotes a few characters of untrusted text in a message, every unprintable one escaped.

No third-party imports: db/, lib/ and commands/ all call it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import string
import unicodedata
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

REPLACEMENT = "\ufffd"
REDACTED = "[redacted]"
MIN_SECRET_CHARS = 8  # shorter values are too likely to occur in ordinary text to be replaced
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_HIGH = range(0xD800, 0xDC00)
# C0 and C1 controls except tab and newline (a carriage return can overwrite a terminal line)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# OWASP: a cell that starts with one of these may be run as a formula by a spreadsheet
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_AUTH_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-api-key|api[-_]key)(\"?\s*[:=]\s*\"?)"
    r"((?:bearer|basic|token|digest)\s+)?[^\s\"',}]+"
)
# bidirectional overrides and isolates reorder what a terminal shows (Trojan Source, CVE-2021-42574)
# explicit embeddings, overrides and isolates: a page shows the characters they span in another
# order than they were written; the marks (U+200E, U+200F, U+061C) only set a neutral's direction
_BIDI_CONTROL_CHARS = "\u202a-\u202e\u2066-\u2069"
_BIDI_CONTROLS = re.compile(f"[{_BIDI_CONTROL_CHARS}]")
_BIDI = re.compile(f"[\u061c\u200e\u200f{_BIDI_CONTROL_CHARS}]")  # marks, overrides, isolates


def page_text(text: str | None) -> str:
    """`text` as a page shows it: clean (`clean_text`), without the bidirectional embeddings,
    overrides and isolates (U+202A-U+202E, U+2066-U+2069) that make a browser show characters in
    another order than they were written (Trojan Source, CVE-2021-42574): "\u202edesufer" would
    read "refused". What is stored, exported and printed as JSON keeps them."""
    text = clean_text(text)
    return _BIDI_CONTROLS.sub("", text) if text and _BIDI_CONTROLS.search(text) else text


def clean_text(text: str | None) -> str:
    """`text` as valid, storable Unicode: surrogate pairs joined, lone halves and NULs -> U+FFFD."""
    if not text:
        return text or ""
    if not _UNSTORABLE.search(text):
        return text  # the common case costs one regex scan
    return valid_unicode(text).replace("\x00", REPLACEMENT)


def valid_unicode(text: str | None) -> str:
    """`text` as valid Unicode (surrogate pairs joined, lone halves -> U+FFFD), NULs and other
    control characters kept: what a reader checks before `clean_text` makes it storable."""
    if not text:
        return text or ""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


MAX_DEPTH = 100  # nesting levels a parsed value may have (the file readers refuse deeper ones first)


def clean_json(value: object) -> object:
    """A parsed JSON/YAML/TOML value with every string in it (keys too) passed through `clean_text`.
    ValueError for a value nested deeper than MAX_DEPTH levels (never a RecursionError)."""
    return _strings(value, clean_text, 0)


def unicode_json(value: object) -> object:
    """A parsed value with every string in it (keys too) passed through `valid_unicode` (NULs
    kept for the reader's checks); ValueError as `clean_json`."""
    return _strings(value, valid_unicode, 0)


def _strings(value: object, fix, depth: int) -> object:
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        return {_strings(k, fix, depth + 1): _strings(v, fix, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v, fix, depth + 1) for v in value]
    return value


def decode_bytes(data: bytes) -> str:
    """Bytes from a file, a pipe or an upload as clean text: invalid UTF-8 becomes U+FFFD, a
    leading byte-order mark is dropped."""
    return clean_text(data.decode("utf-8", errors="replace").removeprefix("\ufeff"))


def read_text(path) -> str:
    """A text file's content via `decode_bytes` (OSError when it cannot be read)."""
    with open(path, "rb") as handle:
        return decode_bytes(handle.read())


class SurrogateJoiner:
    """Makes streamed text clean chunk by chunk without splitting a character in two.

    A provider may send the two UTF-16 halves of an emoji in two chunks: the first half is held
    back until the next chunk says whether its partner follows."""

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, chunk: str) -> str:
        """The clean text that can be shown now."""
        text = self.pending + (chunk or "")
        self.pending = ""
        if text and ord(text[-1]) in _HIGH:
            text, self.pending = text[:-1], text[-1]
        return clean_text(text)

    def flush(self) -> str:
        """What is still held back at the end of the stream (a lone half -> U+FFFD)."""
        text, self.pending = self.pending, ""
        return clean_text(text)


# query parameters that carry no secret: their values stay in text (a date would be redacted)
PUBLIC_QUERY = frozenset({"api-version", "api_version", "version", "alt", "format", "region", "model", "locale"})


def url_secrets(url: str | None) -> list[str]:
    """The credentials in a URL: user and password before the host, and query-string values
    (all but those of PUBLIC_QUERY)."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password, unquote(parts.password)] if parts.password else []
    if parts.username and not parts.password:  # a token as the user alone ("https://TOKEN@host")
        found += [parts.username, unquote(parts.username)]
    if parts.username:  # as an HTTP client sends them: Basic base64(user:password)
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        found.append(base64.b64encode(pair.encode()).decode())
    for name, value in parse_qsl(parts.query):
        if name.lower() not in PUBLIC_QUERY:  # Azure's api-version=2024-10-21 is no secret
            found += [value]
    return [s for s in found if s]


def strip_credentials(url: str) -> str:
    """`url` without any user:password@ part (for display and storage)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


# a mask providers put in a key they echo: a run of two or more of * ＊ ∗ • ● · ∙ ⋅ ⋯ █ # ~ . ． - or an
# invisible character, of four or more x, of two or more underscores, or an ellipsis (… ⋯), each
# perhaps in brackets ("[...]")
_MASK_MARKS = "*\uff0a\u2217\u2022\u25cf\u00b7\u2219\u22c5\u22ef\u2588#~.\uff0e\u200b\u200c\u200d\u2060\ufeff-"
_MASK = re.compile(f"[\\[(<]?(?:[{re.escape(_MASK_MARKS)}]{{2,}}|[xX]{{4,}}|_{{2,}}|[\u2026\u22ef])[\\])>]?")
MIN_SHOWN_CHARS = 4  # a masked echo is redacted when this much of a key's start or end shows
# what may follow a key's start while a mask is still arriving ("sk-proj-Ab3d*", "sk-proj-Ab3d ")
_MASK_CHARS = f" {_MASK_MARKS}xX_\u2026[(<"
MIN_RUN_CHARS = 6  # this many characters of a key in a row are redacted wherever they are
SIDE_CHARS = 64  # the key characters read on each side of a mask (an echo shows a few; the rest is a run)
# the part of a key every key of its provider starts with: not a secret, and text about keys writes it
# ("keys look like sk-proj-..."); the known ones, else one short lower-case word and its - or _ (a
# longer guess took the start of 16% of random keys for public)
_PUBLIC_PREFIX = re.compile(
    r"sk-(?:proj|svcacct|admin)-|sk-ant-(?:api|admin)[0-9]{2}-|sk-or-v1-|AIzaSy|gsk_|xai-|hf_|pplx-|nvapi-|r8_"
    r"|[a-z]{1,5}[-_]"
)
# keys local servers take, or that are written where a key is asked for but none is needed: they
# are no secret, and they are words of ordinary text ("LM Studio")
PLACEHOLDER_KEYS = frozenset(
    {"not-needed", "lm-studio", "sk-no-key-required", "empty", "ollama", "none", "dummy", "no-key", "sk-dummy"}
)
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "_-+/=")  # base64url and base64
_KEY_RUN = re.compile(f"[{re.escape(''.join(sorted(_KEY_CHARS)))}]{{{MIN_RUN_CHARS},}}")


def _random_part(key: str) -> int | None:
    """The length of `key`'s public prefix when the rest looks generated (8 or more characters, a
    digit among them), else None: "not-needed", "lm-studio" or "sk-no-key-required" (what local
    servers take) are no secret whose pieces matter."""
    public = m.end() if (m := _PUBLIC_PREFIX.match(key)) else 0
    rest = key[public:]
    return public if len(rest) >= 8 and any(c.isdigit() for c in rest) else None


class Redactor:
    """Removes secrets from provider text (an error body, a streamed answer, its reasoning):

    - each of `secrets` (an endpoint's key, its URL credentials and query values), whole, in any
      letter case ("SK-PROJ-…" is the key upper-cased), as is, URL-encoded or JSON-escaped;
    - any Authorization-like header value (unless called with headers=False, as for answers);
    - and of the API `key`, where it looks generated (see `_random_part`), the pieces a provider
      echoes: MIN_RUN_CHARS or more of it in a row anywhere, where they hold a digit or a capital
      ('"key_suffix": "AKTAIL9"', "ending in 9f3a2c"), and MIN_SHOWN_CHARS or more of its start or
      end beside a mask ("Incorrect API key provided: sk-proj-****abcd", "sk-proj-XXXX9876",
      "key …1234", "sk-proj- #### 9876"); its start counts beyond the prefix all its provider's
      keys share ("sk-proj-..." is no echo). Placeholder keys (PLACEHOLDER_KEYS) are no secret.

    `held_back` keeps a key, or the start of its masked echo, streamed in pieces from showing
    before it can be redacted whole. Linear in the text's length."""

    def __init__(self, secrets: Iterable[str | None] = (), key: str | None = None) -> None:
        whole = {s for s in [*secrets, key] if s and len(s) >= MIN_SECRET_CHARS and s.lower() not in PLACEHOLDER_KEYS}
        values = set()
        for secret in whole:
            # as a provider may echo it: as is, URL-encoded (a query string), JSON-escaped ("\/")
            values |= {secret, quote(secret, safe=""), quote_plus(secret), secret.replace("/", "\\/")}
        self.secrets = sorted(values, key=len, reverse=True)  # longest first: no partial leftovers
        self._whole = re.compile("|".join(map(re.escape, self.secrets)), re.IGNORECASE) if values else None
        public = _random_part(key) if key and key.lower() not in PLACEHOLDER_KEYS else None
        self._key = (key.lower(), public) if public is not None else None
        # six characters of it in a row, where they hold a digit or a capital: "secret" of a key
        # "my-secret-key-2024" is a word of ordinary text, and a random key's runs nearly all do
        rest = key[public:] if public is not None else ""
        self._runs = {
            rest[i : i + MIN_RUN_CHARS].lower()
            for i in range(len(rest) - MIN_RUN_CHARS + 1)
            if any(c.isdigit() or c.isupper() for c in rest[i : i + MIN_RUN_CHARS])
        }

    def _head(self, run: str) -> int:
        """Where in `run` (key characters before a mask) the key's start begins, when the rest of
        the run is MIN_SHOWN_CHARS or more of it beyond its public prefix ("key=sk-proj-Ab3d" ->
        4), else -1."""
        key, public = self._key
        lowered = run.lower()
        for i in range(len(run) - public - MIN_SHOWN_CHARS + 1):
            if lowered[i] == key[0] and key.startswith(lowered[i:]):
                return i
        return -1

    def _tail(self, run: str) -> int:
        """How much of `run` (key characters after a mask) is the key's end, MIN_SHOWN_CHARS or
        more ("dYP2/v1" -> 4), else 0."""
        key, lowered = self._key[0], run.lower()
        for size in range(min(len(run), len(key)), MIN_SHOWN_CHARS - 1, -1):
            if key.endswith(lowered[:size]):
                return size
        return 0

    def _unmasked(self, text: str) -> str:
        """`text` with each masked echo of the key replaced by [redacted]: the mask, with the key
        characters before it (past one space) that are the key's start, and those after it that
        are its end; others are kept ("Please" after "****. " is a word, "key=" before the start
        a name). Each side is read at most SIDE_CHARS: linear in the text's length."""
        pieces, done = [], 0
        for found in _MASK.finditer(text):
            start, end = found.start(), found.end()
            if start < done:  # inside the span of an echo already replaced
                continue
            spaced = start - 2 >= done and text[start - 1] == " " and text[start - 2] in _KEY_CHARS
            head_end = start - 1 if spaced else start
            head_start = head_end
            while head_start > max(done, head_end - SIDE_CHARS) and text[head_start - 1] in _KEY_CHARS:
                head_start -= 1
            tail_start = end + 1 if end + 1 < len(text) and text[end] == " " and text[end + 1] in _KEY_CHARS else end
            tail_end = tail_start
            while tail_end < min(len(text), tail_start + SIDE_CHARS) and text[tail_end] in _KEY_CHARS:
                tail_end += 1
            head, tail = self._head(text[head_start:head_end]), self._tail(text[tail_start:tail_end])
            if head >= 0 or tail:
                pieces += [text[done : head_start + head if head >= 0 else start], REDACTED]
                done = tail_start + tail if tail else end
        return "".join([*pieces, text[done:]]) if pieces else text

    def _in_runs(self, found: re.Match) -> str:
        """A run of key characters with the part of it that is a piece of the key redacted."""
        run, lowered, size = found.group(0), found.group(0).lower(), MIN_RUN_CHARS
        hits = [i for i in range(len(run) - size + 1) if lowered[i : i + size] in self._runs]
        if not hits:
            return run
        start, end, key = hits[0], hits[-1] + size, self._key[0]
        while start > 0 and lowered[start - 1 : end] in key:  # "token=sk-proj-ab12cd…": keep "token="
            start -= 1
        while end < len(run) and lowered[start : end + 1] in key:
            end += 1
        return f"{run[:start]}{REDACTED}{run[end:]}"

    def held_back(self, text: str) -> str:
        """`text` (already redacted) without an end that is the start of the key beyond its public
        prefix (MIN_SHOWN_CHARS or more of it, any case), or that start and what may begin a mask
        after it ("sk-proj-Ab3d*"): what a stream shows while a key or its masked echo arrives."""
        if self._key is None:
            return text
        cut = self._start_at_end(text)
        if cut is None and (unmasked := text.rstrip(_MASK_CHARS)) != text:
            cut = self._start_at_end(unmasked)
        return text if cut is None else text[:cut]

    def _start_at_end(self, text: str) -> int | None:
        """Where the key's start that `text` ends with begins (MIN_SHOWN_CHARS or more of it
        beyond the public prefix, but not all of it), or None."""
        key, public = self._key
        end = text[-(len(key) - 1) :].lower()
        starts = (i for i, char in enumerate(end) if char == key[0])
        size = next((len(end) - i for i in starts if key.startswith(end[i:])), 0)
        return len(text) - size if size >= public + MIN_SHOWN_CHARS else None

    def __call__(self, text: str | None, headers: bool = True) -> str:
        """`text`, clean (see `clean_text`) and with every secret replaced by [redacted]; with
        `headers`, Authorization-like header values too (in an error body; an answer's code writes
        `api_key=os.environ[…]`, which is no echo)."""
        text = clean_text(text)
        if not text:
            return text
        if self._whole is not None:
            text = self._whole.sub(REDACTED, text)
        if self._key is not None:
            text = _KEY_RUN.sub(self._in_runs, self._unmasked(text))
        if not headers:
            return text
        return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{REDACTED}", text)


def terminal_text(text: object) -> str:
    """Text safe to print on a terminal: clean, without control characters (escape sequences) or
    bidirectional marks and overrides (which reorder what the terminal shows); U+2028/U+2029 as
    spaces (a terminal does not break the line there)."""
    text = _CONTROL.sub("", clean_text("" if text is None else str(text)))
    return _BIDI.sub("", text.replace("\u2028", " ").replace("\u2029", " "))


_ANY_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's Cc category: C0, DEL and C1
_CONTROL_NAMES = {"\x1b": "ESC", "\x00": "NUL", "\x7f": "DEL", "\x07": "BEL", "\x08": "BS"}
_CONTROL_NAMES |= {"\r": "CR", "\n": "a line break", "\t": "TAB", "\x0c": "a form feed"}


def control_character(text: str | None, allowed: str = "\t\n\r") -> str | None:
    """The name of the first control character in `text` that is not in `allowed` ('ESC', 'BEL',
    'U+0001'…; tabs and line breaks are allowed by default), or None when it has none."""
    for found in _ANY_CONTROL.finditer(text or ""):
        char = found.group()
        if char not in allowed:
            return _CONTROL_NAMES.get(char, f"U+{ord(char):04X}")
    return None


# Unicode's format characters (Cf, as of Unicode 14: Python 3.11's unicodedata) but the zero-width
# non-joiner and joiner: bidirectional marks, overrides and isolates, the zero-width space, the soft
# hyphen, the byte-order mark, tag characters… — invisible, or reordering what is around them
_FORMAT = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_JOINERS = "\u200c\u200d"  # the other two format characters

# what else breaks a one-line field (a model name, a topic, an id: one table cell, one line of
# `leaderboard`): line and paragraph separators, bidirectional overrides that reorder the line, and
# every character that shows nothing of its own, so that "gpt-4o" and "gpt\u200b-4o" would be two
# models printed the same: every other format character, and blanks that are letters or marks
# (the combining grapheme joiner, Hangul fillers, the braille blank, Mongolian variation selectors)
_INVISIBLE = (
    "\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u2065\u2800\u3164\uffa0\ufff0-\ufff8"
    "\U000e0000\U000e0002-\U000e001f\U000e0080-\U000e00ff\U000e01f0-\U000e0fff"
)  # with _FORMAT and the rules below: Unicode's default-ignorable code points, and blanks
# Variation selectors choose how the character before them is drawn: emoji or text style of a
# symbol ("❤\ufe0f", "‼\ufe0f", a keycap "1\ufe0f\u20e3"), the registered glyph of a Han
# ideograph (an ideographic variation sequence, Japanese names: "葛\U000e0100"); after a letter, a
# space or a punctuation mark they change nothing a reader sees
_SELECTORS = "\ufe00-\ufe0f\U000e0100-\U000e01ef"
_SYMBOLS = "\u00a9\u00ae\u203c\u2049\u2100-\u2bff\u3030\u303d\u3297\u3299\U0001f000-\U0001faff"
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
# A subdivision flag is the black flag, tag letters and a cancel tag: England, Scotland and Wales
# (gbeng, gbsct, gbwls: the only ones Unicode recommends for display, RGI); other tag letters show
# as the plain black flag, and tags anywhere else are invisible (they can hide text in a name)
_TAG_FLAG = "\U0001f3f4(?:{})\U000e007f".format(
    "|".join("".join(chr(0xE0000 + ord(c)) for c in code) for code in ("gbeng", "gbsct", "gbwls"))
)
# The zero-width non-joiner and joiner are spelling between two characters that join: letters of
# the joining scripts (Arabic and Persian "حقوق\u200cبشر", Syriac, the Indic scripts "क्\u200dष",
# Myanmar, Mongolian) and emoji ("👩\u200d💻", "❤\ufe0f\u200d🔥"), and after an Indic virama
# whatever follows (Malayalam chillu letters "ന്\u200d"). Anywhere else — beside Latin or Chinese
# ("通义\u200c千问" prints as 通义千问), beside another joiner, at either end — they are invisible.
_JOIN_SCRIPTS = "\u0600-\u08ff\u0900-\u0dff\u1000-\u109f\u1800-\u18af\ua8e0-\ua8ff\ufb50-\ufdff\ufe70-\ufefe"
_JOIN_EMOJI = "\u2600-\u27bf\U0001f000-\U0001faff"
_VIRAMAS = "\u094d\u09cd\u0a4d\u0acd\u0b4d\u0bcd\u0c4d\u0ccd\u0d4d\u0dca\u1039\u103a"
_NOT_ONE_LINE = re.compile(
    f"(?P<flag>{_TAG_FLAG})"  # matched first and kept: see `_one_line_matches`
    f"|[\u2028\u2029{_FORMAT}{_INVISIBLE}]"
    f"|(?:^|(?<![{_JOIN_SCRIPTS}{_JOIN_EMOJI}\ufe0f]))[{_JOINERS}]"
    f"|(?<![{_VIRAMAS}])[{_JOINERS}](?![{_JOIN_SCRIPTS}{_JOIN_EMOJI}])"
    f"|(?:^|(?<![{_SYMBOLS}{_HAN}0-9#*]))[{_SELECTORS}]|(?<=[0-9#*])[{_SELECTORS}](?!\u20e3)"
)
# spaces that print as a space (no-break, thin, ideographic…) and runs of them: one space in a
# name; hyphens that print as "-" (hyphen, non-breaking hyphen, figure dash, minus): "-"
_SPACES = re.compile("[ \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_HYPHENS = re.compile("[\u2010-\u2012\u2212\ufe63]")
# full-width Latin letters, digits, "-", "." and "_" (what an East Asian input method types in its
# full-width mode: "Ｑｗｅｎ２．５－７Ｂ"; other full-width punctuation is Chinese typography,
# "台湾（历史）", and stays) and the mathematical alphanumeric symbols (bold, italic,
# script… "𝐠𝐩𝐭": styled letters pasted from a page) as the ASCII ones they print as
_FULL_WIDTH = {
    code: unicodedata.normalize("NFKC", chr(code))
    for code in [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B), 0xFF0D, 0xFF0E, 0xFF3F]
}
_FULL_WIDTH |= {
    code: folded
    for code in range(0x1D400, 0x1D800)
    if (folded := unicodedata.normalize("NFKC", chr(code))).isascii() and folded.isalnum()
}
_LINE_BREAKS = {"\n": "a line break", "\r": "a line break (CR)", "\x0b": "a line break (VT)", "\x0c": "a form feed"}
_LINE_BREAKS |= {"\x85": "a line break (U+0085)", "\u2028": "a line separator (U+2028)"}
_LINE_BREAKS |= {"\u2029": "a paragraph separator (U+2029)"}


def _one_line_matches(text: str):
    """The characters `_NOT_ONE_LINE` finds in `text`, subdivision flags (which it matches whole
    so that their tags are not taken one by one) left out."""
    return (found for found in _NOT_ONE_LINE.finditer(text) if not found.group("flag"))


def character_problem(char: str) -> str:
    """What `char` is, for a message that says a field "contains" it: "a tab", "a line break",
    "a control character (ESC)", "a bidirectional formatting character (U+202E)", "an invisible
    character (U+200B)" (a format character, a blank, or a joiner or variation selector where it
    changes nothing a reader sees)."""
    if char in _LINE_BREAKS:
        return _LINE_BREAKS[char]
    if char == "\t":
        return "a tab"
    if _ANY_CONTROL.match(char):
        return f"a control character ({_CONTROL_NAMES.get(char, f'U+{ord(char):04X}')})"
    if _BIDI.match(char):
        return f"a bidirectional formatting character (U+{ord(char):04X})"
    return f"an invisible character (U+{ord(char):04X})"


def one_line_problem(text: str | None) -> str | None:
    """What the first character that has no place in a one-line field is (see `character_problem`:
    "a control character (ESC)", "a line break", "an invisible character (U+200B)"…), or None.
    Refused: any control character, a tab or line break included, U+2028/U+2029, bidirectional
    formatting, any other format character — zero-width, soft hyphen, byte-order mark, tags
    outside a subdivision flag — and other characters that show nothing of their own (see
    `_NOT_ONE_LINE`). The text is checked as written and as `one_line_name` stores it."""
    if found := _ANY_CONTROL.search(text or ""):
        return character_problem(found.group())
    name = one_line_name(text)
    if name and unicodedata.category(name[0]) in ("Mn", "Me"):
        return f"a combining mark with no letter before it (U+{ord(name[0]):04X})"
    # as stored too: a space `one_line_name` makes one can leave a selector after it
    found = next(_one_line_matches(text or ""), None) or next(_one_line_matches(name), None)
    return character_problem(found.group()) if found else None


def one_line_name(text: str | None) -> str:
    """A one-line field as it is stored and compared: clean, in Unicode's composed form (NFC: "Café"
    typed as C-a-f-e + U+0301 is the same name as with é), every run of spaces that print as spaces
    one plain space, every hyphen that prints as "-" (U+2010–U+2012, the minus sign) "-",
    full-width Latin letters, digits, "-", "." and "_" as ASCII ("Ｑｗｅｎ２．５" is "Qwen2.5"),
    stripped. Check what it returns with `one_line_problem`."""
    text = unicodedata.normalize("NFC", clean_text(text).translate(_FULL_WIDTH))  # "Ｃａｆｅ\u0301" is "Café"
    return _HYPHENS.sub("-", _SPACES.sub(" ", text)).strip()


_BREAKS = re.compile("[\t\n\x0b\x0c\r\x85\u2028\u2029]")


def one_line_text(text: str | None) -> str:
    """`text` with every character `one_line_problem` would name gone: tabs and line breaks
    (U+2028/U+2029 too) as spaces, other control and format characters removed —
    a one-line field made from text that is not the user's to fix, such as a topic taken from a
    file's name."""
    text = _ANY_CONTROL.sub("", _BREAKS.sub(" ", clean_text(text)))
    return _NOT_ONE_LINE.sub(lambda found: found.group("flag") or "", text)


def excerpt(text: str | None, limit: int = 32) -> str:
    """A short quote of untrusted text for a message (a problem in a user's file): at most `limit`
    characters of it, clean, quoted, every character that is not printable (control characters,
    escape sequences, bidirectional overrides, line separators) written as its Python escape
    (`\\x1b`), and `…` after the quote when the text went on."""
    text = clean_text(text)
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def fitted_key(key: str, width: int) -> str:
    """`key` as stored in a column `width` characters wide: as it is when it fits, else its start,
    "~" and 16 hex digits of a SHA-256 of the whole — never cut, which could make two keys one (a
    long local model path, a long e-mail address)."""
    if len(key) <= width:
        return key
    return f"{key[: width - 17]}~{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


MAX_COUNT = 2**31 - 1  # the largest whole number a database column takes (PostgreSQL's integer)


def token_count(value: object) -> int | None:
    """A token count a provider or a file reported, or None when it is not a whole number from 0 to
    2,147,483,647 (a float such as 1.5e300, a negative, a boolean, text: PostgreSQL refused the
    whole answer over one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        return None
    return value


def csv_cell(value: object) -> object:
    """A value safe for a spreadsheet: text that could start a formula gets a leading quote, and a
    boolean is `true` or `false`, as JSON writes it (csv would write Python's `True`/`False`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        value = clean_text(value)
        if value.startswith(CSV_TRIGGERS):
            return "'" + value
    return value


# what json.dumps(ensure_ascii=False) writes as it is but a terminal acts on, or that reorders,
# splits or hides text: DEL and C1 controls, every format character (Unicode's Cf: bidirectional
# marks, overrides and isolates, zero-width spaces and joiners, the soft hyphen, the byte-order mark,
# tag characters…), U+2028/U+2029, and lone surrogates (which would make printing fail). Cf as of
# Unicode 14 (Python 3.11's unicodedata).
_JSON_RAW = re.compile(f"[\x7f-\x9f\u2028\u2029{_FORMAT}{_JOINERS}\ud800-\udfff]")


def json_text(value: object, **options) -> str:
    """`value` as JSON text (`json.dumps` with non-ASCII text written as itself; `options` are
    json.dumps's: indent, default…) in which the characters that a terminal acts on or that reorder,
    split or hide text are `\\uXXXX` escapes (a surrogate pair beyond U+FFFF): DEL and C1 controls,
    format characters (bidirectional marks and overrides, zero-width characters, tag characters…),
    U+2028/U+2029, lone surrogates. The same JSON value for any reader; json.dumps already escapes
    C0 controls. Those characters can only be inside strings, where an escape is valid."""
    text = json.dumps(value, ensure_ascii=False, **options)
    return _JSON_RAW.sub(lambda found: json.dumps(found.group())[1:-1], text)


def chart_text(value: object) -> str:
    """Data text for any string field of a Plotly figure (trace name, category and tick, title,
    annotation, text, hover value): `<`, `>` and `&` as entities. Plotly renders those fields as a
    subset of HTML that keeps `<span style>` (a CSS `url()` makes the browser fetch another host)
    and `<a href>` links; entities it shows as the characters the user wrote. Quotes stay as they
    are (Plotly decodes no `&quot;`); bidirectional overrides are dropped (`page_text`)."""
    return html.escape(page_text("" if value is None else str(value)), quote=False)


def csv_row(row: dict) -> dict:
    """Every cell of a CSV row through `csv_cell`."""
    return {key: csv_cell(value) for key, value in row.items()}
