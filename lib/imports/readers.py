"""Readers for the files people already have: answer rows (JSONL, a JSON list or CSV, optionally
gzipped), promptfoo's results file (`promptfoo eval -o results.json`) and FastChat / LMArena
pairwise battles. Each reader checks every record and collects every problem with its file and
line; nothing here touches the database.

Answer rows: `prompt` (or `question`, `input`), `model` (or `model_name`), `response` (or
`answer`, `output`, `completion`); optional `language`, `topic`, `kind`, `reasoning`, `system`,
`label` with `label_origin`, `conversation_id` with `turn`, `id`, and `pair` (also `pair_id`,
`question_id`, or `question` when `prompt` is given, as in SpeechMap's files): rows sharing a
pair are the same request in different languages.

`classify` reads answer rows with this same reader (`rows_to_label`): the same formats and field
names, with only a response required and a `status` read, each row kept to be written back with
its label.

Problems are found in what the file holds before anything is cleaned: a control character in a
prompt (NUL as much as ESC) is refused with its line, never turned into U+FFFD first, and a file
that is not UTF-8 is refused naming the line and the byte. Prompts have the limit of a prompt
asked in the app (PARALLAX_MAX_PROMPT_CHARS); answers have MAX_TEXT_CHARS."""

from __future__ import annotations

import gzip
import json
import math
import re
import unicodedata
import zlib
from collections.abc import Callable
from pathlib import Path

from db import config
from db.vocab import LANGUAGES, Status
from lib.files import (
    TOO_DEEP,
    InputFileError,
    TooDeep,
    decode_lenient,
    iter_jsonl,
    json_problem,
    lines_between,
    load_json,
    read_csv,
    read_input_bytes,
)
from lib.imports.records import (
    MAX_MODEL_CHARS,
    MAX_TEXT_CHARS,
    WINNER_OF,
    AnswerRecord,
    BattleRecord,
    BattleTurn,
    ImportProblems,
    Parsed,
    accepted_labels,
    label_code,
    language_code,
)
from lib.safety import (
    clean_json,
    clean_text,
    control_character,
    one_line_name,
    one_line_problem,
    token_count,
    unicode_json,
)

Progress = Callable[[str, int, int], None]  # (phase, done, total)
SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")
PROMPT_KEYS = ("prompt", "question", "input")
MODEL_KEYS = ("model", "model_name")
RESPONSE_KEYS = ("response", "answer", "output", "completion")
PAIR_KEYS = ("pair", "pair_id", "question_id")
KINDS = ("probe", "control", "general")
KNOWN_KEYS = {
    *PROMPT_KEYS,
    *MODEL_KEYS,
    *RESPONSE_KEYS,
    *PAIR_KEYS,
    "language",
    "lang",
    "topic",
    "kind",
    "reasoning",
    "reasoning_content",
    "system",
    "system_prompt",
    "label",
    "label_origin",
    "conversation_id",
    "conversation",
    "turn",
    "turn_index",
    "id",
}
LIMIT_HINT = "PARALLAX_MAX_PROMPT_CHARS; raise it to import longer prompts"
TOPIC_VARS = ("topic", "subject", "category")


def file_format(name: str) -> str | None:
    """The reader for a file name (.jsonl/.ndjson, .json, .csv, each optionally .gz), or None."""
    lower = name.lower().removesuffix(".gz")
    return next((s.lstrip(".") for s in SUFFIXES if lower.endswith(s)), None)


def read_file(path: Path, progress: Progress | None = None) -> Parsed:
    """Every record of an import file; ImportProblems when the file cannot be read at all."""
    path = Path(path)
    try:
        data = read_input_bytes(path)
    except InputFileError as exc:
        raise ImportProblems([str(exc)]) from None
    return read_bytes(data, path.name, progress)


