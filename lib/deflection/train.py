"""Training data, fitting with nested tuning, and out-of-fold measurement for the detector.

Data: `../shared/data/deflection/dev.jsonl` and `extra.jsonl` (see their README for sources and
licences) plus every human label stored in the database. `partial` rows are kept as their own
class while fitting and reported as `deflected` (the question is not fully answered).

Weights: extra.jsonl is 90% English answered essays (speechmap_other), so only a fixed 30% of
those answered rows are kept and that source counts 0.3; OpenAI's synthetic RBR completions
(labelled by a rule over their properties) and the Chinese chatbots' canned block messages
(censoredplanet_blocks, GPL-3.0; ten distinct texts, which the pattern layer covers) are not
trained on, only measured. The setting (the logistic regression's penalty and the dense cues'
scale) is chosen by grouped cross-validation inside whatever rows a model is trained on."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupKFold

from db import config
from db.vocab import LabelSource
from lib.deflection import features as F
from lib.deflection import patterns
from lib.deflection.model import ARTIFACT, PRODUCT, TRAIN_CLASSES, Classifier, fit

DATA_DIR = config.ROOT.parent / "shared" / "data" / "deflection"
DEV_FILE = DATA_DIR / "dev.jsonl"
EXTRA_FILE = DATA_DIR / "extra.jsonl"
SOURCE_WEIGHTS = {
    "speechmap_other": 0.3,
    "openai_rbr_gold": 0.0,
    "censoredplanet_blocks": 0.0,
    LabelSource.HUMAN: 3.0,
}
ANSWERED_KEPT = {"speechmap_other": 0.3}  # share of a source's answered rows kept (by a hash of the id)
# the settings tuned by inner grouped cross-validation: the inverse penalty C of the logistic
# regression and the scale of the dense cues against the n-gram blocks
SETTINGS = ({"c": 10.0, "dense_weight": 0.5}, {"c": 30.0, "dense_weight": 0.25})
INNER_FOLDS = 3


class TrainingDataMissing(FileNotFoundError):
    """The shared training file is not there."""


def _read(path: Path) -> list[dict]:
    if not path.exists():
        raise TrainingDataMissing(f"{path} is missing: the training data lives in ../shared/data/deflection")
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        row["group"] = group_key(row)
    return rows


def load_dev(path: Path = DEV_FILE) -> list[dict]:
    """The labelled dev rows (prompt, response, label, source, language, model, group)."""
    return _read(path)


def load_extra(path: Path = EXTRA_FILE) -> list[dict]:
    """The labelled extra rows, same schema as `load_dev`."""
    return _read(path)


def load_rows() -> list[dict]:
    """Every labelled row of the shared data (dev, then extra)."""
    return load_dev() + load_extra()


def group_key(row: dict) -> str:
    """Answers to the same question share a group (both languages of a SpeechMap question, and an
    XSTest prompt across its v1 and v2 answers, too)."""
    source = row.get("source", "")
    if source.startswith("speechmap"):
        parts = row.get("id", "").split("-")
        return f"{source}:{parts[2]}" if len(parts) > 2 else f"{source}:{row['prompt']}"
    if source.startswith("xstest"):
        return f"xstest:{row['prompt']}"
    return f"{source}:{row['prompt']}"


def model_key(row: dict) -> str:
    """The model behind an answer, without its system-prompt variant ("llama-2-70b-chat (…)")."""
    return (row.get("model") or "?").split(" (")[0]


def row_weight(row: dict) -> float:
    """How much a row counts when fitting (0: measured only)."""
    source = row.get("source", "")
    weight = SOURCE_WEIGHTS.get(source, 1.0)
    kept = ANSWERED_KEPT.get(source)
    if kept and row.get("label") == "answered":
        bucket = int(hashlib.sha256(str(row.get("id", row["response"])).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return weight / kept if bucket < kept else 0.0
    return weight


def human_rows(db_url: str | None = None) -> list[dict]:
    """Human-corrected labels from the database, as training rows."""
    from db import labels
    from db.engine import session_scope

    with session_scope(db_url) as s:
        return [
            {
                "prompt": p,
                "response": t,
                "label": lab,
                "source": LabelSource.HUMAN,
                "language": lang or "en",
                "model": m,
                "group": f"human:{p}",
            }
            for p, lang, t, m, lab in labels.human_labels(s, TRAIN_CLASSES)
        ]


def product(label: str) -> str:
    """A training label as the detector reports it (partial -> deflected)."""
    return "deflected" if label == "partial" else label


@dataclass
class Featurised:
    """Rows with their features computed once, so folds and settings reuse them."""

    rows: list[dict]
    chars: sparse.csr_matrix
    words: sparse.csr_matrix
    dense: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    groups: np.ndarray
    canned: np.ndarray  # the pattern layer's label, or "" where it does not decide


def featurise(rows: list[dict]) -> Featurised:
    """Features, weights, groups and pattern verdicts for labelled rows."""
    chars, words, dense = F.featurize([r["prompt"] or "" for r in rows], [r["response"] or "" for r in rows])
    canned = [patterns.pattern_label(r["response"] or "") for r in rows]
    return Featurised(
        rows,
        chars,
        words,
        dense,
        np.array([r["label"] for r in rows]),
        np.array([row_weight(r) for r in rows]),
        np.array([r.get("group") or group_key(r) for r in rows]),
        np.array([c[0] if c else "" for c in canned], dtype=object),
    )


def fit_on(data: Featurised, idx: np.ndarray, setting: dict, meta: dict | None = None) -> Classifier:
    """A model fitted on the weighted rows `idx`, with the given setting (one of SETTINGS)."""
    idx = idx[data.weights[idx] > 0]
    model = fit(
        data.chars[idx], data.words[idx], data.dense[idx], data.labels[idx], data.weights[idx], meta=meta, **setting
    )
    model.meta["setting"] = dict(setting)
    return model


def decided(model: Classifier, data: Featurised, idx: np.ndarray) -> np.ndarray:
    """The detector's labels for rows `idx`: patterns first, then the model."""
    return label_rows(model.predict_features(data.chars[idx], data.words[idx], data.dense[idx]), data.canned[idx])


