"""Cached embeddings: one float32 vector per (content hash, embedder key), never computed twice.

Loading is bulk: one query over the embedder's rows (or a few IN-lists for a small scope), and
the blobs become one numpy array with a single `frombuffer` — a million vectors load in seconds."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Embedding

IN_LIST = 900  # SQLite's bound-parameter limit, with room to spare
SCAN_FRACTION = 0.25  # above this share of the embedder's rows, one scan beats many IN-lists


def _stack(blobs: list[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)


def vector_matrix(session: Session, embedder_key: str, hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, found) for these content hashes: rows[i] is the stored float32 vector of hashes[i]
    (zeros where none is stored) and found[i] says whether one was. Shape (len(hashes), dim)."""
    wanted = {h: None for h in hashes}
    total = session.scalar(select(func.count(Embedding.id)).where(Embedding.embedder == embedder_key)) or 0
    digests, blobs = [], []
    if total and len(wanted) > SCAN_FRACTION * total:
        stmt = select(Embedding.content_hash, Embedding.vector).where(Embedding.embedder == embedder_key)
        for digest, blob in session.execute(stmt.execution_options(yield_per=50_000)):
            if digest in wanted:
                digests.append(digest)
                blobs.append(blob)
    elif total:
        unique = list(wanted)
        for start in range(0, len(unique), IN_LIST):
            chunk = unique[start : start + IN_LIST]
            stmt = select(Embedding.content_hash, Embedding.vector).where(
                Embedding.embedder == embedder_key, Embedding.content_hash.in_(chunk)
            )
            for digest, blob in session.execute(stmt):
                digests.append(digest)
                blobs.append(blob)
    dim = len(blobs[0]) // 4 if blobs else 0
    stored = _stack(blobs, dim)
    position = {d: i for i, d in enumerate(digests)}
    index = np.fromiter((position.get(h, -1) for h in hashes), dtype=np.int64, count=len(hashes))
    found = index >= 0
    rows = np.zeros((len(hashes), dim), dtype=np.float32)
    rows[found] = stored[index[found]]
    return rows, found


def cached_vectors(session: Session, embedder_key: str, hashes: list[str]) -> dict[str, np.ndarray]:
    """Stored vectors for these content hashes and this embedder key, by hash."""
    rows, found = vector_matrix(session, embedder_key, hashes)
    return {h: rows[i] for i, h in enumerate(hashes) if found[i]}


def store_vectors(session: Session, embedder_key: str, hashes: list[str], vectors: np.ndarray) -> None:
    """Store one float32 vector per content hash for this embedder key (hashes not yet stored)."""
    session.add_all(
        Embedding(content_hash=h, embedder=embedder_key, dim=v.shape[0], vector=np.asarray(v, np.float32).tobytes())
        for h, v in zip(hashes, vectors, strict=True)
    )
    session.flush()