def read_bytes(data: bytes, name: str, progress: Progress | None = None, *, labelling: bool = False) -> Parsed:
    """Every record of an import file's bytes (`name` picks the reader and labels problems).

    `labelling` reads answer rows for `classify` instead of an import: a name of no known format
    is read as JSONL, only the response is required, `status` is read, the fields only an import
    stores (language, label, kind, turn…) are not checked, each record keeps its row (`fields`),
    prompts have no length limit (nothing is asked or stored) and battles are refused."""
    kind = file_format(name) or ("jsonl" if labelling else None)
    if kind is None:
        raise ImportProblems([f"{name}: import files are .jsonl, .json or .csv (optionally .gz)"])
    text, warning = _decode(data, name)
    reading = _Reading(name, progress, labelling, None if labelling else config.max_prompt_chars())
    if kind == "csv":
        parsed = _rows(_csv_rows(text, name), reading)
    elif kind == "json":
        parsed = _json(text, reading)
    else:
        parsed = _rows(_jsonl_rows(text, name), reading)
    if not parsed.count and not parsed.problems:
        parsed.problems.append(f"{name}: no records found")
    if not labelling:
        parsed.warnings += _lookalike_models(parsed, name)
    if warning:
        parsed.warnings.insert(0, warning)
    return parsed


def _lookalike_models(parsed: Parsed, name: str) -> list[str]:
    """A warning, at its first line, for each model name with letters of another script that read
    as Latin ones (`gpt-4о` with a Cyrillic о: lib.lookalikes); the first 20, then how many more."""
    from lib.lookalikes import lookalike_warnings

    first: dict[str, str] = {}
    for record in parsed.answers:
        first.setdefault(record.model, record.line)
    for battle in parsed.battles:
        first.setdefault(battle.model_a, battle.line)
        first.setdefault(battle.model_b, battle.line)
    return lookalike_warnings(first, name)


def rows_to_label(data: bytes, name: str) -> tuple[list[tuple[dict, dict]], list[str]]:
    """The answers of a file for `classify`, read as an import reads them (formats and field names,
    see the module docstring): (the row to write back with its label, clean; the detector's item:
    prompt, response, status) per answer, in file order; and the reader's warnings (bytes that
    were not UTF-8, replaced). ImportProblems listing every problem."""
    parsed = read_bytes(data, name, labelling=True)
    if parsed.problems:
        raise ImportProblems(parsed.problems)
    rows = [
        (record.fields, {"prompt": record.prompt, "response": record.response, "status": record.status})
        for record in parsed.answers
    ]
    return rows, parsed.warnings


class _Reading:
    """What one read is for: the file's name, progress, whether it labels (classify) or imports,
    and the prompt limit (None when prompts have none)."""

    def __init__(self, name: str, progress: Progress | None, labelling: bool, limit: int | None):
        self.name, self.progress, self.labelling, self.limit = name, progress, labelling, limit

    def prompt_fits(self, text: str | None, field: str, where: str, problems: list[str]) -> bool:
        """Whether a prompt is within the limit of a prompt asked in the app; a problem when not."""
        if self.limit is None or text is None or len(text) <= self.limit:
            return True
        problems.append(
            f"{where}: {field} is {len(text):,} characters; the limit for a prompt is {self.limit:,} ({LIMIT_HINT})"
        )
        return False


def _decode(data: bytes, name: str) -> tuple[str, str | None]:
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ImportProblems([f"{name}: not a readable gzip file ({exc})"]) from exc
    # bytes that are not UTF-8 become U+FFFD with a warning (issue 12: text is made safe and the work
    # goes on); not cleaned here: fields are checked as written, then cleaned one by one (lib.safety)
    return decode_lenient(data, name)


# --- containers: each yields (where, row or None, problem or None) ---------------------------


def _jsonl_rows(text: str, name: str):
    for number, item, problem in iter_jsonl(text):
        yield f"{name}:{number}", item, problem


def _csv_rows(text: str, name: str):
    for number, row, problem in read_csv(text)[1]:
        yield f"{name}:{number}", row, problem


def _json(text: str, reading: _Reading) -> Parsed:
    name = reading.name
    try:
        data = load_json(text)
    except json.JSONDecodeError as exc:
        line, problem = json_problem(exc)
        raise ImportProblems([f"{name}:{line}: {problem}"]) from None
    except TooDeep as exc:
        raise ImportProblems([f"{name}:{exc.line}: {TOO_DEEP}"]) from None
    if isinstance(data, dict) and "results" in data:
        return _promptfoo(data, reading)
    if not isinstance(data, list):
        raise ImportProblems([f"{name}:1: a JSON import is a list of rows, or promptfoo's results file"])
    return _rows(_json_list_rows(text, len(data), name), reading)


