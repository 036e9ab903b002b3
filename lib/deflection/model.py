"""The statistical layer: a multinomial logistic regression over hashed TF-IDF n-grams and
dense cues, stored as plain arrays in an .npz file (loaded with allow_pickle=False, so loading
can never run code)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from lib.deflection import features as F

ARTIFACT = Path(__file__).resolve().parent / "model.npz"
TRAIN_CLASSES = ("answered", "deflected", "partial", "refused")
DENSE_WEIGHT = 0.5


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

    def matrix(self, prompts: list[str], answers: list[str]) -> sparse.csr_matrix:
        """The design matrix for answers to prompts."""
        chars, words, dense = F.featurize(prompts, answers)
        scaled = (dense - self.dense_mean) / self.dense_std * DENSE_WEIGHT
        return sparse.hstack(
            [
                F.tfidf(chars, self.char_idf),
                F.tfidf(words, self.word_idf),
                sparse.csr_matrix(scaled.astype(np.float32)),
            ],
            format="csr",
        )

    def predict_proba(self, prompts: list[str], answers: list[str]) -> np.ndarray:
        """Class probabilities, one row per answer, columns in `classes` order."""
        scores = np.asarray((self.matrix(prompts, answers) @ self.coef.T).todense()) + self.intercept
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)

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
            meta=np.array(json.dumps(self.meta)),
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
                json.loads(str(z["meta"])),
            )


def fit(
    prompts: list[str],
    answers: list[str],
    labels: list[str],
    seed: int = 0,
    c: float = 16.0,
    meta: dict | None = None,
    weights: list[float] | None = None,
) -> Classifier:
    """Fit the classifier on labelled answers (deterministic for a given seed and data)."""
    from sklearn.linear_model import LogisticRegression

    chars, words, dense = F.featurize(prompts, answers)
    char_idf, word_idf = F.fit_idf(chars), F.fit_idf(words)
    mean, std = dense.mean(axis=0), dense.std(axis=0)
    std[std == 0] = 1.0
    scaled = (dense - mean) / std * DENSE_WEIGHT
    x = sparse.hstack(
        [F.tfidf(chars, char_idf), F.tfidf(words, word_idf), sparse.csr_matrix(scaled.astype(np.float32))], format="csr"
    )
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=seed)
    model.fit(x, labels, sample_weight=None if weights is None else np.asarray(weights))
    coef = sparse.csr_matrix(model.coef_.astype(np.float32))
    coef.data[np.abs(coef.data) < 1e-6] = 0
    coef.eliminate_zeros()
    return Classifier(list(model.classes_), char_idf, word_idf, mean, std, coef, model.intercept_, meta or {})
