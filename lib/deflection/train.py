"""Training data and fitting for the deflection classifier.

Data: `../shared/data/deflection/dev.jsonl` (see its README for sources and licences) plus every
human label stored in the database. `partial` rows are kept as their own class while fitting
and reported as `deflected` (the question is not fully answered)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from db import config
from db.vocab import LabelSource
from lib.deflection.model import ARTIFACT, TRAIN_CLASSES, Classifier, fit

DEV_FILE = config.ROOT.parent / "shared" / "data" / "deflection" / "dev.jsonl"
SEED = 0
# OpenAI's RBR rows are synthetic completions labelled by a rule over their properties; they
# teach refusal wording but blur the deflection boundary real models show, so they count less.
SOURCE_WEIGHTS = {"openai_rbr_gold": 0.3, LabelSource.HUMAN: 3.0}


class TrainingDataMissing(FileNotFoundError):
    """The shared training file is not there."""


def load_dev(path: Path = DEV_FILE) -> list[dict]:
    """The labelled dev rows (prompt, response, label, source, language, group)."""
    if not path.exists():
        raise TrainingDataMissing(f"{path} is missing: the training data lives in ../shared/data/deflection")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            row["group"] = group_key(row)
            rows.append(row)
    return rows


def group_key(row: dict) -> str:
    """Answers to the same question share a group (both languages of a SpeechMap question too)."""
    if row.get("source") == "speechmap_china":
        parts = row["id"].split("-")
        return f"speechmap:{parts[2]}" if len(parts) > 2 else f"speechmap:{row['prompt']}"
    return f"{row.get('source')}:{row['prompt']}"


def human_rows(db_url: str | None = None) -> list[dict]:
    """Human-corrected labels from the database, as training rows."""
    from db import labels
    from db.engine import session_scope

    with session_scope(db_url) as s:
        return [
            {"prompt": p, "response": t, "label": lab, "source": LabelSource.HUMAN, "group": f"human:{p}"}
            for p, t, lab in labels.human_labels(s, TRAIN_CLASSES)
        ]


def train(rows: list[dict], seed: int = SEED) -> Classifier:
    """Fit on rows; the version is a hash of the data, so the same data gives the same model."""
    from lib.deflection.features import VERSION

    digest = hashlib.sha256(f"features-{VERSION}".encode())
    for row in rows:
        digest.update(f"{row['prompt']}\x00{row['response']}\x00{row['label']}\x01".encode())
    meta = {
        "version": f"{len(rows)}-{digest.hexdigest()[:10]}",
        "features": VERSION,
        "rows": len(rows),
        "seed": seed,
        "sources": sorted({r.get("source", "?") for r in rows}),
    }
    return fit(
        [r["prompt"] for r in rows],
        [r["response"] for r in rows],
        [r["label"] for r in rows],
        seed=seed,
        meta=meta,
        weights=[SOURCE_WEIGHTS.get(r.get("source"), 1.0) for r in rows],
    )


def train_and_save(output: Path = ARTIFACT, include_db: bool = True, seed: int = SEED) -> dict:
    """Refit from the dev file (plus human labels) and write the artifact; returns its metadata."""
    rows = load_dev()
    if include_db:
        rows += human_rows()
    model = train(rows, seed)
    model.save(output)
    return model.meta