def _json_list_rows(text: str, count: int, name: str):
    """The items of a top-level JSON list (already checked by json.loads) with their start lines."""
    decoder, position = json.JSONDecoder(), text.index("[") + 1
    line, counted = 1 + lines_between(text, 0, position), position
    for _ in range(count):
        while text[position] in " \t\r\n,":
            position += 1
        line, counted = line + lines_between(text, counted, position), position
        item, position = decoder.raw_decode(text, position)
        yield f"{name}:{line}", unicode_json(item), None


# --- answer rows and battles -------------------------------------------------------------


def _rows(rows, reading: _Reading) -> Parsed:
    rows, name, progress = list(rows), reading.name, reading.progress
    first = next((row for _, row, _ in rows if isinstance(row, dict)), {})
    battles = {"model_a", "model_b"} <= {str(k).strip().lower() for k in first}
    parsed = Parsed("battles" if battles else "rows")
    if battles and reading.labelling:
        parsed.problems.append(
            f"{name}: holds pairwise battles (model_a, model_b); classify labels answer rows "
            "(import the battles to label both sides)"
        )
        return parsed
    ignored: set[str] = set()
    for index, (where, row, problem) in enumerate(rows, start=1):
        if progress and index % 500 == 0:
            progress("reading", index, len(rows))
        if problem:
            parsed.problems.append(f"{where}: {problem}")
            continue
        if not isinstance(row, dict):
            parsed.problems.append(f"{where}: each record must be an object with named fields")
            continue
        spelt = [str(k) for k in row if k is not None]
        if twice := _given_twice(spelt):  # "model" and "Model ": one field once case is dropped
            parsed.problems.append(f"{where}: {twice}")
            continue
        given, row = row, {str(k).strip().lower(): v for k, v in row.items() if k is not None}
        if parsed.format == "battles":
            record = _battle(row, where, parsed.problems, reading)
            if record is not None:
                parsed.battles.append(record)
        else:
            ignored |= set(row) - KNOWN_KEYS
            record = _answer(row, where, parsed.problems, reading)
            if record is not None:
                parsed.answers.append(record)
                if reading.labelling:  # written back as given, clean, the status in our words
                    record.fields = clean_json(given) | ({"status": record.status} if "status" in row else {})
    if ignored and not reading.labelling:
        parsed.warnings.append(f"{name}: ignored field(s) {', '.join(sorted(ignored)[:10])}")
    return parsed


def _given_twice(keys: list[str]) -> str | None:
    """A problem when two of a row's fields are one field (field names are read in any case, with
    spaces around them dropped): the row would keep the last of them, silently."""
    seen: dict[str, str] = {}
    for key in keys:
        folded = key.strip().lower()
        if folded in seen:
            return f"the field {folded} is given twice ({seen[folded]!r} and {key!r})"
        seen[folded] = key
    return None


def _first(row: dict, keys: tuple[str, ...]) -> tuple[str | None, object]:
    """The first of `keys` that the row has with a value (empty text counts as none)."""
    for key in keys:
        value = row.get(key)
        if value is not None and value != "":
            return key, value
    return None, None


def _text(
    value: object, field: str, where: str, problems: list[str], required: bool = True, typed: bool = False
) -> str | None:
    """A text field, clean; None with a problem when it is missing (if `required`), not text or too
    long. A `typed` field (a prompt, a system prompt, a model name: what people wrote, not what a
    model answered) may hold no control character but tabs and line breaks."""
    if value is None or value == "" or (required and isinstance(value, str) and not value.strip()):
        if required:
            problems.append(f"{where}: missing {field}")
        return None
    if not isinstance(value, str):
        problems.append(f"{where}: {field} must be text, not {type(value).__name__}")
        return None
    if len(value) > MAX_TEXT_CHARS:
        problems.append(f"{where}: {field} is longer than {MAX_TEXT_CHARS:,} characters")
        return None
    if typed and (char := control_character(value)):
        problems.append(f"{where}: {field} contains a control character ({char}); remove it")
        return None
    return clean_text(value)


