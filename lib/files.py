"""Reading files users hand us (suite files, answers to classify, imports): one JSONL reader with
line numbers, so every caller reports problems the same way."""

from __future__ import annotations

import json
from collections.abc import Iterator

from lib.safety import clean_json, clean_text


def iter_jsonl(text: str) -> Iterator[tuple[int, object, str | None]]:
    """(line number, parsed value, problem) for each non-blank line of JSONL text.

    A line that is not JSON gives (number, None, "not JSON (reason)"); nothing is raised. Text
    is made valid Unicode first and again inside each value (a JSON "\\ud83d" escape decodes to a
    lone surrogate), and a leading byte-order mark is ignored."""
    for number, line in enumerate(clean_text(text).removeprefix("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, clean_json(json.loads(line)), None
        except json.JSONDecodeError as exc:
            yield number, None, f"not JSON ({exc.msg})"
