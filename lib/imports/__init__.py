"""Imports: answers and battles from other tools (answer rows in JSONL/JSON/CSV, promptfoo's
results file, FastChat / LMArena battles) and the bundled example study, stored as imported
conversations that every page and command works on. One action per user action: `import_file`
and `load_example`, both returning an ImportResult."""

from lib.imports.action import (
    EXAMPLE,
    Agreement,
    ImportResult,
    has_answers,
    import_file,
    load_example,
    source_name,
)
from lib.imports.records import ImportProblems

__all__ = [
    "EXAMPLE",
    "Agreement",
    "ImportProblems",
    "ImportResult",
    "has_answers",
    "import_file",
    "load_example",
    "source_name",
]
