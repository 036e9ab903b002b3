"""Embedding throughput: raw SentenceTransformer.encode versus our path (hashing, cache lookup,
encode, float32 storage in SQLite) on the same texts and device, then the same texts again
(all cached). Prints one JSON object: device, n, raw_per_s, ours_per_s, ratio, cached_per_s,
cache_speedup. Texts are answers from ../shared/data when present, else generated.
Usage: python bench/embed.py [N] [--multilingual] [--whole]   (default 2000 texts cut to 700
characters, all-MiniLM-L6-v2; --multilingual: USE multilingual v3; --whole: the example study's
full answers, English and Chinese, ~2,900 characters on average, embedded whole)"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def texts(n: int, whole: bool = False) -> list[str]:
    """About LLM-answer-length texts (~100-150 tokens, or whole answers), all different."""
    shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    dev, example = shared / "deflection" / "dev.jsonl", shared / "example" / "speechmap-china-sample.jsonl.gz"
    pool = []
    if whole and example.exists():
        import gzip

        with gzip.open(example, "rt", encoding="utf-8") as lines:
            pool = [json.loads(line)["response"] for line in lines]
    elif dev.exists():
        pool = [json.loads(line)["response"][:700] for line in dev.open(encoding="utf-8")]
        pool = [t for t in pool if len(t) > 200]
    rng = random.Random(0)
    words = [
        "the",
        "model",
        "answer",
        "history",
        "policy",
        "river",
        "people",
        "government",
        "economy",
        "science",
        "music",
        "city",
        "law",
        "data",
    ]
    out = []
    for i in range(n):
        base = pool[i % len(pool)] if pool else " ".join(rng.choice(words) for _ in range(110))
        out.append(f"{base} [{i}]")
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 2000
    tmp = tempfile.mkdtemp()
    os.environ["PARALLAX_DATABASE_URL"] = f"sqlite:///{tmp}/bench.db"
    from db.engine import session_scope
    from lib.analysis.embeddings import embed_texts, get_embedder

    embedder = get_embedder(multilingual="--multilingual" in sys.argv)
    data = texts(n, whole="--whole" in sys.argv)
    embedder.encode(data[:64])  # warm-up (kernels, allocator)
    start = time.perf_counter()
    if hasattr(embedder.model, "max_seq_length"):  # raw sentence-transformers: cuts at its window
        options = {"convert_to_numpy": True, "normalize_embeddings": True, "show_progress_bar": False}
        embedder.model.encode(data, batch_size=embedder.batch_size, **options)
    else:
        embedder.model.encode(data)
    raw_s = time.perf_counter() - start
    start = time.perf_counter()
    with session_scope() as s:
        embed_texts(s, data, embedder)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    with session_scope() as s:
        embed_texts(s, data, embedder)
    cached_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "embedder": embedder.name,
                "device": embedder.device,
                "whole": "--whole" in sys.argv,
                "mean_chars": round(sum(map(len, data)) / len(data)),
                "half": embedder.half,
                "batch_size": embedder.batch_size,
                "n": n,
                "raw_per_s": round(n / raw_s, 1),
                "ours_per_s": round(n / ours_s, 1),
                "ratio": round(raw_s / ours_s, 3),
                "cached_per_s": round(n / cached_s, 1),
                "cache_speedup": round(ours_s / cached_s, 1),
            }
        )
    )


if __name__ == "__main__":
    # --help prints what the bench measures instead of starting it
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
