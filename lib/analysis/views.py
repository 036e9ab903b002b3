"""Divergence and deflection analytics over stored answers.

Every view takes plain rows (see `db.answers.scope_answers`) and, where it needs them, one
normalised embedding per row; each returns a JSON-ready dict, or `{"error": why}` when the
scope cannot support it (no answers, one model, too few to cluster). The page and
`cli.py analyze` only render these."""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict

import numpy as np

from db.vocab import Label
from lib.analysis.duplicates import TEMPLATE_SIMILARITY, duplicate_groups, unique_keys

NOT_ANSWERED = Label.NOT_ANSWERED
MIN_CLUSTER_ROWS = 10
CLUSTER_SAMPLE = 4000
TEMPLATE_MIN_PROMPTS = 3
TEMPLATE_MAX_CHARS = 600
PCA_SAMPLE = 20_000  # rows a PCA is fitted on (then applied to all)
MAP_POINTS = 20_000  # the map shows a seeded sample of larger scopes (a browser draws 20k fast)
TSNE_POINTS = 5_000
NAME_SAMPLE = 500  # members per cluster read to name it
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

    return PCA(n_components=2, svd_solver="covariance_eigh", random_state=seed).fit_transform(vectors)


def map_view(
    rows: list[dict], vectors: np.ndarray, clusters: np.ndarray | None = None, method: str = "pca", seed: int = 0
) -> dict:
    """Points for the answer map: coordinates plus what the hover shows. Large scopes show a seeded
    sample (MAP_POINTS, or TSNE_POINTS for t-SNE); `shown` and `total` say so."""
    if len(rows) < 3:
        return {"error": f"the map needs at least 3 answers; this scope has {len(rows)}"}
    cap = TSNE_POINTS if method == "tsne" else MAP_POINTS
    shown = np.arange(len(rows))
    if len(rows) > cap:
        shown = np.sort(np.random.default_rng(seed).choice(len(rows), cap, replace=False))
    xy = project(vectors[shown], method, seed)
    points = []
    for i, (x, y) in zip(shown.tolist(), xy, strict=True):
        r = rows[i]
        points.append(
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
        )
    return {"method": method, "points": points, "shown": len(points), "total": len(rows)}


