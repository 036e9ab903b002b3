"""Cached embeddings: one float32 vector per (content hash, embedder), never computed twice."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Embedding


def cached_vectors(session: Session, embedder_name: str, hashes: list[str]) -> dict[str, np.ndarray]:
    """Stored vectors for these content hashes and this embedder, by hash."""
    found: dict[str, np.ndarray] = {}
    unique = list(dict.fromkeys(hashes))
    for start in range(0, len(unique), 900):  # stay under SQLite's bound-parameter limit
        chunk = unique[start : start + 900]
        rows = session.execute(
            select(Embedding.content_hash, Embedding.vector).where(
                Embedding.embedder == embedder_name, Embedding.content_hash.in_(chunk)
            )
        )
        for digest, blob in rows:
            found[digest] = np.frombuffer(blob, dtype=np.float32)
    return found


def store_vectors(session: Session, embedder_name: str, hashes: list[str], vectors: np.ndarray) -> None:
    """Store one float32 vector per content hash for this embedder (hashes not yet stored)."""
    session.add_all(
        Embedding(content_hash=h, embedder=embedder_name, dim=v.shape[0], vector=np.asarray(v, np.float32).tobytes())
        for h, v in zip(hashes, vectors, strict=True)
    )
    session.flush()
