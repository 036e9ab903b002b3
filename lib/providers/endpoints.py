"""Endpoints: every model is an OpenAI-compatible endpoint described in TOML, never in code.

The shipped `endpoints.toml` holds presets; `endpoints.user.toml` beside it overrides or adds
entries field by field. Keys are looked up by the *name* of an environment variable (or a
`.streamlit/secrets.toml` entry) at call time and are never stored anywhere.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import threading
import time
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from db import config
from lib.files import (
    TOO_DEEP,
    TOO_LONG_NUMBER,
    InputFileError,
    OutputPathError,
    decode_text,
    deep_line,
    long_number_line,
    too_deep,
    write_text_atomic,
)
from lib.safety import clean_json, control_character, one_line_problem, one_line_text, strip_credentials

EMBEDDED = "embedded"
KINDS = ("hosted", "local", "embedded")
SYSTEM_ROLES = ("system", "developer", "user")
TOKEN_PARAMS = ("max_tokens", "max_completion_tokens")
FIELDS = {
    "name": str,
    "base_url": str,
    "model": str,
    "key_env": str,
    "kind": str,
    "system_prompt": str,
    "description": str,
    "timeout": (int, float),
    "max_retries": int,
    "params": dict,
    "quirks": dict,
    "prices": dict,
    "enabled": bool,
}
QUIRKS = {
    "system_role": str,
    "no_temperature": bool,
    "max_tokens_param": str,
    "reasoning_field": str,
    "think_tags": bool,
    "stream_usage": bool,
    "send_reasoning": bool,
}
# an id keys each answer's column (response.slot, 64 wide) and its judge's labels ("judge:ID")
MAX_ID_CHARS = 64
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*\Z")
PROBE_TTL_S = 5.0  # how long a local server's probe answer is trusted
PROBE_TIMEOUT_S = 0.3
_probes: dict[str, tuple[float, bool]] = {}  # base URL -> (when probed, alive)
_probes_lock = threading.Lock()
# the name of a variable that holds a key: never a Parallax setting or any other variable
KEY_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(_API_KEY|_KEY|_TOKEN)$", re.IGNORECASE)
MULTILINE = {"system_prompt", "description"}  # text fields that may hold tabs and line breaks
MAX_LENGTH = {"name": 200, "model": 200, "base_url": 2000, "key_env": 100}
PRICE_KEYS = ("input", "output")
MAX_PRICE = 10_000.0  # USD per million tokens: far above any real price, far below overflow
MAX_TIMEOUT_S = 86_400.0
MAX_RETRIES = 100
MAX_TEMPERATURE = 2.0  # the OpenAI protocol's range is 0 to 2 (the pages', the command line's, params')
# request fields the client sets itself: `params` may not override them (the model, the
# conversation, streaming and its usage report), nor ask for what it cannot read (several
# choices, tool or function calls instead of text)
RESERVED_PARAMS = (
    "model",
    "messages",
    "stream",
    "stream_options",
    "n",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
)
QUOTES = "\"'"  # TOML's basic and literal strings


MAX_PROBLEMS = 50  # entries with a problem named at once; the rest are counted


class EndpointConfigError(ValueError):
    """An endpoints file that cannot be used; the message names the file, line and problem.

    `problems` lists each problem found (one per entry that has one, in file order; one for a file
    that does not parse), each naming its file and line; the message is them, one per line."""

    def __init__(self, message: str = "", problems: list[str] | None = None):
        self.problems = list(problems) if problems else [message]
        super().__init__("\n".join(self.problems))


class UnknownEndpoint(KeyError):
    """A model id that no endpoints file defines."""

    def __init__(self, endpoint_id: str, known: list[str]):
        super().__init__(endpoint_id)
        self.endpoint_id, self.known = endpoint_id, known

    def __str__(self) -> str:
        return f"unknown model '{self.endpoint_id}'. Known: {', '.join(self.known)}"


@dataclass(frozen=True)
class Quirks:
    """How one provider departs from the plain OpenAI chat protocol."""

    system_role: str = "system"
    no_temperature: bool = False
    max_tokens_param: str = "max_tokens"
    reasoning_field: str | None = None
    think_tags: bool = False
    stream_usage: bool = True
    send_reasoning: bool = False


@dataclass(frozen=True)
class Endpoint:
    """One configured model behind an OpenAI-compatible API."""

    id: str
    name: str
    base_url: str
    model: str
    key_env: str = ""
    kind: str = "hosted"
    system_prompt: str = ""
    description: str = ""
    timeout: float = 60.0
    max_retries: int = 2
    params: dict = field(default_factory=dict)
    quirks: Quirks = field(default_factory=Quirks)
    prices: dict = field(default_factory=dict)
    source: str = ""

    @property
    def is_embedded(self) -> bool:
        """True for the built-in llama.cpp server."""
        return self.base_url == EMBEDDED

    @property
    def host(self) -> str:
        """The base URL's host (never its user:password@), the only part of the URL stored with a response."""
        url = strip_credentials(self.base_url)
        return EMBEDDED if self.is_embedded else (urlparse(url).netloc or url)

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """Cost in USD when the endpoint has prices and the token counts are known."""
        if not self.prices or input_tokens is None or output_tokens is None:
            return None
        return (
            input_tokens * self.prices.get("input", 0.0) + output_tokens * self.prices.get("output", 0.0)
        ) / 1_000_000