def _normalise(text: str) -> str:
    """The text with case, punctuation, symbols and spacing ignored (exact-normalised identity)."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def cluster_labels(vectors: np.ndarray, keys: list | None = None, seed: int = 0) -> np.ndarray:
    """HDBSCAN cluster ids (-1 = noise) on normalised vectors reduced by PCA.

    Rows with the same key (the exact-normalised text) are one point weighted by their count, so
    identical answers always share a cluster: a point stands for min(count, min_cluster_size)
    copies (a point with that many copies is a cluster on its own, as its full count would make
    it). Large scopes are clustered on a seeded sample of distinct texts and the rest joins its
    nearest sampled point (a FAISS flat search), which keeps a million answers within seconds."""
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA

    n = len(vectors)
    first, inverse = unique_keys(list(range(n)) if keys is None else keys)
    distinct = len(first)
    min_size = max(3, min(n, CLUSTER_SAMPLE) // 50)
    if distinct < 3:  # one or two distinct texts: each repeated text is a cluster of its own
        counts = np.bincount(inverse)
        return np.where(counts >= min_size, np.arange(distinct), -1)[inverse]
    rng = np.random.default_rng(seed)
    fit_on = first if distinct <= PCA_SAMPLE else first[np.sort(rng.choice(distinct, PCA_SAMPLE, replace=False))]
    pca = PCA(n_components=min(15, len(fit_on) - 1, vectors.shape[1]), svd_solver="covariance_eigh", random_state=seed)
    pca.fit(vectors[fit_on])
    step = 100_000  # transformed in slices: no second copy of a million vectors
    reduced = np.concatenate([pca.transform(vectors[first[k : k + step]]) for k in range(0, distinct, step)])
    sample = np.arange(distinct)
    if distinct > CLUSTER_SAMPLE:
        sample = np.sort(rng.choice(distinct, CLUSTER_SAMPLE, replace=False))
    copies = np.minimum(np.bincount(inverse)[sample], min_size)
    fitted = HDBSCAN(min_cluster_size=min_size, copy=True).fit_predict(np.repeat(reduced[sample], copies, axis=0))
    labels = np.full(distinct, -1, dtype=np.int64)
    labels[sample] = fitted[np.cumsum(copies) - copies]  # a point's copies share their label
    if len(sample) < distinct:
        rest = np.setdiff1d(np.arange(distinct), sample)
        import faiss

        nearest = faiss.IndexFlatL2(reduced.shape[1])
        nearest.add(np.ascontiguousarray(reduced[sample], dtype=np.float32))
        _, found = nearest.search(np.ascontiguousarray(reduced[rest], dtype=np.float32), 1)
        labels[rest] = labels[sample][found[:, 0]]
    return labels[inverse]


def name_clusters(texts: list[str], labels: np.ndarray, top: int = 5, seed: int = 0) -> dict[int, list[str]]:
    """The most distinctive terms of each cluster by class-based TF-IDF (over at most
    NAME_SAMPLE seeded members per cluster)."""
    members: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(np.asarray(labels).tolist()):
        if label >= 0:
            members[label].append(i)
    if not members:
        return {}
    rng = np.random.default_rng(seed)
    docs: dict[int, Counter] = {}
    for label, idx in members.items():
        if len(idx) > NAME_SAMPLE:
            idx = rng.choice(idx, NAME_SAMPLE, replace=False).tolist()
        counter: Counter = Counter()
        for text, count in Counter(texts[i] for i in idx).items():
            for term, k in Counter(tokens(text[:2000])).items():
                counter[term] += k * count
        docs[label] = counter
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


def clusters_view(
    rows: list[dict], vectors: np.ndarray, keys: list[str] | None = None
) -> tuple[dict, np.ndarray | None]:
    """Clusters with their names and sizes per model (and the per-row cluster ids); answers with
    the same exact-normalised text (`keys`, computed when not given) share a cluster."""
    if len(rows) < MIN_CLUSTER_ROWS:
        return {"error": f"clustering needs at least {MIN_CLUSTER_ROWS} answers; this scope has {len(rows)}"}, None
    texts = [r["text"] for r in rows]
    labels = cluster_labels(vectors, keys if keys is not None else [_normalise(t) for t in texts])
    names = name_clusters(texts, labels)
    by_model: dict[int, Counter] = defaultdict(Counter)
    by_label: dict[int, Counter] = defaultdict(Counter)
    for r, lab in zip(rows, labels.tolist(), strict=True):
        if lab >= 0:
            by_model[lab][r["model_name"]] += 1
            by_label[lab][r["label"] or "unlabelled"] += 1
    clusters = [
        {
            "id": label,
            "terms": names.get(label, []),
            "size": sum(by_model[label].values()),
            "by_model": dict(by_model[label]),
            "labels": dict(by_label[label]),
        }
        for label in sorted(by_model)
    ]
    clusters.sort(key=lambda c: -c["size"])
    noise = int((labels == -1).sum())
    if not clusters:
        return {"error": "no clusters found: the answers are too spread out", "noise": noise}, labels
    return {"clusters": clusters, "noise": noise}, labels


def templates_view(
    rows: list[dict],
    vectors: np.ndarray,
    min_prompts: int = TEMPLATE_MIN_PROMPTS,
    use_index: bool | None = None,
    keys: list[str] | None = None,
) -> dict:
    """Groups of near-identical answers given to many different prompts (scripted deflections).
    `keys` are the rows' exact-normalised texts when the caller has them already."""
    candidates = np.array(
        [i for i, r in enumerate(rows) if r["text"].strip() and len(r["text"]) <= TEMPLATE_MAX_CHARS], dtype=np.int64
    )
    templates = []
    if len(candidates):
        texts = [keys[i] if keys is not None else _normalise(rows[i]["text"]) for i in candidates.tolist()]
        group = duplicate_groups(texts, vectors, use_index, at=candidates)
        order = np.argsort(group, kind="stable")
        _, starts, sizes = np.unique(group[order], return_index=True, return_counts=True)
        for start, size in zip(starts.tolist(), sizes.tolist(), strict=True):
            if size < min_prompts:
                continue
            members = candidates[order[start : start + size]].tolist()
            prompts = {rows[i]["prompt"] for i in members}
            if len(prompts) < min_prompts:
                continue
            examples = Counter(rows[i]["text"] for i in members)
            templates.append(
                {
                    "example": examples.most_common(1)[0][0],
                    "uses": size,
                    "prompts": len(prompts),
                    "by_model": dict(Counter(rows[i]["model_name"] for i in members)),
                    "labels": dict(Counter(rows[i]["label"] or "unlabelled" for i in members)),
                }
            )
    templates.sort(key=lambda t: (-t["uses"], t["example"]))
    return {"templates": templates, "min_prompts": min_prompts, "similarity": TEMPLATE_SIMILARITY}


def _distance(cosine):
    """Cosine distance clipped to its true range [0, 2] (rounding makes -0.0 and -4.8e-07)."""
    return np.clip(1.0 - cosine, 0.0, 2.0) + 0.0  # + 0.0 turns -0.0 into 0.0