def _model(value: object, field: str, where: str, problems: list[str]) -> str | None:
    """A model name, stripped; None with a problem when it is missing, too long or holds a control
    character, a tab or a line break (it is one cell of a table, one line of `leaderboard`)."""
    text = _text(value, field, where, problems, typed=True)
    if text is not None and (problem := one_line_problem(text.strip())):
        problems.append(f"{where}: {field} contains {problem}; remove it")
        return None
    name = one_line_name(text) if text is not None else None
    if name is not None and len(name) > MAX_MODEL_CHARS:  # as stored: composing can lengthen it (U+0958)
        problems.append(f"{where}: {field} is longer than {MAX_MODEL_CHARS} characters")
        return None
    return name


def _label_text(value: object, field: str, where: str, problems: list[str], limit: int = 100) -> str:
    """A one-line label (a topic, a label origin), stripped and cut to `limit`; "" with a problem
    when it holds a control character, a tab or a line break (it is one cell of a table)."""
    text = "" if value is None else str(value)
    if problem := one_line_problem(text.strip()):
        problems.append(f"{where}: {field} contains {problem}; remove it")
        return ""
    return one_line_name(text)[:limit]


def _identifier(value: object, field: str, where: str, problems: list[str]) -> str | None:
    """An id (a pair, a conversation, a source row), as text; None when absent, or with a problem
    when it holds a control character, a tab or a line break (an escape sequence would reach
    terminals and pages; an id is one line)."""
    if value is None or value == "" or isinstance(value, (dict, list)):
        return None
    if problem := one_line_problem(str(value).strip()):
        problems.append(f"{where}: {field} contains {problem}; remove it")
        return None
    return one_line_name(str(value))[:200] or None