MAX_CHARS_SEARCHED = 100_000  # a longer file's problems are given at its entry's header line
MAX_VALUE_LINES = 40  # prefixes tried either way from a point inside a multi-line value


def _line_of(text: str, endpoint_id: str, *keys: str) -> int:
    """The line where `text` first defines the entry (no `keys`) or the value at `keys` inside it
    (("params", "temperature")), found by TOML itself: the first line after the longest prefix of
    the file that parses without it (so a `[endpoints.ID.params]` table, a dotted key, an inline
    entry, quoted or spaced names are all read as TOML reads them, and text inside a string is
    never taken for a key). A prefix that holds it stays so as lines are added, so the line is
    found by bisection (a few parses, not one per line). The entry's line when the key is not
    found; 1 when neither is."""
    lines = text.split("\n")
    if len(text) > MAX_CHARS_SEARCHED:
        return _header_line(text, endpoint_id)

    def parsed(count: int) -> dict | None:
        try:  # each prefix ends with its line break: a CRLF line's \r alone is no TOML
            return tomllib.loads("\n".join(lines[:count]) + "\n")
        except (ValueError, RecursionError):  # TOMLDecodeError is a ValueError: a value goes on
            return None

    def holds_from(count: int, path: tuple[str, ...]) -> bool:
        """Whether the nearest prefix of about `count` lines that parses holds `path`: the first
        at or after it, else the last before it (a prefix inside a multi-line value does not
        parse; one on the same side of every line defining `path` answers the same)."""
        for number in range(count, min(count + MAX_VALUE_LINES, len(lines)) + 1):
            if (data := parsed(number)) is not None:
                return _holds(data, ("endpoints", *path))
        for number in range(count - 1, max(count - MAX_VALUE_LINES, 0), -1):
            if (data := parsed(number)) is not None:
                return _holds(data, ("endpoints", *path))
        raise _TooLong

    for path in ((endpoint_id, *keys), (endpoint_id,)) if keys else ((endpoint_id,),):
        try:
            if not holds_from(len(lines), path):
                continue
            low, high = 1, len(lines)  # the first count from which the prefix holds `path`
            while low < high:
                middle = (low + high) // 2
                low, high = (low, middle) if holds_from(middle, path) else (middle + 1, high)
            return low
        except _TooLong:
            return _header_line(text, endpoint_id)
    return 1


class _TooLong(Exception):
    """A multi-line value too long to look past line by line (the header line is given)."""


