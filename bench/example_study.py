"""The first hour on the example study: import it into a fresh database (read, store, label with
the detector, store its shipped embeddings), load it again (nothing added), then the first
analysis and a second one. With --without-vectors the shipped embeddings are deleted before the
first analysis, which then embeds every answer (what it cost before they were shipped). Prints
one JSON object with the seconds of each step; the embedder is the configured one
(PARALLAX_EMBEDDER), on whatever device the machine has.

Usage: python bench/example_study.py [--without-vectors]"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    """Run the three steps on a temporary database and print the timings."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PARALLAX_DATA_DIR"] = tmp
        os.environ.pop("PARALLAX_DATABASE_URL", None)
        start = time.perf_counter()
        from lib.filters import answer_scope
        from lib.imports import load_example

        imported = load_example()
        import_s = time.perf_counter() - start
        start = time.perf_counter()
        again = load_example()
        reload_s = time.perf_counter() - start
        if "--without-vectors" in sys.argv[1:]:
            from sqlalchemy import delete

            from db.engine import session_scope
            from db.models import Embedding

            with session_scope() as session:
                session.execute(delete(Embedding))

        from lib.analysis.views import analyze

        start = time.perf_counter()
        result = analyze(answer_scope())
        analysis_s = time.perf_counter() - start
        start = time.perf_counter()
        analyze(answer_scope())
        cached_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "answers": imported.answers_added,
                "import_s": round(import_s, 2),
                "import_s_inside_action": round(imported.seconds, 2),
                "second_load_added": again.answers_added,
                "second_load_s": round(reload_s, 2),
                "vectors_shipped": imported.vectors_added,
                "without_vectors": "--without-vectors" in sys.argv[1:],
                "first_analysis_s": round(analysis_s, 1),
                "second_analysis_s": round(cached_s, 1),
                "embedder": result["embedder"],
                "views_s": result["timings"],
                "models": len(result["models"]),
                "language_gap_models": len(result["deflection"].get("language_gap", [])),
                "cpus": os.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 1),
            }
        )
    )


if __name__ == "__main__":
    # --help prints what the bench measures instead of starting it
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
