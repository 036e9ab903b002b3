"""Probe suites: named, versioned prompt sets in YAML or JSONL, validated completely (with line
numbers) before anything is written.

A prompt has an id, text, language (en | zh), topic, kind (probe | control | general), an
optional `twin` (the same prompt in the other language) and an optional `control` (a matched
neutral question). YAML files may also list compact `probes`, each expanding to four prompts:
ID-en and ID-zh (twins), and ID-control-en and ID-control-zh as their controls.

Plain prompt lists, the way people keep probe lists, are suites too, named after the file: a
.txt file (one prompt per line, blank lines skipped) and a .csv file (a `prompt` or `text`
column; optional `id`, `language`, `topic` (or `subject`, `category`) and `kind`). What they
leave out is filled in: ids are numbers in file order, the language is detected, the topic is
the file's name and the kind is probe."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from sqlalchemy.orm import Session

from db import config, suites
from db.engine import session_scope
from db.models import Suite, SuitePrompt
from db.vocab import LANGUAGES
from lib.files import (
    MAX_DEPTH,
    NEWLINE,
    TOO_DEEP,
    TOO_LONG_NUMBER,
    InputFileError,
    LineIndex,
    decode_lenient,
    iter_jsonl,
    long_number_line,
    name_from_file,
    read_csv,
    read_text_lenient,
)
from lib.safety import control_character, one_line_name, one_line_problem, one_line_text, unicode_json, valid_unicode

BUILTIN_DIR = config.ROOT / "suites"
_UNREAD_ID = re.compile(r'"id"\s*:\s*"([^"\\]{1,100})"')  # the id a JSONL line that is not JSON seems to give
KINDS = ("probe", "control", "general")
LIST_DESCRIPTION = "prompts of "  # a .txt or .csv list's description: this and its file's name
MAX_TOPIC_CHARS, MAX_VERSION_CHARS = 100, 32  # the widths of suite_prompt.topic and suite.version
MAX_ID_CHARS = 100  # of suite_prompt.key
ID_RULE = "ASCII letters, digits and _.:- only, starting with a letter or digit, at most 100 characters"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}\Z")  # \Z: "$" would let a line break end it
PROMPT_FIELDS = {"id", "text", "language", "topic", "kind", "twin", "control"}
PROBE_FIELDS = {"id", "topic", "en", "zh", "control"}
SUITE_FIELDS = {"name", "version", "description", "prompts", "probes"}  # a YAML file's top level
HEADER_FIELDS = {"name", "version", "description"}  # a JSONL file's header row


class _Mark:
    """A key no YAML or JSON file can write (not a string): where the loader keeps an entry's
    line and its fields' lines, so a file's own `__line__` key is an unknown field, not a line."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


LINE, LINES, RAW = _Mark("line"), _Mark("lines"), _Mark("raw")
SUFFIXES = (".yaml", ".yml", ".jsonl", ".txt", ".csv")
CSV_COLUMNS = {"prompt": "text", "text": "text", "id": "id", "language": "language", "topic": "topic"}
CSV_COLUMNS |= {"subject": "topic", "category": "topic", "kind": "kind", "twin": "twin", "control": "control"}


LINE_FIELDS = ("line", "twin_line", "control_line")  # where a prompt was written: not part of its content