def _holds(data: object, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def _header_line(text: str, endpoint_id: str) -> int:
    quoted_id = rf"\"?{re.escape(endpoint_id)}\"?"
    match = re.search(rf"^[ \t]*\[\s*endpoints\.{quoted_id}\s*\]", text, re.M) or re.search(
        rf"^[ \t]*(?:endpoints\.)?{quoted_id}\s*[=.]", text, re.M
    )
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _read_table(path: Path, text: str | None = None) -> tuple[dict, str]:
    if text is None:
        try:
            text = decode_text(path.read_bytes(), str(path))
        except InputFileError as exc:
            raise EndpointConfigError(str(exc)) from None
        except OSError as exc:
            raise EndpointConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # "Illegal character '\n' (at line 4, column 37)" as every other problem is written
        if found := re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", str(exc), re.S):
            what, line, column = found.groups()
            raise EndpointConfigError(f"{path}, line {line}: not valid TOML: {what} (column {column})") from None
        raise EndpointConfigError(f"{path}: not valid TOML: {exc}") from None
    except ValueError:  # an integer too long to read
        raise EndpointConfigError(f"{path}, line {long_number_line(text)}: {TOO_LONG_NUMBER}") from None
    except RecursionError:
        raise EndpointConfigError(f"{path}, line {deep_line(text, quotes=QUOTES)}: {TOO_DEEP}") from None
    if too_deep(data):
        raise EndpointConfigError(f"{path}, line {deep_line(text, quotes=QUOTES)}: {TOO_DEEP}")
    unknown_top = set(data) - {"endpoints"}
    if unknown_top:
        raise EndpointConfigError(
            f"{path}: unknown top-level key(s) {sorted(unknown_top)}; put entries under [endpoints.ID]"
        )
    table = data.get("endpoints", {})
    if not isinstance(table, dict):
        raise EndpointConfigError(f"{path}: 'endpoints' must be a table of [endpoints.ID] entries")
    return table, text


def id_problem(endpoint_id: str) -> str | None:
    """What is wrong with an endpoint id ("has an invalid id (…)", "has an id longer than 64
    characters"), or None."""
    if not ID_RE.match(endpoint_id):
        return "has an invalid id (letters, digits, '-', '_', '.', ':' only)"
    if len(endpoint_id) > MAX_ID_CHARS:
        return f"has an id longer than {MAX_ID_CHARS} characters"
    return None


def _check_entry(path: Path | None, text: str, endpoint_id: str, entry: object, partial: bool) -> None:
    """Raise EndpointConfigError naming every problem of one entry (its `problems`, one for each
    field that has one, in the entry's order): at its line of `path`, or, with no path (an entry
    from the Settings form, in no file yet), naming the endpoint. A field of the wrong type or an
    unknown one is named, and its value not checked further."""
    found: list[str] = []

    def fail(problem: str, *keys: str) -> None:
        if path is None:
            joint = " " if problem.startswith(("is ", "has ", "must ")) else ": "
            found.append(f"the endpoint '{endpoint_id}'{joint}{problem}")
        else:
            found.append(f"{path}, line {_line_of(text, endpoint_id, *keys)}: [endpoints.{endpoint_id}] {problem}")

    if problem := id_problem(endpoint_id):
        fail(problem)
    if not isinstance(entry, dict):
        fail("must be a table")
        raise EndpointConfigError(problems=found)
    typed = {}  # the known fields of the right type: those whose values are checked
    for key, value in entry.items():
        if key not in FIELDS:
            fail(f"has unknown field '{key}' (known: {', '.join(sorted(FIELDS))})", key)
        elif not isinstance(value, FIELDS[key]) or (FIELDS[key] is int and isinstance(value, bool)):
            fail(f"field '{key}' has the wrong type ({type(value).__name__})", key)
        else:
            typed[key] = value
    quirks = {}
    for key, value in typed.get("quirks", {}).items():
        if key not in QUIRKS:
            fail(f"has unknown quirk '{key}' (known: {', '.join(sorted(QUIRKS))})", "quirks", key)
        elif not isinstance(value, QUIRKS[key]):
            fail(f"has quirk '{key}' of the wrong type ({type(value).__name__})", "quirks", key)
        else:
            quirks[key] = value
    if quirks.get("system_role", "system") not in SYSTEM_ROLES:
        fail(
            f"has quirk system_role {quirks['system_role']!r}; it must be {_one_of(SYSTEM_ROLES)}",
            "quirks",
            "system_role",
        )
    if quirks.get("max_tokens_param", "max_tokens") not in TOKEN_PARAMS:
        fail(
            f"has quirk max_tokens_param {quirks['max_tokens_param']!r}; it must be {_one_of(TOKEN_PARAMS)}",
            "quirks",
            "max_tokens_param",
        )
    if typed.get("kind", "hosted") not in KINDS:
        fail(f"has kind {typed['kind']!r}; it must be {_one_of(KINDS)}", "kind")
    elif "kind" in typed and "base_url" in typed:  # both written here: they must agree
        if typed["base_url"] == EMBEDDED and typed["kind"] != EMBEDDED:
            fail(
                f"has kind {typed['kind']!r} with base_url \"embedded\" (the built-in server): its kind is 'embedded'",
                "kind",
            )
        if typed["kind"] == EMBEDDED and typed["base_url"] != EMBEDDED:
            fail(
                "has kind 'embedded' (the built-in server) with a base_url of its own: its kind is 'local' or "
                "'hosted', or its base_url is \"embedded\"",
                "kind",
            )
    if not partial:
        for required in ("base_url", "model"):
            if not entry.get(required):
                fail(f"is missing '{required}'")
    named: set[tuple[str, ...]] = set()
    for keys, problem in _value_problems(typed):  # the first problem of each value
        if keys not in named:
            named.add(keys)
            fail(problem, *keys)
    if found:
        raise EndpointConfigError(problems=found)


def shown_url(url: str) -> str:
    """`url` fit to show in a message: everything before its last @ (a user:password, even one
    holding / ? # or after a mistyped `https:/`) becomes ***@ behind the scheme, and a query or
    fragment becomes ?*** / #*** (`?key=…` carries a key for some providers); done on the text,
    so it works for URLs that do not parse."""
    shown = url
    if "@" in url:
        scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/{0,2}", url)
        shown = f"{scheme.group(0) if scheme else ''}***@{url.rsplit('@', 1)[1]}"
    return re.sub(r"([?#]).+", r"\1***", shown, count=1, flags=re.S)


def base_url_problem(base_url: str) -> str | None:
    """Why `base_url` cannot be used (not http(s) with a host and a valid port, not a URL at all,
    nor "embedded"), or None. The message never shows the URL's user:password."""
    if base_url == EMBEDDED:
        return None
    shown = shown_url(base_url)
    try:
        parsed = urlparse(base_url)
        host = parsed.hostname
    except ValueError as exc:  # "Invalid IPv6 URL" for an unclosed [ in the host
        return f"base_url is not a valid URL ({exc}): {shown!r}"
    if parsed.scheme not in ("http", "https") or not host:
        return f'base_url must be an http:// or https:// URL with a host (or "embedded"), not {shown!r}'
    try:
        parsed.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return f"base_url has an invalid port: {shown!r}"
    return None


def _non_finite(value: object) -> bool:
    """Whether a parsed TOML value holds a NaN or an infinity anywhere (JSON has neither)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def key_env_problem(key_env: str) -> str | None:
    """Why `key_env` cannot name a key variable, or None: it must end in _API_KEY, _KEY or _TOKEN
    and must not be a PARALLAX_ setting (the key is sent to the endpoint's server)."""
    if not key_env:
        return None
    if key_env.upper().startswith("PARALLAX_") or not KEY_ENV_RE.match(key_env):
        # what was written is not shown: the likeliest mistake is the key itself pasted here
        return (
            "key_env must name the environment variable that holds the key (not the key itself), "
            "ending in _API_KEY, _KEY or _TOKEN and not a PARALLAX_ setting; the value given is not "
            "shown, as it may be a key"
        )
    return None


_CREDENTIAL_NAME = re.compile(
    r"(?:api[-_]?key|apikey|key|secret|password|passwd|authorization|bearer|access[-_]token|auth[-_]token|token)"
    r"|.*[-_](?:api[-_]?key|secret|password)",
    re.I,
)
_CREDENTIAL_VALUE = re.compile(
    r"\s*(?:sk-|sk_live_|sk_test_|Bearer\s|ghp_|github_pat_|xox[abpr]-|AIza|hf_[A-Za-z0-9]{20})"
)


def _credential(key: object, value: object) -> bool:
    """Whether a params entry looks like a credential: by its name (api_key, token, secret…, not
    max_tokens or stop_token_ids) or by a value in a known key format (sk-…, Bearer …, hf_…)."""
    by_value = isinstance(value, str) and bool(_CREDENTIAL_VALUE.match(value))
    return bool(_CREDENTIAL_NAME.fullmatch(str(key))) or by_value


def _one_of(choices: tuple[str, ...]) -> str:
    """("a", "b", "c") as 'a', 'b' or 'c'."""
    quoted = [f"'{c}'" for c in choices]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def _value_problems(entry: dict):
    """Each problem with the values of one entry (text, URL, key variable, numbers; the first of
    each value) as (the keys of the value it is in, the problem)."""
    for key, value in entry.items():
        if isinstance(value, str):
            if key in ("name", "model") and (problem := one_line_problem(value)):
                # one cell of every table: "gpt\u200b-4o" would print as another endpoint's name
                yield (key,), f"field '{key}' contains {problem}"
            elif char := control_character(value, "\t\n\r" if key in MULTILINE else ""):
                yield (key,), f"field '{key}' contains a control character ({char})"
            elif len(value) > MAX_LENGTH.get(key, 100_000):
                yield (key,), f"field '{key}' is longer than {MAX_LENGTH.get(key, 100_000)} characters"
    if "base_url" in entry and (problem := base_url_problem(entry["base_url"])):
        yield ("base_url",), problem
    if problem := key_env_problem(entry.get("key_env", "")):
        yield ("key_env",), problem
    if "timeout" in entry and not 0 < entry["timeout"] <= MAX_TIMEOUT_S:
        yield (
            ("timeout",),
            f"timeout must be more than 0 seconds, at most {MAX_TIMEOUT_S:,.0f}, not {_as_toml(entry['timeout'])}",
        )
    if "max_retries" in entry and not 0 <= entry["max_retries"] <= MAX_RETRIES:
        yield (
            ("max_retries",),
            f"max_retries must be 0 or more, at most {MAX_RETRIES}, not {_as_toml(entry['max_retries'])}",
        )
    for key, price in entry.get("prices", {}).items():
        if key not in PRICE_KEYS:
            yield ("prices", key), f"prices has unknown key '{key}' (known: {', '.join(PRICE_KEYS)})"
        elif isinstance(price, bool) or not isinstance(price, (int, float)) or not 0 <= price <= MAX_PRICE:
            yield (
                ("prices", key),
                f"price '{key}' must be a number of USD per 1M tokens from 0 to {MAX_PRICE:,.0f}, "
                f"not {_as_toml(price)}",
            )
    params = entry.get("params", {})
    if reserved := [key for key in params if key in RESERVED_PARAMS]:
        yield (
            ("params", reserved[0]),
            (
                f"params may not set {', '.join(repr(k) for k in reserved)}: Parallax sets "
                f"{', '.join(RESERVED_PARAMS[:4])} itself and reads one streamed text answer "
                "(no n, tools or function calls)"
            ),
        )
    if fields := [key for key in params if key in FIELDS]:  # a TOML slip: the field written under [….params]
        yield (
            ("params", fields[0]),
            (
                f"params holds {fields[0]!r}, a field of the endpoint itself (it would be sent to the provider, "
                "not used): write it above the params table"
            ),
        )
    if credential := next((key for key, value in params.items() if _credential(key, value)), None):
        yield (
            ("params", credential),
            (
                f"params holds {credential!r}, which looks like a key (its value is not shown): a key is never "
                "written in an endpoints file (it would be stored with every answer); put it in an environment "
                "variable and name that in key_env"
            ),
        )
    if bad := [key for key, value in params.items() if _non_finite(value)]:
        yield ("params", bad[0]), f"params {bad[0]} holds nan or inf, which a JSON request cannot carry"
    temperature = params.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature <= MAX_TEMPERATURE
    ):
        yield (
            ("params", "temperature"),
            (f"params temperature must be a number from 0 to {MAX_TEMPERATURE:g}, not {_as_toml(temperature)}"),
        )
    for key in ("max_tokens", "max_completion_tokens"):
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**31 - 1):
            yield (
                ("params", key),
                f"params {key} must be a whole number from 1 to 2,147,483,647, not {_as_toml(value)}",
            )  # as --max-tokens


