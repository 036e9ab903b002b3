"""Analysis speed on 20,000 stored answers with cached embeddings: load the scope and its
vectors from SQLite, cluster, project, templates and divergence. Prints one JSON object with
`n`, `total_s` and a figure per step. Vectors are synthetic (prompt topics, model offsets,
noise) and stored as if an embedder had made them, so no model runs here."""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

N_PROMPTS, N_MODELS, DIM = 2000, 10, 384


def populate() -> None:
    from db.engine import get_engine
    from db.models import Conversation, Embedding, Exchange, Label, Response
    from lib.analysis.embeddings import DEFAULT_NAME, content_hash

    rng = np.random.default_rng(0)
    topics = rng.normal(size=(40, DIM))
    offsets = rng.normal(scale=0.3, size=(N_MODELS, DIM))
    engine = get_engine()
    conversations, exchanges, responses, embeddings, labels = [], [], [], [], []
    rid = 0
    for p in range(N_PROMPTS):
        conversations.append({"id": p + 1, "mode": "compare", "title": f"prompt {p}", "meta": {}})
        exchanges.append(
            {"id": p + 1, "conversation_id": p + 1, "turn_index": 0, "prompt": f"Question {p}?", "language": "en"}
        )
        centre = topics[p % 40]
        for m in range(N_MODELS):
            rid += 1
            canned = m == 9 and p % 3 == 0
            text = "I'm sorry, let's talk about something else." if canned else f"Answer {p} by model {m}."
            vector = (centre + offsets[m] + rng.normal(scale=0.5, size=DIM)).astype(np.float32)
            if canned:
                vector = offsets[m].astype(np.float32)
            vector /= np.linalg.norm(vector)
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
            embeddings.append(
                {"content_hash": content_hash(text), "embedder": DEFAULT_NAME, "dim": DIM, "vector": vector.tobytes()}
            )
    unique = {e["content_hash"]: e for e in embeddings}
    with engine.begin() as conn:
        conn.execute(Conversation.__table__.insert(), conversations)
        conn.execute(Exchange.__table__.insert(), exchanges)
        conn.execute(Response.__table__.insert(), responses)
        conn.execute(Label.__table__.insert(), labels)
        conn.execute(Embedding.__table__.insert(), list(unique.values()))


def main() -> None:
    tmp = tempfile.mkdtemp()
    os.environ["PARALLAX_DATABASE_URL"] = f"sqlite:///{tmp}/bench.db"
    populate()
    from db import answers
    from db.answers import AnswerScope
    from db.embeddings import cached_vectors
    from db.engine import session_scope
    from lib.analysis import views as analysis
    from lib.analysis.embeddings import DEFAULT_NAME, content_hash

    start = time.perf_counter()
    with session_scope() as s:
        rows = answers.scope_answers(s, AnswerScope())
        found = cached_vectors(s, DEFAULT_NAME, [content_hash(r["text"]) for r in rows])
    vectors = np.stack([found[content_hash(r["text"])] for r in rows])
    load_s = time.perf_counter() - start
    result = analysis.run_all(rows, vectors, "pca", DEFAULT_NAME)
    steps = result["timings"]
    total = load_s + sum(steps.values())
    print(
        json.dumps(
            {
                "n": len(rows),
                "load_s": round(load_s, 2),
                **steps,
                "total_s": round(total, 2),
                "clusters": len(result["clusters"].get("clusters", [])),
                "templates": len(result["templates"]["templates"]),
                "prompts_compared": result["divergence"]["prompts_compared"],
            }
        )
    )


if __name__ == "__main__":
    main()