def divergence_view(rows: list[dict], vectors: np.ndarray, top: int = 50) -> dict:
    """Per prompt answered by several models: pairwise cosine distances and distance from consensus
    (each model's answers to a prompt are averaged first)."""
    models = sorted({r["model_name"] for r in rows})
    if len(models) < 2:
        return {"error": "divergence needs answers from at least two models"}
    index = {m: k for k, m in enumerate(models)}
    prompt_of: dict[tuple, int] = {}
    first_row: list[int] = []
    texted, cells = [], []
    for i, r in enumerate(rows):
        if r["text"].strip():
            key = ("suite", r["suite_prompt_id"]) if r["suite_prompt_id"] else ("exchange", r["exchange_id"])
            number = prompt_of.setdefault(key, len(prompt_of))
            if number == len(first_row):
                first_row.append(i)
            texted.append(i)
            cells.append(number * len(models) + index[r["model_name"]])
    if not texted:
        return {"error": "no prompt in this scope was answered by two or more models"}
    # one mean vector per (prompt, model) cell: sort the rows by cell and add each run up
    cells = np.asarray(cells, dtype=np.int64)
    order = np.argsort(cells, kind="stable")
    cell_ids, starts = np.unique(cells[order], return_index=True)
    from scipy.sparse import csr_matrix

    indptr = np.append(starts, len(order))
    members = csr_matrix((np.ones(len(order), np.float32), np.asarray(texted)[order], indptr), (len(starts), len(rows)))
    means = np.asarray(members @ vectors)  # the sum of each cell's vectors, without copying them
    means /= np.linalg.norm(means, axis=1, keepdims=True).clip(1e-12)
    cell_prompt, cell_model = cell_ids // len(models), cell_ids % len(models)
    bounds = np.searchsorted(cell_prompt, np.arange(len(prompt_of) + 1))
    sizes = np.diff(bounds)
    pair_sum, pair_n = np.zeros(len(models) ** 2), np.zeros(len(models) ** 2)
    mean_d, max_d = np.full(len(sizes), -1.0), np.zeros(len(sizes))
    consensus: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # prompt -> (model ids, distances)
    for k in sorted(set(sizes.tolist()) - {0, 1}):  # prompts answered by k models, in batches
        upper = np.triu_indices(k, 1)
        of_size = np.nonzero(sizes == k)[0]
        for batch in np.array_split(of_size, max(1, len(of_size) // 4096)):
            at = bounds[batch][:, None] + np.arange(k)  # (prompts, k) cells
            block = means[at]
            distance = _distance(block @ block.transpose(0, 2, 1))
            mean_d[batch] = distance[:, upper[0], upper[1]].mean(axis=1)
            max_d[batch] = distance[:, upper[0], upper[1]].max(axis=1)
            others = block.sum(axis=1, keepdims=True) - block  # each model's consensus: the others
            others /= np.linalg.norm(others, axis=2, keepdims=True).clip(1e-12)
            from_consensus = _distance(np.einsum("pkd,pkd->pk", block, others))
            ids = cell_model[at]
            pair = (ids[:, :, None] * len(models) + ids[:, None, :]).ravel()
            pair_sum += np.bincount(pair, weights=distance.ravel(), minlength=len(models) ** 2)
            pair_n += np.bincount(pair, minlength=len(models) ** 2)
            consensus.update(zip(batch.tolist(), zip(ids, from_consensus, strict=True), strict=True))
    compared = np.nonzero(mean_d >= 0)[0]
    if not len(compared):
        return {"error": "no prompt in this scope was answered by two or more models"}
    prompts = []
    for number in compared[np.argsort(-mean_d[compared], kind="stable")][:top].tolist():
        ids, distances = consensus[number]
        by_model = {models[m]: float(d) for m, d in zip(ids.tolist(), distances, strict=True)}
        first = rows[first_row[number]]
        prompts.append(
            {
                "prompt": first["prompt"],
                "topic": first["topic"],
                "models": len(ids),
                "mean_distance": float(mean_d[number]),
                "max_distance": float(max_d[number]),
                "outlier": max(by_model, key=by_model.get),
                "from_consensus": by_model,
            }
        )
    pair_sum, pair_n = pair_sum.reshape(len(models), -1), pair_n.reshape(len(models), -1)
    np.fill_diagonal(pair_n, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(pair_n > 0, pair_sum / np.maximum(pair_n, 1), np.nan)
    return {
        "models": models,
        "matrix": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in matrix],
        "prompts": prompts,
        "prompts_compared": len(compared),
    }


def deflection_view(rows: list[dict], card: dict | None = None) -> dict:
    """Not-answered rates per model, model × topic and English/Chinese twins, raw (Wilson 95%) and
    corrected for the detector's measured errors (bootstrap 95%); answers left out of rates and
    provider blocks apart; agreement with other label sources; the detector card (see
    lib.analysis.deflection.view)."""
    from lib.analysis.deflection import view

    return view(rows, card)


def run_all(rows: list[dict], vectors: np.ndarray, method: str = "pca", embedder=None) -> dict:
    """Every view for rows with text (and their vectors), plus deflection over all rows.

    `embedder` is the Embedder the vectors came from (or its name): the result says which it was,
    whether it is a fallback and why, and how long answers were embedded."""
    import faiss  # noqa: F401 - loaded before the limit below, so that the limit covers its OpenMP threads
    from threadpoolctl import threadpool_limits

    with threadpool_limits(analysis_threads()):
        return _run_all(rows, vectors, method, embedder)


def analysis_threads() -> int:
    """Threads for the views' maths (PARALLAX_ANALYSIS_THREADS, default 1). On a shared machine,
    threaded BLAS/OpenMP mostly spin-wait: under load, one thread ran the 200k benchmark's
    projection 20× and its eigen-decompositions 50× faster than two."""
    value = os.environ.get("PARALLAX_ANALYSIS_THREADS", "1")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def _run_all(rows: list[dict], vectors: np.ndarray, method: str, embedder) -> dict:
    import time

    texted = [i for i, r in enumerate(rows) if r["text"].strip()]
    text_rows = [rows[i] for i in texted]
    vecs = vectors[texted] if len(texted) else np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 1))
    none = {"error": "no answers with text"}
    keys: list[str] = []  # exact-normalised texts, shared by clusters and templates
    steps = [
        ("normalise", lambda: keys.extend(_normalise(r["text"]) for r in text_rows)),
        ("clusters", lambda: clusters_view(text_rows, vecs, keys) if text_rows else (none, None)),
        ("map", lambda: map_view(text_rows, vecs, labels, method) if text_rows else none),
        ("divergence", lambda: divergence_view(text_rows, vecs) if text_rows else none),
        ("templates", lambda: templates_view(text_rows, vecs, keys=keys) if text_rows else none),
        ("deflection", lambda: deflection_view(rows)),
    ]
    views, timings, labels = {}, {}, None
    for name, compute in steps:
        start = time.perf_counter()
        views[name] = compute()
        if name == "clusters":
            views[name], labels = views[name]
        timings[f"{name}_s"] = round(time.perf_counter() - start, 3)
    return {
        "n": len(rows),
        "models": sorted({r["model_name"] for r in rows}),
        "embedder": getattr(embedder, "name", embedder),
        "embedder_fallback": getattr(embedder, "fallback_reason", None),
        "embedder_note": getattr(embedder, "note", ""),
        "multilingual": bool(getattr(embedder, "multilingual", False)),
        **views,
        "timings": timings,
    }