def _as_toml(value: object) -> str:
    """A value as TOML writes it, for a message: true, "1.5", 3 (Python would say True, '1.5')."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (bool, str)) else repr(value)


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _build(endpoint_id: str, entry: dict, source: str) -> Endpoint:
    # the base URL decides what is called (Endpoint.is_embedded): an override that gives a shipped
    # embedded endpoint a URL of its own keeps no 'embedded' kind, and "embedded" is always that kind
    kind = entry.get("kind") or "hosted"
    if entry["base_url"] == EMBEDDED:
        kind = EMBEDDED
    elif kind == EMBEDDED:
        kind = "local" if _loopback(urlparse(strip_credentials(entry["base_url"])).hostname or "") else "hosted"
    return Endpoint(
        id=endpoint_id,
        name=entry.get("name") or endpoint_id,
        base_url=entry["base_url"],
        model=entry["model"],
        key_env=entry.get("key_env", ""),
        kind=kind,
        system_prompt=entry.get("system_prompt", ""),
        description=entry.get("description", ""),
        timeout=float(entry.get("timeout", 60.0)),
        max_retries=int(entry.get("max_retries", 2)),
        params=dict(entry.get("params", {})),
        quirks=Quirks(**entry.get("quirks", {})),
        prices=dict(entry.get("prices", {})),
        source=source,
    )


def load_endpoints(path: Path | None = None, user_path: Path | None = None) -> dict[str, Endpoint]:
    """All enabled endpoints, shipped presets merged with the user's file, in file order."""
    user_path = user_path or config.user_endpoints_file()
    return _load(path, user_path, None)


