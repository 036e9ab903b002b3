"""Near-duplicate answers without comparing every pair: the search behind canned templates.

Answers with the same exact-normalised text are one group; groups whose vectors have cosine >=
TEMPLATE_SIMILARITY are joined. Up to EXACT_PAIRS_MAX distinct answers every pair is compared;
above, an inverted-file index (FAISS k-means cells drawn in a PCA subspace, each answer filed in
its IVF_PROBES nearest cells) limits the exact comparisons to answers that share a cell, which
grows about linearly with the number of answers. Only edges that keep the groups' connected
components are kept, so a group of thousands of near-identical answers stays small in memory.
"""

from __future__ import annotations

import numpy as np

TEMPLATE_SIMILARITY = 0.95
EXACT_PAIRS_MAX = 4096  # up to this many distinct short answers, templates compare every pair
IVF_CELL = 128  # answers per inverted-file cell
IVF_DIMS = 32  # the PCA subspace the cells are drawn in
IVF_MAX_CELLS = 4096  # past 512k distinct answers the cells grow instead (finding a cell stays cheap)
IVF_PROBES = 4  # cells each answer is filed in (recall checked against all pairs in the tests)
PAIR_BLOCK = 1024  # rows compared at once (bounds the similarity block's memory)


def unique_keys(keys: list) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse): the first row of each distinct key, and each row's key number."""
    number: dict = {}
    inverse = np.fromiter((number.setdefault(k, len(number)) for k in keys), dtype=np.int64, count=len(keys))
    first = np.full(len(number), len(keys), dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(len(keys)))
    return first, inverse


def _forest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges with the same connected components as the pairs (a, b), at most one per node: each
    node to the smallest node of its component (keeps memory bounded for large duplicate groups)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not len(a):
        return a, b
    nodes, local = np.unique(np.concatenate([a, b]), return_inverse=True)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (local[: len(a)], local[len(a) :])), shape=(len(nodes),) * 2)
    _, component = connected_components(graph, directed=False)
    root = np.full(component.max() + 1, len(nodes), dtype=np.int64)
    np.minimum.at(root, component, np.arange(len(nodes)))
    keep = root[component] != np.arange(len(nodes))
    return nodes[keep], nodes[root[component][keep]]


def _block_edges(vectors: np.ndarray, rows: np.ndarray, cols: np.ndarray, threshold: float, out: list) -> None:
    """Append the forest of pairs (rows[i], cols[j]) with cosine >= threshold, rows in slices."""
    for start in range(0, len(rows), PAIR_BLOCK):
        part = rows[start : start + PAIR_BLOCK]
        i, j = np.nonzero(vectors[part] @ vectors[cols].T >= threshold)
        a, b = part[i], cols[j]
        keep = a != b
        if keep.any():
            out.append(_forest(a[keep], b[keep]))


def similar_edges(
    vectors: np.ndarray, threshold: float = TEMPLATE_SIMILARITY, use_index: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Edges (a, b) whose connected components are those of all pairs of normalised vectors with
    cosine >= threshold (duplicate groups, without listing every pair of a large group).

    Up to EXACT_PAIRS_MAX vectors (or with use_index=False) every pair is compared. Above, an
    inverted-file index partitions the vectors: FAISS k-means cells in a PCA subspace, each vector
    filed in its IVF_PROBES nearest cells, and every vector is compared exactly with the vectors
    filed in its own cell — about linear in the number of vectors instead of quadratic."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # many small products: threads only spin-wait
        return _similar_edges(np.ascontiguousarray(vectors, dtype=np.float32), threshold, use_index)


def _similar_edges(vectors: np.ndarray, threshold: float, use_index: bool | None) -> tuple[np.ndarray, np.ndarray]:
    n = len(vectors)
    if use_index is None:
        use_index = n > EXACT_PAIRS_MAX
    edges: list[tuple[np.ndarray, np.ndarray]] = []
    if not use_index:
        everything = np.arange(n)
        _block_edges(vectors, everything, everything, threshold, edges)
    else:
        near = _nearest_cells(vectors)
        home = near[:, 0]
        filed_cell, filed_row = near.ravel(), np.repeat(np.arange(n), near.shape[1])
        filed_row, filed_cell = filed_row[filed_cell >= 0], filed_cell[filed_cell >= 0]
        by_home, by_filed = np.argsort(home, kind="stable"), np.argsort(filed_cell, kind="stable")
        cells = int(near.max()) + 2
        home_at = np.searchsorted(home[by_home], np.arange(cells))
        filed_at = np.searchsorted(filed_cell[by_filed], np.arange(cells))
        for c in range(cells - 1):
            queries = by_home[home_at[c] : home_at[c + 1]]
            if len(queries):
                _block_edges(vectors, queries, filed_row[by_filed[filed_at[c] : filed_at[c + 1]]], threshold, edges)
    if not edges:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([e[0] for e in edges]), np.concatenate([e[1] for e in edges])


def _nearest_cells(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """For each vector, its IVF_PROBES nearest cells (FAISS k-means on a PCA-reduced sample,
    about IVF_CELL vectors per cell), nearest first."""
    import faiss
    from sklearn.decomposition import PCA

    n, dim = vectors.shape
    rng = np.random.default_rng(seed)
    cells = int(np.clip(n // IVF_CELL, 16, IVF_MAX_CELLS))
    pca = PCA(n_components=min(IVF_DIMS, dim), svd_solver="covariance_eigh", random_state=seed)
    pca.fit(vectors[np.sort(rng.choice(n, min(n, 20_000), replace=False))])
    reduced = np.ascontiguousarray(pca.transform(vectors), dtype=np.float32)
    kmeans = faiss.Kmeans(
        reduced.shape[1], cells, niter=10, seed=seed, max_points_per_centroid=16, min_points_per_centroid=1
    )
    kmeans.train(reduced[np.sort(rng.choice(n, min(n, 16 * cells), replace=False))])
    _, near = kmeans.index.search(reduced, IVF_PROBES)
    return near


def duplicate_groups(
    keys: list, vectors: np.ndarray, use_index: bool | None = None, at: np.ndarray | None = None
) -> np.ndarray:
    """A group id per key: keys that are equal (exact-normalised texts) are one group, and groups
    whose first vectors have cosine >= TEMPLATE_SIMILARITY are joined (transitively). The vector
    of keys[i] is vectors[i], or vectors[at[i]] when `at` is given."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    first, inverse = unique_keys(keys)
    a, b = similar_edges(vectors[first if at is None else at[first]], TEMPLATE_SIMILARITY, use_index)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(len(first), len(first)))
    _, component = connected_components(graph, directed=False)
    return component[inverse]