def scope_texts(scope) -> list[str]:
    """The texts of the answers in scope that have any (what the embedder needs)."""
    from db import answers
    from db.engine import session_scope

    with session_scope() as session:
        return answers.scope_texts(session, scope)


def data_version() -> tuple:
    """Changes whenever answers or labels are added or corrected (a cache key for analyses)."""
    from db import answers
    from db.engine import session_scope

    with session_scope() as session:
        return answers.answers_data_version(session)


def analyze(scope, method: str = "pca", progress=None) -> dict:
    """The analysis action: load the scope's answers, embed them (cached) with the embedder their
    languages call for (multilingual when any is Chinese), compute every view.

    `scope` is a db AnswerScope (build it with lib.filters.answer_scope); `method` is pca or
    tsne; `progress(done, total)` reports embedding progress. Returns a JSON-ready dict."""
    import time

    from db import answers
    from db.engine import session_scope
    from lib.analysis.embeddings import embed_texts, embedder_for

    start = time.perf_counter()
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
        load_s = time.perf_counter() - start
        texted = [i for i, r in enumerate(rows) if r["text"].strip()]
        texts = [rows[i]["text"] for i in texted]
        start = time.perf_counter()
        embedder = embedder_for(texts)
        vectors_text = embed_texts(session, texts, embedder, progress=progress)
        embed_s = time.perf_counter() - start
    vectors = np.zeros((len(rows), vectors_text.shape[1] if texted else embedder.dim), dtype=np.float32)
    vectors[texted] = vectors_text
    result = run_all(rows, vectors, method, embedder)
    result["timings"] = {"load_s": round(load_s, 3), "embed_s": round(embed_s, 3), **result["timings"]}
    return result
