"""Divergence and deflection analytics over stored answers.

Every view takes plain rows (see `db.repo.scope_answers`) and, where it needs them, one
normalised embedding per row; each returns a JSON-ready dict, or `{"error": why}` when the
scope cannot support it (no answers, one model, too few to cluster). The page and
`cli.py analyze` only render these."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np

from db.vocab import Label

NOT_ANSWERED = Label.NOT_ANSWERED
MIN_CLUSTER_ROWS = 10
CLUSTER_SAMPLE = 4000
TEMPLATE_MIN_PROMPTS = 3
TEMPLATE_SIMILARITY = 0.95
TEMPLATE_MAX_CHARS = 600
_WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]+")
_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
STOP = {
    "the",
    "and",
    "for",
    "that",
    "this",
    "with",
    "are",
    "was",
    "you",
    "your",
    "can",
    "not",
    "but",
    "have",
    "has",
    "its",
    "it's",
    "from",
    "they",
    "their",
    "there",
    "what",
    "which",
    "about",
    "into",
    "would",
    "also",
    "been",
    "were",
    "will",
    "more",
    "some",
    "such",
    "other",
    "than",
    "these",
    "those",
    "any",
    "all",
    "may",
    "our",
    "his",
    "her",
    "who",
    "how",
    "one",
    "i'm",
    "i",
    "is",
    "to",
    "of",
    "in",
    "a",
    "an",
    "on",
    "or",
    "as",
    "be",
    "by",
    "at",
    "if",
    "we",
    "do",
    "so",
    "no",
    "it",
    "my",
    "me",
    "here",
    "very",
    "should",
    "could",
    "的",
    "了",
    "是",
    "在",
    "和",
    "与",
    "也",
    "就",
    "都",
    "而",
    "及",
    "对",
    "等",
    "这",
    "那",
    "我",
    "你",
    "他",
    "我们",
    "一个",
    "以及",
    "这些",
    "可以",
    "进行",
    "没有",
    "因为",
    "所以",
    "但是",
    "如果",
    "我们的",
    "他们",
}


def tokens(text: str) -> list[str]:
    """Terms for naming clusters: English words, and Chinese split into words by jieba."""
    words = [w.lower() for w in _WORD.findall(text)]
    cjk = _CJK_RUN.findall(text)
    if cjk:
        import jieba

        jieba.setLogLevel(60)
        for run in cjk:
            words += [w for w in jieba.lcut(run) if len(w) > 1]
    return [w for w in words if w not in STOP and len(w) > 1]


def project(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates: PCA by default, t-SNE on request (slower, capped perplexity)."""
    n = len(vectors)
    if n < 3:
        return np.zeros((n, 2))
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(
            n_components=2, perplexity=min(30, max(2, (n - 1) // 3)), init="pca", random_state=seed
        ).fit_transform(vectors)
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(vectors)


def map_view(rows: list[dict], vectors: np.ndarray, clusters: np.ndarray | None = None, method: str = "pca") -> dict:
    """Points for the answer map: coordinates plus what the hover shows."""
    if len(rows) < 3:
        return {"error": f"the map needs at least 3 answers; this scope has {len(rows)}"}
    xy = project(vectors, method)
    return {
        "method": method,
        "points": [
            {
                "x": float(x),
                "y": float(y),
                "model": r["model_name"],
                "label": r["label"] or "unlabelled",
                "cluster": int(clusters[i]) if clusters is not None else -1,
                "prompt": r["prompt"][:120],
                "answer": r["text"][:200],
                "response_id": r["response_id"],
            }
            for i, (r, (x, y)) in enumerate(zip(rows, xy, strict=True))
        ],
    }


def cluster_labels(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """HDBSCAN cluster ids (-1 = noise) on normalised vectors reduced by PCA.

    Large scopes are clustered on a seeded sample and the rest joins its nearest sampled point,
    which keeps 20,000 answers within seconds."""
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    n = len(vectors)
    reduced = PCA(n_components=min(15, n - 1, vectors.shape[1]), random_state=seed).fit_transform(vectors)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, CLUSTER_SAMPLE, replace=False)) if n > CLUSTER_SAMPLE else np.arange(n)
    fitted = HDBSCAN(min_cluster_size=max(3, len(sample) // 50), copy=True).fit_predict(reduced[sample])
    if len(sample) == n:
        return fitted
    labels = KNeighborsClassifier(n_neighbors=1).fit(reduced[sample], fitted).predict(reduced)
    labels[sample] = fitted
    return labels


def name_clusters(texts: list[str], labels: np.ndarray, top: int = 5) -> dict[int, list[str]]:
    """The most distinctive terms of each cluster by class-based TF-IDF."""
    docs: dict[int, Counter] = defaultdict(Counter)
    for text, label in zip(texts, labels, strict=True):
        if label >= 0:
            docs[int(label)].update(tokens(text[:2000]))
    if not docs:
        return {}
    total = Counter()
    for counter in docs.values():
        total.update(counter)
    average_words = sum(total.values()) / len(docs)
    names = {}
    for label, counter in docs.items():
        size = sum(counter.values()) or 1
        scores = {term: (count / size) * np.log(1 + average_words / total[term]) for term, count in counter.items()}
        names[label] = [t for t, _ in sorted(scores.items(), key=lambda kv: -kv[1])[:top]]
    return names


def clusters_view(rows: list[dict], vectors: np.ndarray) -> tuple[dict, np.ndarray | None]:
    """Clusters with their names and sizes per model (and the per-row cluster ids)."""
    if len(rows) < MIN_CLUSTER_ROWS:
        return {"error": f"clustering needs at least {MIN_CLUSTER_ROWS} answers; this scope has {len(rows)}"}, None
    labels = cluster_labels(vectors)
    names = name_clusters([r["text"] for r in rows], labels)
    clusters = []
    for label in sorted(set(labels.tolist()) - {-1}):
        members = [r for r, lab in zip(rows, labels, strict=True) if lab == label]
        clusters.append(
            {
                "id": int(label),
                "terms": names.get(int(label), []),
                "size": len(members),
                "by_model": dict(Counter(r["model_name"] for r in members)),
                "labels": dict(Counter(r["label"] or "unlabelled" for r in members)),
            }
        )
    clusters.sort(key=lambda c: -c["size"])
    noise = int((labels == -1).sum())
    if not clusters:
        return {"error": "no clusters found: the answers are too spread out", "noise": noise}, labels
    return {"clusters": clusters, "noise": noise}, labels


def _normalise(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def templates_view(rows: list[dict], vectors: np.ndarray, min_prompts: int = TEMPLATE_MIN_PROMPTS) -> dict:
    """Groups of near-identical answers given to many different prompts (scripted deflections)."""
    candidates = [i for i, r in enumerate(rows) if r["text"].strip() and len(r["text"]) <= TEMPLATE_MAX_CHARS]
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_of: dict[str, int] = {}
    for i in candidates:  # identical after normalising case, digits and punctuation
        key = _normalise(rows[i]["text"])
        if key in first_of:
            parent[find(i)] = find(first_of[key])
        else:
            first_of[key] = i
    leaders = list(first_of.values())
    if leaders:  # near-identical by embedding
        block = vectors[leaders]
        for start in range(0, len(leaders), 1024):
            sims = block[start : start + 1024] @ block.T
            for a, b in zip(*np.nonzero(sims >= TEMPLATE_SIMILARITY), strict=True):
                if start + a < b:
                    parent[find(leaders[start + a])] = find(leaders[b])
    groups: dict[int, list[int]] = defaultdict(list)
    for i in candidates:
        groups[find(i)].append(i)
    templates = []
    for members in groups.values():
        prompts = {rows[i]["prompt"] for i in members}
        if len(prompts) < min_prompts:
            continue
        texts = Counter(rows[i]["text"] for i in members)
        templates.append(
            {
                "example": texts.most_common(1)[0][0],
                "uses": len(members),
                "prompts": len(prompts),
                "by_model": dict(Counter(rows[i]["model_name"] for i in members)),
                "labels": dict(Counter(rows[i]["label"] or "unlabelled" for i in members)),
            }
        )
    templates.sort(key=lambda t: -t["uses"])
    return {"templates": templates, "min_prompts": min_prompts, "similarity": TEMPLATE_SIMILARITY}


def divergence_view(rows: list[dict], vectors: np.ndarray, top: int = 50) -> dict:
    """Per prompt answered by several models: pairwise cosine distances and distance from consensus."""
    models = sorted({r["model_name"] for r in rows})
    if len(models) < 2:
        return {"error": "divergence needs answers from at least two models"}
    groups: dict[object, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, r in enumerate(rows):
        if r["text"].strip():
            key = ("suite", r["suite_prompt_id"]) if r["suite_prompt_id"] else ("exchange", r["exchange_id"])
            groups[key][r["model_name"]].append(i)
    index = {m: k for k, m in enumerate(models)}
    pair_sum, pair_n = np.zeros((len(models), len(models))), np.zeros((len(models), len(models)))
    prompts = []
    for members in groups.values():
        if len(members) < 2:
            continue
        names = sorted(members)
        means = np.stack([vectors[members[m]].mean(axis=0) for m in names])
        means /= np.linalg.norm(means, axis=1, keepdims=True).clip(1e-12)
        distance = 1 - means @ means.T
        consensus = {}
        for k, name in enumerate(names):
            others = np.delete(means, k, axis=0).mean(axis=0)
            others /= max(np.linalg.norm(others), 1e-12)
            consensus[name] = float(1 - means[k] @ others)
        for a in range(len(names)):
            for b in range(len(names)):
                if a != b:
                    pair_sum[index[names[a]], index[names[b]]] += distance[a, b]
                    pair_n[index[names[a]], index[names[b]]] += 1
        upper = distance[np.triu_indices(len(names), 1)]
        first = rows[members[names[0]][0]]
        prompts.append(
            {
                "prompt": first["prompt"],
                "topic": first["topic"],
                "models": len(names),
                "mean_distance": float(upper.mean()),
                "max_distance": float(upper.max()),
                "outlier": max(consensus, key=consensus.get),
                "from_consensus": consensus,
            }
        )
    if not prompts:
        return {"error": "no prompt in this scope was answered by two or more models"}
    prompts.sort(key=lambda p: -p["mean_distance"])
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(pair_n > 0, pair_sum / np.maximum(pair_n, 1), np.nan)
    return {
        "models": models,
        "matrix": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in matrix],
        "prompts": prompts[:top],
        "prompts_compared": len(prompts),
    }


def deflection_view(rows: list[dict], card: dict | None = None) -> dict:
    """Not-answered rates per model, model × topic and English/Chinese twins, raw (Wilson 95%) and
    corrected for the detector's measured errors (bootstrap 95%); answers left out of rates and
    provider blocks apart; agreement with other label sources; the detector card (see
    lib.analysis.deflection.view)."""
    from lib.analysis.deflection import view

    return view(rows, card)


def run_all(
    rows: list[dict], vectors: np.ndarray, method: str = "pca", embedder: str = "", fallback: str | None = None
) -> dict:
    """Every view for rows with text (and their vectors), plus deflection over all rows."""
    import time

    texted = [i for i, r in enumerate(rows) if r["text"].strip()]
    text_rows = [rows[i] for i in texted]
    vecs = vectors[texted] if len(texted) else np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 1))
    timings = {}
    start = time.perf_counter()
    clusters, labels = clusters_view(text_rows, vecs) if text_rows else ({"error": "no answers with text"}, None)
    timings["clusters_s"] = time.perf_counter() - start
    start = time.perf_counter()
    map_ = map_view(text_rows, vecs, labels, method) if text_rows else {"error": "no answers with text"}
    timings["map_s"] = time.perf_counter() - start
    start = time.perf_counter()
    divergence = divergence_view(text_rows, vecs) if text_rows else {"error": "no answers with text"}
    timings["divergence_s"] = time.perf_counter() - start
    start = time.perf_counter()
    templates = templates_view(text_rows, vecs) if text_rows else {"error": "no answers with text"}
    timings["templates_s"] = time.perf_counter() - start
    return {
        "n": len(rows),
        "models": sorted({r["model_name"] for r in rows}),
        "embedder": embedder,
        "embedder_fallback": fallback,
        "map": map_,
        "clusters": clusters,
        "templates": templates,
        "divergence": divergence,
        "deflection": deflection_view(rows),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def scope_texts(scope) -> list[str]:
    """The texts of the answers in scope that have any (what the embedder needs)."""
    from db import answers
    from db.engine import session_scope

    with session_scope() as session:
        return [r["text"] for r in answers.scope_answers(session, scope) if r["text"].strip()]


def data_version() -> tuple:
    """Changes whenever answers or labels are added or corrected (a cache key for analyses)."""
    from db import answers
    from db.engine import session_scope

    with session_scope() as session:
        return answers.answers_data_version(session)


def analyze(scope, method: str = "pca", progress=None) -> dict:
    """The analysis action: load the scope's answers, embed them (cached), compute every view.

    `scope` is a db AnswerScope (build it with lib.filters.answer_scope); `method` is pca or
    tsne; `progress(done, total)` reports embedding progress. Returns a JSON-ready dict."""
    from db import answers
    from db.engine import session_scope
    from lib.analysis.embeddings import embed_texts, get_embedder

    with session_scope() as session:
        rows = answers.scope_answers(session, scope)
        if not rows:
            empty = {"error": "no answers in this scope"}
            return {
                "n": 0,
                "models": [],
                "embedder": None,
                "map": empty,
                "clusters": empty,
                "templates": empty,
                "divergence": empty,
                "deflection": empty,
                "timings": {},
            }
        embedder = get_embedder()
        texted = [r["text"] for r in rows if r["text"].strip()]
        vectors_text = embed_texts(session, texted, embedder, progress=progress)
    vectors = np.zeros((len(rows), embedder.dim), dtype=np.float32)
    vectors[[i for i, r in enumerate(rows) if r["text"].strip()]] = vectors_text
    return run_all(rows, vectors, method, embedder.name, embedder.fallback_reason)