class SuiteError(ValueError):
    """A suite file that cannot be used; `problems` lists every line-numbered problem."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else ""))
        self.problems = problems


@dataclass
class PromptDef:
    """One prompt of a suite file, with the line it came from."""

    key: str
    text: str
    language: str
    topic: str
    kind: str = "probe"
    twin_key: str | None = None
    control_key: str | None = None
    line: int = 0
    twin_line: int = 0  # the line of its `twin:` / `control:` field where the file has one (0: `line`)
    control_line: int = 0


@dataclass
class SuiteDef:
    """A parsed, validated suite."""

    name: str
    version: str
    description: str
    prompts: list[PromptDef]
    warnings: list[str] = field(default_factory=list)  # bytes that were not UTF-8 (replaced by U+FFFD)

    def digest(self) -> str:
        """A hash of the content, to tell a re-import from a changed file."""
        body = json.dumps(
            [{k: v for k, v in asdict(p).items() if k not in LINE_FIELDS} for p in self.prompts],
            ensure_ascii=False,
            sort_keys=True,
        )
        return hashlib.sha256(f"{self.description}\x00{body}".encode()).hexdigest()


class _Refused(yaml.MarkedYAMLError):
    """YAML this loader will not build: an alias, or nodes nested more than MAX_DEPTH levels."""


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that records each mapping's line under LINE (its fields' under LINES) and refuses what a prompt
    list never needs but an attacker does: aliases (`*name`, also `<<: *name` merges: nested
    aliases expand exponentially, "billion laughs") and nodes nested more than MAX_DEPTH levels
    (the composer recurses once per level). Both raise _Refused with the line."""

    depth = 0

    def __init__(self, stream: str):
        super().__init__(stream)
        self.lines = LineIndex(stream)  # PyYAML's own line numbers also break at U+2028, U+0085…

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            problem = f"aliases (*{event.anchor}) are not allowed in suite files; write the value out"
            raise _Refused(None, None, problem, event.start_mark)
        if self.depth >= MAX_DEPTH:
            raise _Refused(None, None, TOO_DEEP, event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:  # PyYAML keeps the last of two equal keys, silently
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key is not None and key in seen:
            problem = f"{key!r} is given twice in one entry (the second would silently win); keep one"
            raise _Refused(None, None, problem, key_node.start_mark)
        seen.add(key)
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
    lines = {}  # each field's own line, for its problems (the constructed key: 1 for "1")
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            key = loader.construct_object(key_node)
            if isinstance(key, Hashable):
                lines.setdefault(key, loader.lines.line(key_node.start_mark.index))
    # a scalar value as written: a version 1.10 is not the float 1.1, a description `yes` not True
    raw = {
        key_node.value: value_node.value
        for key_node, value_node in node.value
        if isinstance(key_node, yaml.ScalarNode) and isinstance(value_node, yaml.ScalarNode)
    }
    mapping[LINE], mapping[LINES], mapping[RAW] = loader.lines.line(node.start_mark.index), lines, raw
    return mapping


def _at(item: object, field: object, line: object) -> object:
    """The line of `field` in a YAML mapping (recorded by the loader), else `line` (the entry's:
    a JSONL row or a flow-style entry is one line)."""
    lines = item.get(LINES) if isinstance(item, dict) else None
    return lines.get(field, line) if isinstance(lines, dict) else line


def _line_of(item: object, default: object = 0) -> object:
    return item.get(LINE, default) if isinstance(item, dict) else default


def _plain(value: object) -> object:
    """A parsed value as the file wrote it, for a message: without the loader's line marks."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not isinstance(k, _Mark)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _text(value: object) -> str:
    """A value as text for an id or a message (a mapping without the loader's marks)."""
    return str(_plain(value))


def _field_name(key: object) -> str:
    """A field's name for a message: as written when it is one printable line of at most 40
    characters, else quoted with its escapes and cut (a name can hold a line break that would
    forge a line of output)."""
    text = str(key)
    return text if text.isprintable() and len(text) <= 40 else f"{text[:40]!r}"


def _header(data: dict, line: int, where: str, problems: list[str]) -> dict[str, tuple[str | None, object]]:
    """A suite's name, version and description as (text or None when absent, line): each must be
    text or a number, read as written (YAML's `1.10` is '1.10', `yes` is 'yes'; null is absent);
    anything else is a problem naming it."""
    raw = data.get(RAW) if isinstance(data.get(RAW), dict) else {}
    found: dict[str, tuple[str | None, object]] = {}
    for key in ("name", "version", "description"):
        value, at = data.get(key), _at(data, key, line)
        if value is not None and (
            isinstance(value, bool) and key not in raw or not isinstance(value, (str, int, float))
        ):
            problems.append(f"{where}:{at}: '{key}' must be text, not {type(value).__name__}")
            value = None
        elif value is not None and not isinstance(value, str):
            value = raw.get(key, value)
        found[key] = (None if value is None else str(value), at)
    return found


def _unknown(item: dict, known: set, line: object, where: str, problems: list[str], what: str = "") -> None:
    """A problem at the first unknown field's line naming every field of `item` not in `known`
    ("zn" for "zh" would drop a text in silence)."""
    unknown = [k for k in item if not isinstance(k, _Mark) and k not in known]
    if unknown:
        lines = [at for k in unknown if isinstance(at := _at(item, k, line), int)]
        first = min(lines) if lines else line
        shown = sorted({_field_name(k) for k in unknown})
        names = ", ".join(shown[:10]) + (f" and {len(shown) - 10:,} more" if len(shown) > 10 else "")
        problems.append(f"{where}:{first}: {what}unknown field(s) {names} (known: {', '.join(sorted(known))})")


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _no_controls(text: str, what: str, where: str, problems: list[str], allowed: str = "\t\n\r") -> None:
    """A problem naming `what` and the character when `text` holds a control character (an escape
    sequence, a bell…: it would reach models and terminals) not in `allowed`; tabs and line
    breaks are text in a prompt, none is allowed in a topic (a one-line label in tables)."""
    char = control_character(text, allowed) if allowed else None
    if problem := (one_line_problem(text) if not allowed else char and f"a control character ({char})"):
        problems.append(f"{where}: {what} contains {problem}; remove it")


def _no_raw_controls(text: str, where: str) -> None:
    """SuiteError naming the line and the character when a YAML file's text holds a control
    character written as it is (NUL, ESC…): YAML allows none, and PyYAML's error gives no line."""
    for number, line in enumerate(NEWLINE.split(text), start=1):
        if char := control_character(line):
            raise SuiteError([f"{where}:{number}: contains a control character ({char}); remove it"])


def _topic(topic: object, what: str, where: str, problems: list[str]) -> str:
    """A prompt's or probe's topic as stored: in one spelling (`one_line_name`: "台湾\u00a0历史" is
    "台湾 历史"); "" with a problem when it is missing, not one line, or wider than its column
    (PostgreSQL refuses a longer one)."""
    if not isinstance(topic, str) or not topic.strip():
        problems.append(f"{where}: {what} needs a topic")
    elif len(one_line_name(topic)) > MAX_TOPIC_CHARS:
        problems.append(f"{where}: the topic of {what} is longer than {MAX_TOPIC_CHARS} characters")
    else:
        _no_controls(topic, f"the topic of {what}", where, problems, allowed="")
        return one_line_name(topic)
    return ""


def _prompt(item: object, line: int, problems: list[str], where: str, limit: int) -> PromptDef | None:
    if not isinstance(item, dict):
        problems.append(f"{where}:{line}: each prompt must be a mapping/object")
        return None
    _unknown(item, PROMPT_FIELDS, line, where, problems)
    key, text = _text(item.get("id") or ""), item.get("text")
    if not ID_RE.match(key):
        problems.append(f"{where}:{_at(item, 'id', line)}: missing or invalid id {key!r} ({ID_RULE})")
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{where}:{_at(item, 'text', line)}: prompt {key!r} has no text")
    elif len(text) > limit:  # the limit every prompt has (a typed one too): runs send these as they are
        problems.append(
            f"{where}:{_at(item, 'text', line)}: prompt {key!r} is {len(text):,} characters; the limit is {limit:,} "
            "(PARALLAX_MAX_PROMPT_CHARS)"
        )
    else:
        _no_controls(text, f"prompt {key!r}", f"{where}:{_at(item, 'text', line)}", problems)
    language = item.get("language")
    if language not in LANGUAGES:
        problems.append(
            f"{where}:{_at(item, 'language', line)}: prompt {key!r} "
            + (
                f"language must be en or zh, not {_plain(language)!r:.40}"
                if language is not None
                else "has no language (en or zh)"
            )
        )
    kind = item.get("kind", "probe")
    if kind not in KINDS:
        problems.append(
            f"{where}:{_at(item, 'kind', line)}: prompt {key!r} kind must be one of {', '.join(KINDS)}, "
            f"not {_plain(kind)!r:.40}"
        )
    topic = _topic(item.get("topic"), f"prompt {key!r}", f"{where}:{_at(item, 'topic', line)}", problems)
    for link in ("twin", "control"):
        if isinstance(item.get(link), int) and not isinstance(item[link], bool):  # `twin: 2`, as `id: 2` is read
            item = {**item, link: str(item[link])}
        if item.get(link) is not None and not isinstance(item[link], str):
            at = _at(item, link, line)
            problems.append(f"{where}:{at}: prompt {key!r} {link} must be a prompt id, not {_plain(item[link])!r:.40}")
            item = {**item, link: None}
    return PromptDef(
        key,
        text if isinstance(text, str) else "",
        str(language),
        topic,
        str(kind),
        item.get("twin") or None,
        item.get("control") or None,
        line,
        _at(item, "twin", line) if item.get("twin") else 0,
        _at(item, "control", line) if item.get("control") else 0,
    )


def _expand_probe(item: object, problems: list[str], where: str, limit: int) -> list[PromptDef]:
    if not isinstance(item, dict):
        problems.append(f"{where}: each probe must be a mapping")
        return []
    line, key = _line_of(item), _text(item.get("id") or "")
    _unknown(item, PROBE_FIELDS, line, where, problems, f"probe {key!r} has " if key else "")
    if not ID_RE.match(key):
        problems.append(f"{where}:{line}: probe has a missing or invalid id {key!r} ({ID_RULE})")
        return []
    if len(f"{key}-control-en") > MAX_ID_CHARS:  # the longest id it expands into
        problems.append(
            f"{where}:{line}: probe id {key!r} is longer than {MAX_ID_CHARS - len('-control-en')} characters "
            "(its prompts are ID-en … ID-control-zh)"
        )
        return []
    topic = _topic(item.get("topic"), f"probe {key!r}", f"{where}:{_at(item, 'topic', line)}", problems)
    control = item.get("control") or {}
    if not isinstance(control, dict):
        problems.append(f"{where}:{_at(item, 'control', line)}: probe {key!r} control must be a mapping of en/zh texts")
        control = {}
    _unknown(control, set(LANGUAGES), _at(item, "control", line), where, problems, f"probe {key!r} control has ")
    texts = [(item, lang, _at(item, lang, line)) for lang in LANGUAGES]
    texts += [(control, lang, _at(control, lang, _at(item, "control", line))) for lang in LANGUAGES]
    for mapping, lang, at in texts:
        text = mapping.get(lang)
        if text is not None and not isinstance(text, str):
            problems.append(f"{where}:{at}: probe {key!r} texts must be text, not {type(text).__name__}")
            return []
        _no_controls(text or "", f"probe {key!r}", f"{where}:{at}", problems)
        if text and len(text) > limit:
            problems.append(
                f"{where}:{at}: probe {key!r} has a text of {len(text):,} characters; the limit is {limit:,} "
                "(PARALLAX_MAX_PROMPT_CHARS)"
            )
    langs = [lang for lang in LANGUAGES if item.get(lang)]
    if not langs:
        problems.append(f"{where}:{line}: probe {key!r} needs an 'en' and/or 'zh' text")
    out = []
    for lang in langs:
        twin = next((f"{key}-{other}" for other in LANGUAGES if other != lang and item.get(other)), None)
        has_control = isinstance(control, dict) and control.get(lang)
        out.append(
            PromptDef(
                f"{key}-{lang}",
                str(item[lang]),
                lang,
                topic,
                "probe",
                twin,
                f"{key}-control-{lang}" if has_control else None,
                line,
            )
        )
        if has_control:
            control_twin = next((f"{key}-control-{o}" for o in LANGUAGES if o != lang and control.get(o)), None)
            out.append(
                PromptDef(
                    f"{key}-control-{lang}",
                    str(control[lang]),
                    lang,
                    topic,
                    "control",
                    control_twin,
                    None,
                    _line_of(control, line),
                )
            )
    return out


def _in_line_order(problems: list[str], where: str) -> list[str]:
    """Problems sorted by their line (stable: one line's in the order found)."""

    def line(problem: str) -> int:
        number = problem[len(where) + 1 :].split(":", 1)[0]
        return int(number) if problem.startswith(f"{where}:") and number.isdigit() else 0

    return sorted(problems, key=line)


def _check_links(prompts: list[PromptDef], problems: list[str], where: str, unread: set[str] = frozenset()) -> None:
    """Duplicate ids and texts, and twins and controls that name no prompt (or a wrong one): a
    link to an id in `unread` (a line that could not be read, already named) is not named again."""
    seen: dict[str, int] = {}
    texts: dict[tuple[str, str], PromptDef] = {}  # the same question twice would count twice in every rate
    for p in prompts:
        if p.key in seen:
            problems.append(f"{where}:{p.line}: duplicate id {p.key!r} (first at line {seen[p.key]})")
        else:
            seen[p.key] = p.line
        same = texts.setdefault((p.text.strip(), p.language), p)
        if same is not p:
            problems.append(
                f"{where}:{p.line}: prompt {p.key!r} repeats the text of prompt {same.key!r} (line {same.line}); "
                "remove one"
            )
    by_key = {p.key: p for p in prompts}
    for p in prompts:
        twin_at, control_at = p.twin_line or p.line, p.control_line or p.line
        if p.twin_key and p.twin_key not in by_key:
            if p.twin_key not in unread:
                problems.append(f"{where}:{twin_at}: prompt {p.key!r} names twin {p.twin_key!r}, which does not exist")
        elif p.twin_key and by_key[p.twin_key].language == p.language:
            problems.append(f"{where}:{twin_at}: prompt {p.key!r} and its twin {p.twin_key!r} are both {p.language}")
        if p.control_key and p.control_key not in by_key:
            if p.control_key not in unread:
                problems.append(
                    f"{where}:{control_at}: prompt {p.key!r} names control {p.control_key!r}, which does not exist"
                )
        elif p.control_key == p.key:
            problems.append(f"{where}:{control_at}: prompt {p.key!r} cannot be its own control")


def _list_items(text: str, filename: str, problems: list[str]) -> list[tuple[int, dict]]:
    """(line, prompt fields) from a .txt prompt list or a .csv table, defaults filled in."""
    where = Path(filename).name
    stem = one_line_name(one_line_text(Path(filename).stem))[:MAX_TOPIC_CHARS] or "prompts"  # the default topic
    items: list[tuple[int, dict]] = []
    if filename.lower().endswith(".txt"):
        # lines as an editor numbers them: a U+2028 or form feed inside a prompt does not split it
        lines = NEWLINE.split(text)
        items = [(n, {"text": line.strip()}) for n, line in enumerate(lines, start=1) if line.strip()]
    else:
        columns, rows = read_csv(text)
        header = {str(c).strip().lower() for c in columns}
        if not header & {"prompt", "text"}:
            problems.append(
                f"{where}:1: a CSV suite needs a 'prompt' or 'text' column (found: {', '.join(sorted(header))})"
            )
            return []
        for start, row, problem in rows:
            if problem:
                problems.append(f"{where}:{start}: {problem}")
                continue
            fields = {}
            for column, value in row.items():
                name = CSV_COLUMNS.get(str(column).strip().lower())
                if name and value and value.strip() and name not in fields:
                    fields[name] = value.strip() if name != "text" else value
            items.append((start, fields))
    width = len(str(len(items)))
    for number, (_, fields) in enumerate(items, start=1):
        fields.setdefault("id", f"{number:0{width}d}")
        if "language" not in fields and isinstance(fields.get("text"), str):
            from lib.providers.chat import detect_language

            fields["language"] = detect_language(fields["text"])
        fields.setdefault("topic", stem)
        fields.setdefault("kind", "probe")
    return items


def _listed(data: dict, key: str, problems: list[str], where: str) -> list:
    """data[key] when it is a list (or absent: []); a problem naming the key otherwise."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{where}:{_at(data, key, 1)}: '{key}' must be a list of entries, not {_plain(value)!r:.40}")
        return []
    return value


def parse_suite(text: str, filename: str = "suite.yaml", version_asked: str | None = None) -> SuiteDef:
    """Parse and fully validate a suite file's text; raises SuiteError listing every problem.
    `version_asked` is the version to store it under where the file gives none (a .txt or .csv
    list never does; "1" when neither does); a file that gives another is a problem."""
    problems: list[str] = []
    where, limit = Path(filename).name, config.max_prompt_chars()
    prompts: list[PromptDef] = []
    is_list = filename.lower().endswith((".txt", ".csv"))
    name = name_from_file(Path(filename).stem, "prompts" if is_list else "suite", limit=100)
    stated, description, header = None, "", 1  # the version the file gives, if any
    description_at = name_at = 1  # the lines of the description and the name, where a file has them
    unread: set[str] = set()  # ids on JSONL lines that could not be read
    raw: list[str] = []
    if is_list:
        description = LIST_DESCRIPTION + one_line_text(where)
        for number, item in _list_items(text, filename, problems):
            if (prompt := _prompt(item, number, problems, where, limit)) is not None:
                prompts.append(prompt)
    elif filename.lower().endswith(".jsonl"):
        header_row = 0
        for number, item, problem in iter_jsonl(text):
            if problem:
                problems.append(f"{where}:{number}: {problem}")
                raw = raw or NEWLINE.split(valid_unicode(text).removeprefix("\ufeff"))  # as iter_jsonl numbers them
                if found := _UNREAD_ID.search(raw[number - 1]):  # a twin naming it is not "missing" too
                    unread.add(found.group(1))
                continue
            if isinstance(item, dict) and "name" in item and "text" not in item:
                if header_row:
                    problems.append(f"{where}:{number}: a second header row (the first is at line {header_row})")
                    continue
                header_row = number
                _unknown(item, HEADER_FIELDS, number, where, problems, "the header row has ")
                given = _header(item, number, where, problems)
                name = given["name"][0] or name
                stated, description = given["version"][0], given["description"][0] or ""
                header = description_at = name_at = number
                continue
            if (prompt := _prompt(item, number, problems, where, limit)) is not None:
                prompts.append(prompt)
    else:
        _no_raw_controls(text, where)  # YAML refuses them too, but without naming the line
        loaded = valid_unicode(text)
        lines = LineIndex(loaded)  # PyYAML's marks count U+2028 and U+0085 as line breaks; editors do not
        try:
            data = unicode_json(yaml.load(loaded, Loader=_LineLoader))  # noqa: S506 - a SafeLoader subclass
        except _Refused as exc:
            raise SuiteError([f"{where}:{lines.line(exc.problem_mark.index)}: {exc.problem}"]) from None
        except RecursionError:  # a backstop: the loader refuses deep nesting before this
            raise SuiteError([f"{where}:1: {TOO_DEEP}"]) from None
        except ValueError:  # an integer of more than 4,300 digits
            raise SuiteError([f"{where}:{long_number_line(text)}: {TOO_LONG_NUMBER}"]) from None
        except yaml.reader.ReaderError as exc:  # a character YAML does not allow (U+FFFE…)
            char = exc.character if isinstance(exc.character, int) else ord(exc.character)
            problem = f"contains a character YAML does not allow (U+{char:04X}); remove it"
            raise SuiteError([f"{where}:{lines.line(exc.position)}: {problem}"]) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = lines.line(mark.index) if mark else 1
            what = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
            raise SuiteError([f"{where}:{line}: not valid YAML ({what})"]) from None
        if not isinstance(data, dict):
            raise SuiteError([f"{where}:1: a suite file is a mapping with name, version and prompts"])
        _unknown(data, SUITE_FIELDS, 1, where, problems, "the suite has ")
        given = _header(data, 1, where, problems)
        (name_given, name_at), (version_given, header), (description_given, description_at) = given.values()
        name, stated = name_given or name, version_given
        description = (description_given or "").strip()
        for item in _listed(data, "prompts", problems, where):
            if (prompt := _prompt(item, _line_of(item, "?"), problems, where, limit)) is not None:
                prompts.append(prompt)
        probe_lines: dict[str, object] = {}
        for item in _listed(data, "probes", problems, where):
            probe_id = _text(item.get("id") or "") if isinstance(item, dict) else ""
            if probe_id and probe_id in probe_lines:  # once, not once per prompt it expands into
                problems.append(
                    f"{where}:{_line_of(item)}: duplicate probe id {probe_id!r} (first at line {probe_lines[probe_id]})"
                )
                continue
            probe_lines[probe_id] = _line_of(item)
            prompts += _expand_probe(item, problems, where, limit)
    if version_asked is not None and stated and stated != version_asked:
        problems.append(
            f"{where}:{header}: the file gives version {stated!r}, not {version_asked!r} as asked (ask for none, "
            "or change the file's)"
        )
    version = stated or version_asked or "1"
    if not ID_RE.match(name):
        problems.append(f"{where}:{name_at}: invalid suite name {name!r} ({ID_RULE})")
    if len(version) > MAX_VERSION_CHARS:
        problems.append(f"{where}:{header}: the version is longer than {MAX_VERSION_CHARS} characters")
    _no_controls(version, "the version", f"{where}:{header}", problems, allowed="")  # one line, as names
    _no_controls(description, "the description", f"{where}:{description_at}", problems)
    if not prompts and not problems:
        problems.append(f"{where}:1: the suite has no prompts")
    _check_links(prompts, problems, where, unread)
    if problems:
        raise SuiteError(_in_line_order(problems, where))
    return SuiteDef(name, version, description, prompts)


def load_file(path: Path, version: str | None = None) -> SuiteDef:
    """Parse a suite file from disk (`version` as `parse_suite` takes it)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise SuiteError([f"{path.name}: suite files are .yaml, .yml, .jsonl, .txt or .csv"])
    try:  # bytes that are not UTF-8 become U+FFFD and the import goes on, with a warning naming the line
        text, warning = read_text_lenient(path)
    except InputFileError as exc:
        raise SuiteError([str(exc)]) from None
    suite = parse_suite(text, path.name, version)
    if warning:
        suite.warnings.append(warning)
    return suite


def import_suite(session: Session, suite: SuiteDef) -> tuple[Suite, bool]:
    """Store a validated suite; (row, created). The same content twice is a no-op; the same
    name and version with other prompts is a SuiteError."""
    existing = suites.get_suite(session, suite.name, suite.version)
    if existing is not None:
        if stored_digest(existing) != suite.digest():
            if suite.description.startswith(LIST_DESCRIPTION):  # a .txt or .csv list, named after its file
                versions = suites.suite_versions(session, suite.name)
                following = max((int(v) for v in versions if v.isdecimal()), default=1) + 1
                problem = (
                    f"suite {suite.name!r} (the name made from {suite.description.removeprefix(LIST_DESCRIPTION)}) "
                    f"is already imported with different prompts as version {suite.version!r} (its versions: "
                    f"{_listed_versions(versions, 10)}); import it under a new version "
                    f"(suite import --version {following}, or 'Version to import under' on the Suites page), or give "
                    "the file another name"
                )
            else:
                problem = (
                    f"suite {suite.name!r} version {suite.version!r} is already imported with different "
                    "prompts; give the file a new version"
                )
            raise SuiteError([problem])
        return existing, False
    prompts = [
        {
            "key": p.key,
            "text": p.text,
            "language": p.language,
            "topic": p.topic,
            "kind": p.kind,
            "twin_key": p.twin_key,
            "control_key": p.control_key,
        }
        for p in suite.prompts
    ]
    return suites.add_suite(session, suite.name, suite.version, suite.description, prompts), True


def stored_digest(row: Suite) -> str:
    """The content hash of a stored suite (same recipe as SuiteDef.digest)."""
    prompts = [PromptDef(p.key, p.text, p.language, p.topic, p.kind, p.twin_key, p.control_key) for p in row.prompts]
    return SuiteDef(row.name, row.version, row.description, prompts).digest()


def ensure_builtin(session: Session) -> None:
    """Import the built-in suites that are not in the database yet."""
    for path in sorted(BUILTIN_DIR.glob("*.yaml")):
        suite = load_file(path)
        if suites.get_suite(session, suite.name, suite.version) is None:
            import_suite(session, suite)


def ensure_builtin_suites() -> None:
    """Import missing built-in suites in a transaction of their own. Two processes may do it at
    the same moment: the loser's insert breaks the unique (name, version) and it finds the
    winner's suites on its second look."""
    from sqlalchemy.exc import IntegrityError

    try:
        with session_scope() as s:
            ensure_builtin(s)
    except IntegrityError:
        with session_scope() as s:
            ensure_builtin(s)


def find_suite(session: Session, name: str) -> Suite | None:
    """The newest version of a suite by name (or by 'name@version')."""
    return suites.find_suite(session, name)


def _listed_versions(versions: list[str], last: int = 30) -> str:
    """A suite's versions (oldest first) for a message: the last `last`, and how many in all."""
    more = f" (the last {last} of {len(versions)})" if len(versions) > last else ""
    return ", ".join(repr(v) for v in versions[-last:]) + more


def unknown_suite(session: Session, name: str) -> str:
    """Why `name` ('NAME' or 'NAME@VERSION') finds no stored suite, naming what there is: the
    suite's versions when only the version is wrong, else the suites' names (at most 30)."""
    base, at, version = name.partition("@")
    versions = suites.suite_versions(session, base) if at else []
    if versions:
        if not version:
            return f"{name!r} names no version: give one after the '@' (its versions: {_listed_versions(versions)})"
        return f"suite {base!r} has no version {version!r}; its versions: {_listed_versions(versions)}"
    names = suites.suite_names(session)
    more = f", … ({len(names)} in all)" if len(names) > 30 else ""
    return f"unknown suite {name!r}. Known: {', '.join(names[:30])}{more}"


def show_suite_or_why(name: str) -> tuple[SuiteInfo | None, str]:
    """(the suite, "") for 'NAME' (its newest version) or 'NAME@VERSION', else (None, why)."""
    ensure_builtin_suites()
    with session_scope() as s:
        row = suites.find_suite(s, name)
        return (_info(row), "") if row is not None else (None, unknown_suite(s, name))


def prompt_dict(p: SuitePrompt) -> dict:
    """A stored prompt as the JSON `suite show --json` prints."""
    return {
        "id": p.key,
        "text": p.text,
        "language": p.language,
        "topic": p.topic,
        "kind": p.kind,
        "twin": p.twin_key,
        "control": p.control_key,
    }


@dataclass(frozen=True)
class SuiteInfo:
    """A stored suite as pages and the CLI show it."""

    name: str
    version: str
    description: str
    languages: list[str]
    topics: list[str]
    prompts: list[dict]  # prompt_dict rows, in order


def _info(row: Suite) -> SuiteInfo:
    prompts = [prompt_dict(p) for p in row.prompts]
    return SuiteInfo(
        row.name,
        row.version,
        row.description,
        sorted({p["language"] for p in prompts}),
        sorted({p["topic"] for p in prompts}),
        prompts,
    )


def list_suites() -> list[SuiteInfo]:
    """Every stored suite (the built-in ones imported first), by name."""
    ensure_builtin_suites()
    with session_scope() as s:
        return [_info(row) for row in suites.list_suites(s)]


def suite_names() -> list[str]:
    """Names of the stored suites (the built-in ones imported first)."""
    ensure_builtin_suites()
    with session_scope() as s:
        return suites.suite_names(s)


def suite_choices() -> dict[str, str]:
    """Every stored suite version as {what `show_suite` and a run take: how a page names it}, by
    name: a suite's name for its newest version ("general": "general · v2 (newest)"), then
    NAME@VERSION for each older one, newer first ("general@1": "general · v1"). A suite with one
    version is just its name."""
    ensure_builtin_suites()
    with session_scope() as s:
        pairs = suites.suite_name_versions(s)
    by_name: dict[str, list[str]] = {}
    for name, version in pairs:
        by_name.setdefault(name, []).append(version)
    choices: dict[str, str] = {}
    for name, versions in by_name.items():
        newest, *older = reversed(versions)
        choices[name] = f"{name} · v{newest} (newest)" if older else name
        choices |= {f"{name}@{version}": f"{name} · v{version}" for version in older}
    return choices


def show_suite(name: str) -> SuiteInfo | None:
    """One stored suite by name (or name@version), or None (`show_suite_or_why` says why)."""
    return show_suite_or_why(name)[0]


@dataclass(frozen=True)
class SuiteImport:
    """What importing a suite file did."""

    name: str
    version: str
    prompts: int
    created: bool
    warnings: tuple[str, ...] = ()  # bytes that were not UTF-8 (replaced by U+FFFD), naming the line


def import_bytes(data: bytes, filename: str, version: str | None = None) -> SuiteImport:
    """The suite-import action for an uploaded file's bytes: `import_text` once they are read as
    UTF-8 (bytes that are not become U+FFFD, with a warning naming the line and the byte)."""
    text, warning = decode_lenient(data, Path(filename).name)
    imported = import_text(text, filename, version)
    return dataclasses.replace(imported, warnings=(warning,)) if warning else imported


def import_text(text: str, filename: str, version: str | None = None) -> SuiteImport:
    """The suite-import action for a file's text: validate it completely, then store it (under
    `version` where the file gives none: see `parse_suite`).

    Raises SuiteError listing every problem; nothing is written then."""
    suite = parse_suite(text, filename, version)
    with session_scope() as s:
        _, created = import_suite(s, suite)
    return SuiteImport(suite.name, suite.version, len(suite.prompts), created, tuple(suite.warnings))


def import_path(path: Path, version: str | None = None) -> SuiteImport:
    """The suite-import action for a file on disk (see `import_text`)."""
    suite = load_file(path, version)
    with session_scope() as s:
        _, created = import_suite(s, suite)
    return SuiteImport(suite.name, suite.version, len(suite.prompts), created, tuple(suite.warnings))
