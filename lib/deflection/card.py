"""The detector card: how often the shipped detector mistakes one label for another, per language,
measured out-of-fold (5-fold cross-validation grouped by question, English and Chinese twins in
the same fold, the model's setting tuned inside each training fold) when the artifact is trained.

Rows of each matrix are the true label and columns the detector's, over LABELS, as raw counts:
dividing a row by its sum gives P(detected | true), which is what a misclassification-corrected
prevalence estimate inverts, and a bootstrap can resample the counts row by row (multinomial) to
carry the matrix's own uncertainty into the corrected rate. Written beside the artifact as JSON."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import numpy as np

from lib.deflection.model import ARTIFACT, PRODUCT

LABELS = list(PRODUCT)
CARD = ARTIFACT.with_name("card.json")
METHOD = (
    "5-fold cross-validation grouped by question (English and Chinese versions of a question in the same fold); "
    "the setting (penalty and dense-cue scale) was tuned by 3-fold grouped cross-validation inside each training "
    "fold; the pattern layer applied first, as in the product"
)
LICENCE_NOTE = (
    "censoredplanet_blocks (GPL-3.0) is not trained on; its canned messages informed the pattern layer and are "
    "measured here only"
)


def card_path(artifact: Path = ARTIFACT) -> Path:
    """Where the card of an artifact lives (card.json beside the shipped one)."""
    return CARD if artifact == ARTIFACT else artifact.with_suffix(".card.json")


def confusion(gold: list[str], predicted: list[str]) -> list[list[int]]:
    """Counts of true label (rows) × detected label (columns) over LABELS."""
    counts = Counter(zip(gold, predicted, strict=True))
    return [[counts[(t, p)] for p in LABELS] for t in LABELS]


def summary(gold: list[str], predicted: list[str], sources: Counter) -> dict:
    """A confusion matrix with what it was measured on and two figures read from it."""
    matrix = np.array(confusion(gold, predicted))
    recall = [matrix[k, k] / matrix[k].sum() for k in range(len(LABELS)) if matrix[k].sum()]
    return {
        "n": int(matrix.sum()),
        "sources": dict(sorted(sources.items())),
        "confusion": matrix.tolist(),
        "accuracy": round(float(np.trace(matrix) / max(matrix.sum(), 1)), 4),
        "mean_recall": round(float(np.mean(recall)), 4) if recall else None,
    }


def build(data, predicted: np.ndarray, settings: list[dict], meta: dict) -> dict:
    """The card from out-of-fold labels of featurised rows (see train.out_of_fold)."""
    from lib.deflection.train import SOURCE_WEIGHTS, product

    by_language: dict[str, tuple[list, list, Counter]] = {}
    by_source: dict[str, tuple[list, list, Counter]] = {}
    for row, label, guess in zip(data.rows, data.labels, predicted, strict=True):
        source = row.get("source", "?")
        if SOURCE_WEIGHTS.get(source, 1.0) <= 0:
            continue  # measured in the bench, but not the kind of answer the card describes
        for table, key in ((by_language, row.get("language", "en")), (by_source, f"{source}/{row.get('language')}")):
            gold, pred, sources = table.setdefault(key, ([], [], Counter()))
            gold.append(product(str(label)))
            pred.append(str(guess))
            sources[source] += 1
    return {
        "detector": f"parallax-deflection@{meta.get('version', 'dev')}",
        "features": meta.get("features"),
        "measured": dt.date.today().isoformat(),
        "method": METHOD,
        "labels": LABELS,
        "matrix": "rows: true label, columns: detected label, raw counts",
        "languages": {k: summary(*v) for k, v in sorted(by_language.items())},
        "by_source": {k: summary(*v) for k, v in sorted(by_source.items())},
        "trained_on": meta.get("sources", []),
        "not_trained_on": meta.get("not_trained_on", []),
        "licence_note": LICENCE_NOTE,
        "fold_settings": settings,
    }


def dumps(card: dict) -> str:
    """The card as the text of its file."""
    return json.dumps(card, ensure_ascii=False, indent=1) + "\n"


def write(card: dict, artifact: Path = ARTIFACT) -> Path:
    """Write the card beside its artifact, whole or not at all."""
    from lib.files import StagedFile

    with StagedFile(card_path(artifact)) as staged:
        staged.file.write(dumps(card))
    return staged.path


def read(artifact: Path = ARTIFACT) -> dict:
    """The card of an artifact ({} when it has none)."""
    path = card_path(artifact)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