def label_rows(probs: np.ndarray, canned: np.ndarray) -> np.ndarray:
    """Argmax labels, with the pattern layer's verdict where it has one."""
    labels = np.array(PRODUCT, dtype=object)[probs.argmax(axis=1)]
    return np.where(canned != "", canned, labels)


def objective(data: Featurised, idx: np.ndarray, predicted: np.ndarray) -> float:
    """Mean macro-F1 over the (source, language) slices of the weighted rows `idx`."""
    slices: dict[tuple, list[int]] = {}
    for k, i in enumerate(idx):
        if data.weights[i] > 0:
            slices.setdefault((data.rows[i]["source"], data.rows[i].get("language")), []).append(k)
    scores = []
    for ks in slices.values():
        gold = [product(data.labels[idx[k]]) for k in ks]
        scores.append(f1_score(gold, list(predicted[ks]), labels=sorted(set(gold)), average="macro", zero_division=0))
    return float(np.mean(scores)) if scores else 0.0


def tune(data: Featurised, idx: np.ndarray, folds: int = INNER_FOLDS) -> dict:
    """The setting (one of SETTINGS) chosen by grouped cross-validation within rows `idx`; the
    first on a tie."""
    idx = idx[data.weights[idx] > 0]
    folds = min(folds, len(set(data.groups[idx])))
    if folds < 2:
        return SETTINGS[0]
    scores = []
    for setting in SETTINGS:
        probs = np.zeros((len(idx), len(PRODUCT)))
        for inner_train, inner_test in GroupKFold(folds).split(idx, groups=data.groups[idx]):
            model = fit_on(data, idx[inner_train], setting)
            test = idx[inner_test]
            probs[inner_test] = model.predict_features(data.chars[test], data.words[test], data.dense[test])
        scores.append(objective(data, idx, label_rows(probs, data.canned[idx])))
    return SETTINGS[int(np.argmax(scores))]  # argmax takes the first of equal scores


def fit_tuned(data: Featurised, idx: np.ndarray, meta: dict | None = None) -> Classifier:
    """Tune on rows `idx` (inner folds), then fit on all of them."""
    return fit_on(data, idx, tune(data, idx), meta)


