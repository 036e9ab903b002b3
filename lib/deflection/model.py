"""The statistical layer: a linear model (logistic loss, one-vs-rest, fitted by SGD) over hashed
TF-IDF n-grams and dense cues, stored as plain arrays in an .npz file (loaded with
allow_pickle=False, so loading can never run code)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from lib.deflection import features as F

ARTIFACT = Path(__file__).resolve().parent / "model.npz"
TRAIN_CLASSES = ("answered", "deflected", "partial", "refused")
PRODUCT = ("answered", "refused", "deflected")  # what the detector reports; partial counts as deflected
DENSE_WEIGHT = 0.5  # scale of the standardised dense block against the unit-norm n-gram blocks


@dataclass
class Classifier:
    """Fitted weights and the transforms they expect."""

    classes: list[str]
    char_idf: np.ndarray
    word_idf: np.ndarray
    dense_mean: np.ndarray
    dense_std: np.ndarray
    coef: sparse.csr_matrix  # classes × features
    intercept: np.ndarray
    meta: dict = field(default_factory=dict)

    def design(self, chars: sparse.csr_matrix, words: sparse.csr_matrix, dense: np.ndarray) -> sparse.csr_matrix:
        """The design matrix from featurised answers."""
        scaled = (dense - self.dense_mean) / self.dense_std * DENSE_WEIGHT
        return sparse.hstack(
            [
                F.tfidf(chars, self.char_idf),
                F.tfidf(words, self.word_idf),
                sparse.csr_matrix(scaled.astype(np.float32)),
            ],
            format="csr",
        )

    def predict_features(self, chars: sparse.csr_matrix, words: sparse.csr_matrix, dense: np.ndarray) -> np.ndarray:
        """Probabilities over PRODUCT (partial folded into deflected) from featurised answers."""
        raw = np.asarray((self.design(chars, words, dense) @ self.coef.T).todense()) + self.intercept
        probs = 1.0 / (1.0 + np.exp(-np.clip(raw, -30, 30)))  # one-vs-rest, then normalised
        probs /= probs.sum(axis=1, keepdims=True)
        column = {c: k for k, c in enumerate(self.classes)}
        partial = probs[:, column["partial"]] if "partial" in column else 0.0
        return np.stack(
            [probs[:, column["answered"]], probs[:, column["refused"]], probs[:, column["deflected"]] + partial], axis=1
        )

    def predict_proba(self, prompts: list[str], answers: list[str]) -> np.ndarray:
        """Probabilities over PRODUCT, one row per answer."""
        return self.predict_features(*F.featurize(prompts, answers))

    def save(self, path: Path = ARTIFACT) -> None:
        """Write the weights as plain arrays (no pickle)."""
        dense = self.coef.toarray()
        columns = np.flatnonzero(np.abs(dense).max(axis=0) > 0).astype(np.int32)
        np.savez_compressed(
            path,
            classes=np.array(self.classes),
            char_idf=self.char_idf.astype(np.float16),
            word_idf=self.word_idf.astype(np.float16),
            dense_mean=self.dense_mean,
            dense_std=self.dense_std,
            coef_columns=columns,
            coef_values=dense[:, columns].astype(np.float16),
            coef_shape=np.array(dense.shape),
            intercept=self.intercept,
            meta=np.array(json.dumps(self.meta, ensure_ascii=False)),
        )

    @classmethod
    def load(cls, path: Path = ARTIFACT) -> Classifier:
        """Read weights written by `save`."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("features") != F.VERSION:
                raise RuntimeError(
                    f"{path} was trained for features version {meta.get('features')!r}, the code has "
                    f"{F.VERSION!r}: retrain with `python cli.py train-deflection`"
                )
            shape, columns = tuple(z["coef_shape"]), z["coef_columns"]
            values = z["coef_values"].astype(np.float32)
            rows = np.repeat(np.arange(shape[0]), len(columns))
            coef = sparse.csr_matrix((values.ravel(), (rows, np.tile(columns, shape[0]))), shape=shape)
            return cls(
                [str(c) for c in z["classes"]],
                z["char_idf"].astype(np.float32),
                z["word_idf"].astype(np.float32),
                z["dense_mean"],
                z["dense_std"],
                coef,
                z["intercept"],
                meta,
            )


def fit(
    chars: sparse.csr_matrix,
    words: sparse.csr_matrix,
    dense: np.ndarray,
    labels: list[str],
    weights: np.ndarray,
    alpha: float = 1e-4,
    seed: int = 0,
    meta: dict | None = None,
) -> Classifier:
    """Fit on featurised answers (deterministic for a given seed and data)."""
    from sklearn.linear_model import SGDClassifier

    char_idf, word_idf = F.fit_idf(chars), F.fit_idf(words)
    mean, std = dense.mean(axis=0), dense.std(axis=0)
    std[std == 0] = 1.0
    model = Classifier([], char_idf, word_idf, mean, std, sparse.csr_matrix((0, 0)), np.zeros(0), dict(meta or {}))
    sgd = SGDClassifier(loss="log_loss", alpha=alpha, class_weight="balanced", max_iter=30, tol=None, random_state=seed)
    sgd.fit(model.design(chars, words, dense), list(labels), sample_weight=np.asarray(weights))
    coef = sparse.csr_matrix(sgd.coef_.astype(np.float32))
    coef.data[np.abs(coef.data) < 1e-6] = 0
    coef.eliminate_zeros()
    model.classes, model.coef, model.intercept = list(sgd.classes_), coef, sgd.intercept_.astype(np.float64)
    return model
