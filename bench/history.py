"""History listing and search on 20,000 stored answers (2,000 conversations × 10 models):
first page, a deep page, full-text search (FTS5 trigram) and a short LIKE query.
Prints one JSON object with the milliseconds of each (median of 5)."""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed_ms(fn) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(sorted(times)[2], 1)


def main() -> None:
    tmp = tempfile.mkdtemp()
    os.environ["PARALLAX_DATABASE_URL"] = f"sqlite:///{tmp}/bench.db"
    from bench.analysis import populate  # the same 20,000 answers the analysis benchmark uses
    from db import conversations
    from db.engine import session_scope

    populate()
    with session_scope() as s:
        figures = {
            "n_responses": 20000,
            "first_page_ms": timed_ms(lambda: conversations.list_conversations(s, page=0)),
            "page_50_ms": timed_ms(lambda: conversations.list_conversations(s, page=50)),
            "fts_search_ms": timed_ms(lambda: conversations.list_conversations(s, "Answer 1234")),
            "like_search_2_chars_ms": timed_ms(lambda: conversations.list_conversations(s, "12")),
            "matches": conversations.list_conversations(s, "Answer 1234")[1],
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    # --help prints what the bench measures instead of starting it
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