def out_of_fold(
    data: Featurised, keys: np.ndarray, folds: int = 5, confusions: bool = False
) -> tuple[np.ndarray, list[dict]]:
    """Labels for every row from models that never saw its key (question group or model), each
    tuned only on its own training folds; and each fold's chosen settings. With `confusions`, each
    fold's settings also hold its `test` row indices and a detector card measured inside its
    training rows only (see `inner_confusions`), for correcting that fold's rates."""
    predicted = np.array([""] * len(data.rows), dtype=object)
    settings = []
    everything = np.arange(len(data.rows))
    for train_idx, test_idx in GroupKFold(folds).split(everything, groups=keys):
        model = fit_tuned(data, train_idx)
        predicted[test_idx] = decided(model, data, test_idx)
        settings.append(dict(model.meta["setting"]))
        if confusions:
            settings[-1] |= {"test": test_idx, "card": inner_confusions(data, train_idx, model.meta["setting"])}
    return predicted, settings


def inner_confusions(data: Featurised, idx: np.ndarray, setting: dict, folds: int = 5) -> dict:
    """A detector card (see `card.build`) measured out-of-fold within rows `idx` alone (grouped by
    question, as the shipped card is), with the setting already chosen for them: per-language and
    per-source confusion counts, from which `lib.analysis.rates.card_matrices` picks the matrix
    that corrects each language's rates, exactly as the product picks it from the shipped card."""
    from types import SimpleNamespace

    from lib.deflection import card as detector_card

    idx = idx[data.weights[idx] > 0]
    predicted = np.empty(len(idx), dtype=object)
    for inner_train, inner_test in GroupKFold(min(folds, len(set(data.groups[idx])))).split(
        idx, groups=data.groups[idx]
    ):
        predicted[inner_test] = decided(fit_on(data, idx[inner_train], setting), data, idx[inner_test])
    inner = SimpleNamespace(rows=[data.rows[i] for i in idx], labels=data.labels[idx])
    return detector_card.build(inner, predicted, [], {})


def version_of(rows: list[dict]) -> str:
    """A version that changes with the features and the training data."""
    digest = hashlib.sha256(f"features-{F.VERSION}".encode())
    for row in rows:
        digest.update(f"{row['prompt']}\x00{row['response']}\x00{row['label']}\x01".encode())
    return f"{len(rows)}-{digest.hexdigest()[:10]}"


def train(rows: list[dict], data: Featurised | None = None) -> Classifier:
    """Fit on rows with settings tuned inside them; the same data gives the same model."""
    data = data or featurise(rows)
    used = [r for r, w in zip(rows, data.weights, strict=True) if w > 0]
    meta = {
        "version": version_of(rows),
        "features": F.VERSION,
        "rows": len(used),
        "sources": sorted({r.get("source", "?") for r in used}),
        "not_trained_on": sorted({r.get("source", "?") for r in rows} - {r.get("source", "?") for r in used}),
    }
    return fit_tuned(data, np.arange(len(rows)), meta)


def train_and_save(output: Path = ARTIFACT, include_db: bool = True) -> dict:
    """Refit from the shared data (plus human labels), write the artifact and its detector card
    (out-of-fold confusion matrices, grouped by question); returns the artifact's metadata.

    Both files are written whole or not at all, and only once both are ready (lib.files.StagedGroup:
    both finished, then both renamed): an interrupted or failed run (a full disk: OutputWriteError
    naming them) leaves the previous artifact and card as they were, never one without the other."""
    from lib.deflection import card as detector_card
    from lib.files import StagedGroup

    rows = load_rows()
    if include_db:
        rows += human_rows()
    data = featurise(rows)
    model = train(rows, data)
    predicted, settings = out_of_fold(data, data.groups)
    card = detector_card.build(data, predicted, settings, model.meta)
    with StagedGroup() as group:
        weights = group.add(Path(output), mode="wb", encoding=None)
        written = group.add(detector_card.card_path(Path(output)))
        model.write_to(weights.file)
        written.file.write(detector_card.dumps(card))
    return model.meta
