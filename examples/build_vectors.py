"""Build examples/speechmap-china-sample.vectors.npz: the embeddings the first analyses of the
example study compute (every scope, English only, Chinese only), by both bundled embedders
(USE multilingual v3 for scopes with Chinese, all-MiniLM-L6-v2 for English-only ones).

The study is imported into a throw-away database, `cli.py analyze` runs on the three scopes, and
every stored vector is written as float16 under its embedder key with its SHA-256 content hash.
`import --example` stores them, so a new user's first Analysis embeds nothing. Rebuild it when
the example, the bundled embedders or their keys change (tests/test_imports.py checks the keys
and a sample of vectors against the installed embedders). Takes minutes on a CPU.

Usage: python examples/build_vectors.py"""

import os
import sqlite3
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "examples" / "speechmap-china-sample.jsonl.gz"
OUT = ROOT / "examples" / "speechmap-china-sample.vectors.npz"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PARALLAX_EMBEDDER"}
        env |= {"PARALLAX_DATA_DIR": tmp, "PARALLAX_DATABASE_URL": f"sqlite:///{tmp}/parallax.db"}
        steps = [
            ["import", str(STUDY), "--source", "speechmap-china-sample"],  # the file: no vectors loaded
            ["analyze", "--json"],
            ["analyze", "--language", "en", "--json"],
            ["analyze", "--language", "zh", "--json"],
        ]
        cli = [sys.executable, str(ROOT / "cli.py")]
        for step in steps:
            subprocess.run([*cli, *step], env=env, check=True, stdout=subprocess.DEVNULL)
        write(Path(tmp) / "parallax.db")


def write(database: Path) -> None:
    """Write every vector stored in this SQLite database to OUT (float16, by embedder key)."""
    rows = sqlite3.connect(database).execute(
        "SELECT embedder, content_hash, vector FROM embedding ORDER BY embedder, content_hash"
    )
    by_key: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for key, digest, blob in rows:
        by_key[key][0].append(bytes.fromhex(digest))
        by_key[key][1].append(np.frombuffer(blob, dtype=np.float32))
    arrays: dict[str, np.ndarray] = {"keys": np.array(sorted(by_key))}
    for i, key in enumerate(sorted(by_key)):
        hashes, vectors = by_key[key]
        arrays[f"hashes_{i}"] = np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), 32)
        arrays[f"vectors_{i}"] = np.stack(vectors).astype(np.float16)
        print(f"{key}: {len(hashes)} vectors of {arrays[f'vectors_{i}'].shape[1]} dimensions", file=sys.stderr)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
