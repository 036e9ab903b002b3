"""Cached embeddings: one float32 vector per (content hash, embedder key), never computed twice.

Loading is bulk: one query over the embedder's rows (or a few IN-lists for a small scope), and
the blobs become one numpy array with a single `frombuffer` — a million vectors load in seconds."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from db.models import Embedding

IN_LIST = 900  # SQLite's bound-parameter limit, with room to spare
SCAN_FRACTION = 0.25  # above this share of the embedder's rows, one scan beats many IN-lists


def _stack(blobs: list[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(bytearray().join(blobs), dtype=np.float32).reshape(len(blobs), -1)  # writable


def vector_matrix(session: Session, embedder_key: str, hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, found) for these content hashes: rows[i] is the stored float32 vector of hashes[i]
    (zeros where none is stored) and found[i] says whether one was. Shape (len(hashes), dim)."""
    wanted = dict.fromkeys(hashes)
    total = session.scalar(select(func.count(Embedding.id)).where(Embedding.embedder == embedder_key)) or 0
    # the blob column without SQLAlchemy's per-value processing (the driver already gives bytes)
    stmt = select(Embedding.content_hash, type_coerce(Embedding.vector, NullType())).where(
        Embedding.embedder == embedder_key
    )
    connection = session.connection()
    if total and len(wanted) > SCAN_FRACTION * total:
        found = [r for r in connection.execute(stmt).all() if r[0] in wanted]
    else:
        unique, found = list(wanted) if total else [], []
        for start in range(0, len(unique), IN_LIST):
            found += connection.execute(stmt.where(Embedding.content_hash.in_(unique[start : start + IN_LIST]))).all()
    position = {r[0]: i for i, r in enumerate(found)}
    index = np.fromiter((position.get(h, -1) for h in hashes), dtype=np.int64, count=len(hashes))
    present = index >= 0
    if not found:
        return np.zeros((len(hashes), 0), dtype=np.float32), present
    if len(found) == len(hashes) and (index == np.arange(len(hashes))).all():
        return _stack([r[1] for r in found], len(found[0][1]) // 4), present  # already in order
    dim = len(found[0][1]) // 4
    stored = _stack([r[1] for r in found] + [bytes(4 * dim)], dim)  # a zero row last, for the missing
    return stored[np.where(present, index, len(found))], present


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
