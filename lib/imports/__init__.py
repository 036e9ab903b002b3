"""Imports: answers and battles from other tools (answer rows in JSONL/JSON/CSV, promptfoo's
results file, FastChat / LMArena battles) and the bundled example study, stored as imported
conversations that every page and command works on. One action per user action: `import_file`
and `load_example`, both returning an ImportResult; `rows_to_label` reads the same answer rows
for `classify`."""

from lib.imports.action import (
    EXAMPLE,
    Agreement,
    ImportResult,
    example_state,
    has_answers,
    import_file,
    load_example,
    source_name,
)
from lib.imports.readers import rows_to_label
from lib.imports.records import ImportProblems

__all__ = [
    "EXAMPLE",
    "Agreement",
    "ImportProblems",
    "ImportResult",
    "example_state",
    "has_answers",
    "import_file",
    "load_example",
    "rows_to_label",
    "source_name",
]
