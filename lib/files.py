"""Reading files users hand us (suite files, answers to classify, imports): one JSONL reader with
line numbers, so every caller reports problems the same way."""

from __future__ import annotations

import json
from collections.abc import Iterator


def iter_jsonl(text: str) -> Iterator[tuple[int, object, str | None]]:
    """(line number, parsed value, problem) for each non-blank line of JSONL text.

    A line that is not JSON gives (number, None, "not JSON (reason)"); nothing is raised."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as exc:
            yield number, None, f"not JSON ({exc.msg})"