def _load(path: Path | None, user_path: Path, user_text: str | None) -> dict[str, Endpoint]:
    """Load the shipped file and the user's file (or `user_text`, what it would become)."""
    path = path or config.endpoints_file()
    if not path.exists():
        raise EndpointConfigError(f"{path}: the endpoints file is missing")
    problems: list[str] = []  # every entry's first problem, each file's in its order: one reading fixes all
    unchecked = 0  # entries left once MAX_PROBLEMS are named (finding each one's line costs a parse)

    def checked(file: Path, text: str, endpoint_id: str, entry: object, partial: bool) -> bool:
        nonlocal unchecked
        if len(problems) >= MAX_PROBLEMS:
            unchecked += 1
            return False
        try:
            _check_entry(file, text, endpoint_id, entry, partial)
        except EndpointConfigError as exc:
            problems.extend(exc.problems)
            return False
        return True

    shipped, text = _read_table(path)
    entries = {
        eid: (entry, "shipped") for eid, entry in shipped.items() if checked(path, text, eid, entry, partial=False)
    }
    if user_text is None and not user_path.exists() and user_path.is_symlink():  # read as "no file" before
        try:  # the end of a chain of links, one line (a file name may hold a line break)
            what = f"a link to {one_line_text(str(user_path.resolve()))!r}, which does not exist"
        except (RuntimeError, OSError):
            what = "a link in a loop (it leads back to itself)"
        fix = "remove the link" if "loop" in what else "remove the link, or make the file it names"
        problems.append(f"{user_path}: {what} ({fix})")
    user: dict = {}
    if user_text is not None or user_path.exists():
        try:
            user, user_text = _read_table(user_path, user_text)
        except EndpointConfigError as exc:  # a file that does not parse, named beside the other's problems
            problems.extend(exc.problems)
        for endpoint_id, entry in user.items():
            base = entries.get(endpoint_id)
            if base is None and endpoint_id in shipped:  # its shipped entry has a problem, already named
                continue
            if not checked(user_path, user_text, endpoint_id, entry, partial=base is not None):
                continue
            if base is not None:
                entries[endpoint_id] = (_merge(base[0], entry), "user override")
            else:
                entries[endpoint_id] = (entry, "user")
    if problems:
        if unchecked:
            from lib.present import plural

            problems.append(f"… and {plural(unchecked, 'more entry', 'more entries')} not checked (fix these first)")
        raise EndpointConfigError(problems=problems)
    return {eid: _build(eid, entry, source) for eid, (entry, source) in entries.items() if entry.get("enabled", True)}