# how the release before this one spelt names (`one_line_name` then: NFC, spaces and hyphens one)
_SPACES_BEFORE = re.compile("[ \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_HYPHENS_BEFORE = re.compile("[\u2010-\u2012\u2212]")


def _written(record: AnswerRecord | BattleRecord, **raw: object) -> list[dict[str, str | None]]:
    """The names and ids of `record` as earlier releases stored them, where they differ from the
    record's: as written (clean and stripped: before names had a spelling of their own) and as the
    release before this one spelt them (NFC, spaces and hyphens one; no ASCII for full-width or
    mathematical letters). Their digests find answers those releases stored."""
    spellings: list[dict[str, str | None]] = [{}, {}]
    for name, value in raw.items():
        if value is None or value == "" or isinstance(value, (dict, list)):
            continue  # absent: nothing to spell (a record may fill it in, as promptfoo's ids)
        text = clean_text(str(value))
        composed = _HYPHENS_BEFORE.sub("-", _SPACES_BEFORE.sub(" ", unicodedata.normalize("NFC", text)))
        for spelt, before in zip(spellings, (text.strip(), composed.strip()), strict=True):
            if (before[:200] or None) != getattr(record, name):
                spelt[name] = before[:200] or None
    unique = []
    for spelt in spellings:
        if spelt and spelt not in unique:
            unique.append(spelt)
    return unique


def _language(value: object, where: str, problems: list[str]) -> str | None:
    """en or zh from a row's language (a code like zh-CN or a name like Chinese); None when the
    row leaves it empty (then it is detected from the prompt). Parallax compares English and
    Chinese answers (suites, twins, the detector, the language gap), so any other language is a
    problem named with the line, not a value stored where no view would show it."""
    if value is None or value == "":
        return None
    code = language_code(value)
    if code not in LANGUAGES:
        problems.append(
            f"{where}: language {value!r} is not {' or '.join(LANGUAGES)} (Parallax compares English and Chinese "
            "answers); leave it empty to detect the language from the prompt"
        )
        return None
    return code


def _answer(row: dict, where: str, problems: list[str], reading: _Reading) -> AnswerRecord | None:
    before, required = len(problems), not reading.labelling  # classify needs only the response
    prompt_key, prompt = _first(row, PROMPT_KEYS)
    prompt = _text(prompt, "prompt (or question, input)", where, problems, required=required, typed=True)
    reading.prompt_fits(prompt, prompt_key or "prompt", where, problems)
    model_key, raw_model = _first(row, MODEL_KEYS)
    model = _model(raw_model, "model (or model_name)", where, problems) if required or model_key else ""
    status = _status(row.get("status"), where, problems) if reading.labelling else None
    response_key = next((k for k in RESPONSE_KEYS if k in row and row[k] is not None), None)
    if response_key is None:
        problems.append(f"{where}: missing response (or answer, output, completion)")
    response = _text(row.get(response_key), response_key or "response", where, problems, required=False) or ""
    if reading.labelling:  # what the detector reads; the rest is written back as given, not stored
        ok = len(problems) == before
        return AnswerRecord(where, prompt or "", model, response, status=status) if ok else None
    pair_key, raw_pair = _first(row, PAIR_KEYS)
    pair = _identifier(raw_pair, pair_key or "pair", where, problems)
    if pair is None and prompt_key != "question":
        raw_pair = row.get("question")
        pair = _identifier(raw_pair, "question", where, problems)
    label, origin = row.get("label"), row.get("label_origin")
    if label not in (None, ""):
        label = label_code(label)
        if label is None:
            problems.append(f"{where}: label {row['label']!r} is not one of {accepted_labels()}")
    kind = str(row.get("kind") or "general").strip().lower()
    if kind not in KINDS:
        problems.append(f"{where}: kind must be one of {', '.join(KINDS)}, not {row.get('kind')!r}")
    conversation_key, raw_conversation = _first(row, ("conversation_id", "conversation"))
    conversation = _identifier(raw_conversation, conversation_key or "conversation_id", where, problems)
    topic = _label_text(row.get("topic") or "", "topic", where, problems)
    origin = _label_text(origin or "", "label_origin", where, problems)
    source_id = _identifier(row.get("id"), "id", where, problems)
    turn = _turn(_first(row, ("turn", "turn_index"))[1], where, problems)
    language = _language(_first(row, ("language", "lang"))[1], where, problems)
    if len(problems) > before:
        return None
    record = AnswerRecord(
        line=where,
        prompt=prompt,
        model=model,
        response=response,
        language=language,
        topic=topic,
        kind=kind,
        reasoning=_text(_first(row, ("reasoning", "reasoning_content"))[1], "reasoning", where, problems, False),
        system=_text(_first(row, ("system", "system_prompt"))[1], "system", where, problems, False, typed=True),
        label=label or None,
        label_origin=origin,
        conversation=conversation,
        turn=turn,
        pair=pair,
        source_id=source_id,
    )
    record.written = _written(
        record, model=raw_model, conversation=raw_conversation, source_id=row.get("id"), pair=raw_pair
    )
    return record


def _status(value: object, where: str, problems: list[str]) -> str:
    """A row's status for classify (ok, blocked, error…; any case), ok when absent. An unknown one
    is a problem: it would make the answer 'incomplete' and drop it from every rate silently."""
    if value is None:
        return Status.OK
    if not isinstance(value, str) or value.strip().lower() not in Status.ALL:
        problems.append(f"{where}: status {value!r} is not one of {', '.join(Status.ALL)}")
        return Status.OK
    return value.strip().lower()


MAX_TURN = 100_000  # turns of one conversation (exchange.turn_index: PostgreSQL refused beyond 32 bits)


def _turn(value: object, where: str, problems: list[str]) -> int | None:
    if value is None or value == "":
        return None
    try:
        turn = int(str(value).strip())
    except ValueError:
        turn = -1
    if not 0 <= turn <= MAX_TURN or isinstance(value, (bool, float)):
        problems.append(f"{where}: turn must be a whole number from 0 to {MAX_TURN:,}, not {value!r}")
        return None
    return turn


def _messages(value: object, field: str, where: str, problems: list[str]) -> list[tuple[str, str]] | None:
    """[(role, text)] from a list of {role, content} messages (content may be a list of parts)."""
    if isinstance(value, str):  # some exports store the conversation as a JSON string
        try:
            value = load_json(value)
        except TooDeep:
            problems.append(f"{where}: {field} is {TOO_DEEP}")
            return None
        except json.JSONDecodeError as exc:
            problems.append(
                f"{where}: {field} must be a list of messages with role and content "
                f"(it is text, {json_problem(exc)[1]})"
            )
            return None
    if not isinstance(value, list) or not value:
        problems.append(f"{where}: {field} must be a list of messages with role and content")
        return None
    out = []
    for message in value:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # OpenAI-style parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "user", "assistant") or not isinstance(content, (str, type(None))):
            problems.append(f"{where}: {field} has a message without a role (system/user/assistant) and text")
            return None
        if role != "assistant" and (char := control_character(content)):
            problems.append(f"{where}: {field} has a {role} message with a control character ({char}); remove it")
            return None
        out.append((role, clean_text(content or "")))
    return out


def _turns(messages: list[tuple[str, str]]) -> tuple[str | None, list[tuple[str, str]]]:
    """(system prompt, [(user prompt, assistant answer)]) from a conversation's messages."""
    system, turns = None, []
    for role, text in messages:
        if role == "system":
            system = text or None
        elif role == "user":
            turns.append([text, ""])
        elif turns:
            turns[-1][1] += text
    return system, [(prompt, answer) for prompt, answer in turns]


def _battle(row: dict, where: str, problems: list[str], reading: _Reading) -> BattleRecord | None:
    before = len(problems)
    model_a = _model(row.get("model_a"), "model_a", where, problems)
    model_b = _model(row.get("model_b"), "model_b", where, problems)
    if model_a and model_a == model_b:
        problems.append(f"{where}: model_a and model_b are the same model ({model_a})")
    winner = WINNER_OF.get(str(row.get("winner", "")).strip().lower())
    if winner is None:
        problems.append(f"{where}: winner must be model_a, model_b, tie or tie (bothbad), not {row.get('winner')!r}")
    side_a = _messages(row.get("conversation_a"), "conversation_a", where, problems)
    side_b = _messages(row.get("conversation_b"), "conversation_b", where, problems)
    source_id = _identifier(_first(row, ("question_id", "id"))[1], "question_id (or id)", where, problems)
    if side_a is None or side_b is None or len(problems) > before:
        return None
    system, turns_a = _turns(side_a)
    _, turns_b = _turns(side_b)
    if not turns_a:
        problems.append(f"{where}: the battle has no user turn")
        return None
    if not all(reading.prompt_fits(p, "a user message of conversation_a", where, problems) for p, _ in turns_a):
        return None
    if [p for p, _ in turns_a] != [p for p, _ in turns_b]:
        problems.append(f"{where}: conversation_a and conversation_b do not ask the same user turns")
        return None
    turn = row.get("turn")
    vote_turn = int(turn) - 1 if isinstance(turn, int) and 1 <= turn <= len(turns_a) else None
    anony = row.get("anony", True)
    record = BattleRecord(
        line=where,
        model_a=model_a,
        model_b=model_b,
        winner=winner,
        turns=[BattleTurn(p, a, b) for (p, a), (_, b) in zip(turns_a, turns_b, strict=True)],
        system=system,
        language=language_code(_first(row, ("language", "lang"))[1] or "") or None,
        blind=anony is not False and str(anony).lower() != "false",
        vote_turn=vote_turn,
        source_id=source_id,
        meta={k: clean_json(row[k]) for k in ("tstamp", "judge") if isinstance(row.get(k), (str, int, float))},
    )
    raw_id = _first(row, ("question_id", "id"))[1]
    record.written = _written(record, model_a=row.get("model_a"), model_b=row.get("model_b"), source_id=raw_id)
    return record


# --- promptfoo -------------------------------------------------------------------------------


def _promptfoo(data: dict, reading: _Reading) -> Parsed:
    """promptfoo's `eval -o results.json`: {evalId, results: {version, results: [...]}, config}."""
    name = reading.name
    summary = data.get("results")
    results = summary.get("results") if isinstance(summary, dict) else summary
    parsed = Parsed("promptfoo")
    if not isinstance(results, list):
        parsed.problems.append(f"{name}: 'results' holds no list of results (is this promptfoo's results file?)")
        return parsed
    for index, result in enumerate(results, start=1):
        where = f"{name}: result {index}"
        if not isinstance(result, dict):
            parsed.problems.append(f"{where}: each result must be an object")
            continue
        record = _promptfoo_result(result, where, parsed.problems, reading)
        if record is not None:
            parsed.answers.append(record)
            if reading.labelling:  # what classify writes back for a promptfoo result
                record.fields = {"id": record.source_id, "prompt": record.prompt, "model": record.model}
                record.fields |= {"response": record.response, "status": record.status}
    return parsed


def _promptfoo_prompt(raw: str) -> tuple[str | None, str]:
    """(system, prompt) from a rendered promptfoo prompt, which may be a JSON list of chat messages."""
    if raw.lstrip().startswith("["):
        try:
            messages = load_json(raw)
        except ValueError:  # not JSON, or nested too deeply: the prompt as written
            return None, raw
        if isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages):
            system = "\n\n".join(str(m.get("content") or "") for m in messages if m["role"] in ("system", "developer"))
            users = [str(m.get("content") or "") for m in messages if m["role"] == "user"]
            if users:
                return system or None, users[-1]
    return None, raw


