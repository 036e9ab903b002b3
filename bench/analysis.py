"""Analysis speed on N stored answers with cached embeddings (default 20,000): load the scope and
its vectors from SQLite, cluster, project, divergence, canned templates, deflection rates.

The synthetic set is the same at any size: N/10 prompts over 40 topics, 10 models (model offsets
and noise around each topic), a third of model 9's answers one canned deflection; vectors are
stored as if an embedder had made them, so no model runs here. The database is written by a
child process, so `peak_rss_mb` is the analysing process alone (loading plus every view).
Usage: python bench/analysis.py [--answers N] [--json]   (prints n, each step's seconds, total_s)"""

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

N_MODELS, N_TOPICS, DIM = 10, 40, 384
BATCH_PROMPTS = 5_000  # prompts written per transaction (bounded memory at a million answers)
CANNED = "I'm sorry, let's talk about something else."


def populate(url: str, n_answers: int, embedder_key: str) -> None:
    """Write n_answers synthetic answers, their labels and their vectors to the database at url."""
    os.environ["PARALLAX_DATABASE_URL"] = url
    from db.engine import get_engine
    from db.models import Conversation, Embedding, Exchange, Label, Response
    from lib.analysis.embeddings import content_hash

    rng = np.random.default_rng(0)
    topics = rng.normal(size=(N_TOPICS, DIM))
    offsets = rng.normal(scale=0.3, size=(N_MODELS, DIM))
    canned_vector = (offsets[9] / np.linalg.norm(offsets[9])).astype(np.float32)
    engine = get_engine()
    n_prompts = max(1, n_answers // N_MODELS)
    canned_stored = False
    for first in range(0, n_prompts, BATCH_PROMPTS):
        prompts = range(first, min(n_prompts, first + BATCH_PROMPTS))
        conversations = [{"id": p + 1, "mode": "compare", "title": f"prompt {p}", "meta": {}} for p in prompts]
        exchanges = [
            {"id": p + 1, "conversation_id": p + 1, "turn_index": 0, "prompt": f"Question {p}?", "language": "en"}
            for p in prompts
        ]
        responses, labels, embeddings = [], [], []
        noise = rng.normal(scale=0.5, size=(len(prompts), N_MODELS, DIM))
        vectors = topics[np.array(prompts) % N_TOPICS][:, None, :] + offsets[None] + noise
        vectors = (vectors / np.linalg.norm(vectors, axis=2, keepdims=True)).astype(np.float32)
        for k, p in enumerate(prompts):
            for m in range(N_MODELS):
                rid = p * N_MODELS + m + 1
                canned = m == 9 and p % 3 == 0
                text = CANNED if canned else f"Answer {p} by model {m}."
                responses.append(
                    {
                        "id": rid,
                        "exchange_id": p + 1,
                        "slot": f"m{m}",
                        "model": f"m{m}",
                        "display_name": f"Model {m}",
                        "endpoint_id": f"m{m}",
                        "base_host": "bench",
                        "params": {},
                        "text": text,
                        "status": "ok",
                        "tokens_counted": False,
                    }
                )
                labels.append(
                    {
                        "response_id": rid,
                        "source": "parallax-deflection@bench",
                        "label": "deflected" if canned else "answered",
                        "confidence": 0.9,
                        "rule": "bench",
                    }
                )
                if canned and canned_stored:
                    continue
                canned_stored = canned_stored or canned
                vector = canned_vector if canned else vectors[k, m]
                row = {"content_hash": content_hash(text), "embedder": embedder_key, "dim": DIM}
                embeddings.append(row | {"vector": vector.tobytes()})
        with engine.begin() as conn:
            conn.execute(Conversation.__table__.insert(), conversations)
            conn.execute(Exchange.__table__.insert(), exchanges)
            conn.execute(Response.__table__.insert(), responses)
            conn.execute(Label.__table__.insert(), labels)
            conn.execute(Embedding.__table__.insert(), embeddings)


def measure(n_answers: int) -> dict:
    """Populate a fresh database in a child process, then time each step of the analysis here."""
    embedder_key = "bench-synthetic-384"
    url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    start = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(target=populate, args=(url, n_answers, embedder_key))
    child.start()
    child.join()
    if child.exitcode:
        raise SystemExit(f"populating the benchmark database failed (exit {child.exitcode})")
    populate_s = time.perf_counter() - start
    os.environ["PARALLAX_DATABASE_URL"] = url
    from db import answers, embeddings
    from db.answers import AnswerScope
    from db.engine import session_scope
    from lib.analysis import views as analysis
    from lib.analysis.embeddings import content_hash

    start = time.perf_counter()
    with session_scope() as s:
        rows = answers.scope_answers(s, AnswerScope())
        vectors, found = embeddings.vector_matrix(s, embedder_key, [content_hash(r["text"]) for r in rows])
    load_s = time.perf_counter() - start
    assert found.all(), "every synthetic answer has a stored vector"
    result = analysis.run_all(rows, vectors, "pca", embedder_key)
    steps = result["timings"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n": len(rows),
        "load_s": round(load_s, 2),
        **steps,
        "total_s": round(load_s + sum(steps.values()), 2),
        "vectors_mb": round(vectors.nbytes / 2**20, 1),
        "peak_rss_mb": round(peak),
        "populate_s": round(populate_s, 1),
        "clusters": len(result["clusters"].get("clusters", [])),
        "templates": len(result["templates"]["templates"]),
        "prompts_compared": result["divergence"]["prompts_compared"],
        "load_average": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=20_000, help="stored answers (default 20,000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    if args.answers < N_MODELS:
        parser.error(f"--answers must be at least {N_MODELS}")
    figures = measure(args.answers)
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:>18}  {value}")


if __name__ == "__main__":
    main()