def endpoint_ids(path: Path | None = None, user_path: Path | None = None) -> set[str]:
    """Every id the endpoints files define, disabled ones (`enabled = false`) included: the ids a
    new entry would override rather than add. Raises EndpointConfigError as load_endpoints does."""
    path, user_path = path or config.endpoints_file(), user_path or config.user_endpoints_file()
    ids = set(_read_table(path)[0])
    if user_path.exists():
        ids |= set(_read_table(user_path)[0])
    return ids


def resolve(endpoints: dict[str, Endpoint], ids: list[str]) -> list[Endpoint]:
    """The endpoints named by `ids`, in order; raises UnknownEndpoint for the first unknown id."""
    for endpoint_id in ids:
        if endpoint_id not in endpoints:
            raise UnknownEndpoint(endpoint_id, list(endpoints))
    return [endpoints[i] for i in ids]


def _secret(name: str) -> str | None:
    path = config.secrets_file()
    if not path.exists():
        return None
    try:
        value = tomllib.loads(path.read_text(encoding="utf-8")).get(name)
    except (ValueError, OSError, RecursionError):  # TOMLDecodeError is a ValueError
        return None
    return value if isinstance(value, str) and value else None


def where_keys_go(key_env: str) -> str:
    """How to give a key: "set the environment variable X (or write X = "…" in SECRETS)", naming
    the secrets file Parallax reads (PARALLAX_SECRETS, else .streamlit/secrets.toml)."""
    return f'set the environment variable {key_env} (or write {key_env} = "…" in {config.secrets_file()})'