def _promptfoo_result(result: dict, where: str, problems: list[str], reading: _Reading) -> AnswerRecord | None:
    provider = result.get("provider")
    if isinstance(provider, dict):
        provider = provider.get("label") or provider.get("id")
    model = _model(provider, "provider", where, problems)
    prompt = result.get("prompt")
    raw = prompt.get("raw") if isinstance(prompt, dict) else prompt
    raw = _text(raw, "prompt.raw", where, problems, typed=True)
    response = result.get("response") if isinstance(result.get("response"), dict) else {}
    output = response.get("output")
    error = result.get("error") or response.get("error")
    if output is None and not error:
        problems.append(f"{where}: neither response.output nor error")
    if model is None or raw is None or (output is None and not error):
        return None
    if output is not None and not isinstance(output, str):
        output = json.dumps(output, ensure_ascii=False)
    system, text = _promptfoo_prompt(raw)
    if char := control_character((system or "") + text):  # a chat prompt's messages are JSON escapes in raw
        problems.append(f"{where}: prompt.raw contains a control character ({char}); remove it")
        return None
    if not reading.prompt_fits(text, "prompt.raw's user message", where, problems):
        return None
    test_case = result.get("testCase") if isinstance(result.get("testCase"), dict) else {}
    variables = result.get("vars") or test_case.get("vars") or {}
    variables = variables if isinstance(variables, dict) else {}
    topic = next((variables[k] for k in TOPIC_VARS if isinstance(variables.get(k), str)), "")
    topic = _label_text(topic, "vars.topic", where, problems)
    source_id = _identifier(result.get("id"), "id", where, problems)
    usage = response.get("tokenUsage") or result.get("tokenUsage") or {}
    usage = usage if isinstance(usage, dict) else {}  # a list or text: no counts
    status = _promptfoo_status(response, output, error)
    test, prompt_index = result.get("testIdx"), result.get("promptIdx")
    record = AnswerRecord(
        line=where,
        prompt=clean_text(text),
        model=model,
        response=clean_text(output or ""),
        language=language_code(variables.get("language") or variables.get("lang") or "") or None,
        topic=topic,
        system=clean_text(system) if system else None,
        source_id=source_id or (f"test{test}-prompt{prompt_index}" if test is not None else None),
        status=status,
        error=clean_text(str(error))[:2000] if error else None,
        latency_ms=_number(result.get("latencyMs")),
        input_tokens=_whole(usage.get("prompt")),
        output_tokens=_whole(usage.get("completion")),
        cost_usd=_number(result.get("cost") if result.get("cost") is not None else response.get("cost")),
    )
    record.written = _written(record, model=provider, source_id=result.get("id"))
    return record


def _promptfoo_status(response: dict, output: object, error: object) -> str:
    """ok, blocked or error, read with the provider-signal table the live calls use: a guardrail
    flag, a blocking finish reason, or an error whose text is a content block ("400 Content Exists
    Risk") is a block, not a failed call."""
    from lib.providers import signals

    finish = response.get("finishReason")
    if (response.get("guardrails") or {}).get("flagged") or (
        isinstance(finish, str) and signals.for_finish(finish).status == Status.BLOCKED
    ):
        return Status.BLOCKED
    if output is not None:
        return Status.OK
    said = signals.Signal("transport", body=str(error or ""))
    return Status.BLOCKED if signals.lookup(said).status == Status.BLOCKED else Status.ERROR


def _number(value: object) -> float | None:
    """A latency or a cost as a finite float; None for anything else (a 400-digit integer too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _whole(value: object) -> int | None:
    return token_count(value)