def api_key(endpoint: Endpoint) -> str | None:
    """The endpoint's key from its environment variable or Streamlit secret; None if unset.

    Endpoints that need no key (local and embedded servers) get a placeholder string, since the
    client insists on one."""
    if not endpoint.key_env:
        return "not-needed"
    return os.environ.get(endpoint.key_env) or _secret(endpoint.key_env)


def key_is_set(endpoint: Endpoint) -> bool:
    """Whether the endpoint's key can be found (never says what it is)."""
    return api_key(endpoint) is not None


@dataclass(frozen=True)
class KeyDestination:
    """Where a saved endpoint would send a key: the variable that holds it and the server's host."""

    key_env: str
    host: str

    def __str__(self) -> str:
        return f"the key in {self.key_env} would be sent to {self.host}"


class NeedsConfirmation(EndpointConfigError):
    """The change sends a key somewhere it was not sent before; save again with `confirm`."""

    def __init__(self, destination: KeyDestination):
        super().__init__(f"{destination}: confirm that you trust this server with that key")
        self.destination = destination


def key_destination_change(current: Endpoint | None, entry: dict) -> KeyDestination | None:
    """The new (key variable, destination) pairing when saving `entry` over `current` (None: a
    new endpoint) sends a key somewhere it did not go to before, else None. The destination is
    the host as it is reached — the same host over plain http is another destination (the key
    would travel unencrypted), and a host written in another script is shown as the ASCII name
    DNS resolves (аpi.openai.com with a Cyrillic а is xn--pi-7lc.openai.com)."""
    key_env, base_url = entry.get("key_env") or "", entry.get("base_url") or ""
    if not key_env or base_url == EMBEDDED:
        return None
    destination = _destination(base_url)
    if current is not None and current.key_env == key_env and _destination(current.base_url) == destination:
        return None
    return KeyDestination(key_env, destination)


def _destination(base_url: str) -> str:
    """Where `base_url` sends a request: its host (lower case, as DNS reads it; with its ASCII
    form beside a name in another script), and 'over plain http' unless it is https."""
    parsed = urlparse(strip_credentials(base_url))
    host = (parsed.netloc or shown_url(base_url)).lower()
    if not host.isascii():
        try:
            ascii_form = host.encode("idna").decode("ascii")
        except UnicodeError:
            ascii_form = host.encode("ascii", "backslashreplace").decode("ascii")
        host = f"{host} ({ascii_form})"
    if parsed.scheme == "https" or _loopback(parsed.hostname or ""):  # loopback never leaves the machine
        return host
    return f"{host} over plain http (unencrypted)"


def _loopback(hostname: str) -> bool:
    if hostname.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def user_endpoints_path() -> Path:
    """The user's endpoints file, where `save_user_endpoint` writes (PARALLAX_USER_ENDPOINTS, by
    default endpoints.user.toml beside the shipped file)."""
    return config.user_endpoints_file()


def save_user_endpoint(
    endpoint_id: str,
    entry: dict,
    user_path: Path | None = None,
    *,
    confirm: KeyDestination | None = None,
    path: Path | None = None,
) -> Path:
    """Add or replace one entry in the user's endpoints file, keeping the others.

    The would-be file is parsed and the whole configuration loaded from it before the file is
    replaced (in one step), so nothing the app cannot read is ever written: EndpointConfigError
    names the problem. When the change sends a key to a new host, NeedsConfirmation unless
    `confirm` is that same KeyDestination."""
    user_path = user_path or user_endpoints_path()
    current_endpoints = _load(path, user_path, None)
    current: dict = _read_table(user_path)[0] if user_path.exists() else {}
    clean = {k: v for k, v in entry.items() if v not in (None, "", {})}
    _check_entry(None, "", endpoint_id, clean, partial=False)  # control characters are refused…
    clean = clean_json(clean)  # …and lone surrogates become U+FFFD
    current[endpoint_id] = clean
    text = dump_toml({"endpoints": current})
    would_be = _load(path, user_path, text)  # the would-be file must load, merged with the shipped one
    # the key goes where the merged endpoint sends it: an override that gives only a base_url
    # keeps the shipped key_env (DEEPSEEK_API_KEY to any host, unconfirmed, when only the form's
    # fields were read)
    new = would_be.get(endpoint_id)
    merged = {"key_env": new.key_env, "base_url": new.base_url} if new is not None else {}
    change = key_destination_change(current_endpoints.get(endpoint_id), merged)
    if change is not None and change != confirm:
        raise NeedsConfirmation(change)
    # a link (a dotfiles folder) is kept: the file it names is replaced, whole, in its own folder
    target = user_path.resolve() if user_path.is_symlink() else user_path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder of the path should be; no permission
        why = exc.strerror or type(exc).__name__
        raise EndpointConfigError(
            f"{target}: its folder cannot be made ({why}: {exc.filename}); nothing was saved"
        ) from None
    try:
        return write_text_atomic(target, text)
    except OutputPathError as exc:
        raise EndpointConfigError(str(exc)) from None


_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if _is_control(c) else c) for c in value) + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    return key if re.match(r"^[A-Za-z0-9_-]+$", key) else _toml_value(key)


def dump_toml(data: dict) -> str:
    """Write the small subset of TOML our endpoint files use ([endpoints.ID] tables)."""
    lines = ["# Your endpoints: overrides and additions to endpoints.toml (written by Parallax).", ""]
    for endpoint_id, entry in data.get("endpoints", {}).items():
        lines.append(f"[endpoints.{_toml_key(endpoint_id)}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items()]
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class EndpointState:
    """Whether an endpoint can be called now, and if not, what to do about it."""

    ready: bool
    status: str  # ready | key missing | server down | starts on first use | unavailable
    detail: str = ""


def endpoint_state(endpoint: Endpoint, probe: bool = True) -> EndpointState:
    """The endpoint's availability; `probe` checks local servers over loopback (fast)."""
    from lib.providers import local_server

    if endpoint.is_embedded:
        try:
            local_server.model_path()
        except local_server.LocalModelUnavailable as exc:
            return EndpointState(False, "unavailable", str(exc))
        url = local_server.running_url() if probe else None
        if url:
            return EndpointState(True, "ready", f"embedded server at {url}")
        return EndpointState(True, "starts on first use", "the embedded server starts when first asked")
    if not key_is_set(endpoint):
        return EndpointState(False, "key missing", f"set {endpoint.key_env}")
    if endpoint.kind == "local" and probe and not probe_local(endpoint.base_url):
        return EndpointState(False, "server down", f"nothing answers at {shown_url(endpoint.base_url)}")
    return EndpointState(True, "ready", "")


def probe_local(base_url: str) -> bool:
    """Whether a local server answers GET /models now; one probe per URL per PROBE_TTL_S seconds
    (pages ask on every rerun, and a server that is down costs up to PROBE_TIMEOUT_S)."""
    from lib.providers import local_server

    with _probes_lock:
        found = _probes.get(base_url)
    if found is not None and time.monotonic() - found[0] < PROBE_TTL_S:
        return found[1]
    alive = local_server.is_alive(base_url, timeout=PROBE_TIMEOUT_S)
    with _probes_lock:
        _probes[base_url] = (time.monotonic(), alive)
    return alive


def forget_probes() -> None:
    """Drop cached probe answers (after the user edits the endpoints, and in tests)."""
    with _probes_lock:
        _probes.clear()
