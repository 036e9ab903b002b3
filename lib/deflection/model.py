"""The statistical layer: a linear model (multinomial logistic regression, fitted to convergence by
L-BFGS) over hashed TF-IDF n-grams and dense cues, stored as plain arrays in an .npz file (loaded
with allow_pickle=False, so loading can never run code)."""

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
DENSE_WEIGHT = 0.5  # default scale of the standardised dense block against the unit-norm n-gram blocks


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
    dense_weight: float = DENSE_WEIGHT  # a tuned setting (see train.SETTINGS); stored with the weights

    def design(self, chars: sparse.csr_matrix, words: sparse.csr_matrix, dense: np.ndarray) -> sparse.csr_matrix:
        """The design matrix from featurised answers."""
        scaled = (dense - self.dense_mean) / self.dense_std * self.dense_weight
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
        probs = np.exp(raw - raw.max(axis=1, keepdims=True))  # softmax (multinomial)
        probs /= probs.sum(axis=1, keepdims=True)
        column = {c: probs[:, k] for k, c in enumerate(self.classes)}
        none = np.zeros(len(probs))
        return np.stack(
            [
                column.get("answered", none),
                column.get("refused", none),
                column.get("deflected", none) + column.get("partial", none),
            ],
            axis=1,
        )

    def predict_proba(self, prompts: list[str], answers: list[str]) -> np.ndarray:
        """Probabilities over PRODUCT, one row per answer."""
        return self.predict_features(*F.featurize(prompts, answers))

    def save(self, path: Path = ARTIFACT) -> None:
        """Write the weights as plain arrays (no pickle), whole or not at all (see `write_to`)."""
        from lib.files import StagedFile

        with StagedFile(Path(path), mode="wb") as staged:
            self.write_to(staged.file)

    def write_to(self, file) -> None:
        """Write the weights as plain arrays (no pickle) to an open binary file."""
        dense = self.coef.toarray()
        columns = np.flatnonzero(np.abs(dense).max(axis=0) > 0).astype(np.int32)
        np.savez_compressed(
            file,
            classes=np.array(self.classes),
            char_idf=self.char_idf.astype(np.float16),
            word_idf=self.word_idf.astype(np.float16),
            dense_mean=self.dense_mean,
            dense_std=self.dense_std,
            coef_columns=columns,
            coef_values=dense[:, columns].astype(np.float16),
            coef_shape=np.array(dense.shape),
            intercept=self.intercept,
            dense_weight=np.array(self.dense_weight),
            meta=np.array(json.dumps(self.meta, ensure_ascii=False)),
        )

    @classmethod
    def load(cls, path: Path = ARTIFACT) -> Classifier:
        """Read weights written by `save`."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("features") != F.VERSION:
                from lib.present import cli_hint

                raise RuntimeError(
                    f"{path} was trained for features version {meta.get('features')!r}, the code has "
                    f"{F.VERSION!r}: retrain with {cli_hint('train-deflection')}"
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
                float(z["dense_weight"]),
            )


def fit(
    chars: sparse.csr_matrix,
    words: sparse.csr_matrix,
    dense: np.ndarray,
    labels: list[str],
    weights: np.ndarray,
    c: float = 10.0,
    dense_weight: float = DENSE_WEIGHT,
    meta: dict | None = None,
) -> Classifier:
    """Fit on featurised answers: multinomial logistic regression with inverse penalty `c`, classes
    balanced, run to convergence (deterministic: the same data gives the same weights)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    char_idf, word_idf = F.fit_idf(chars), F.fit_idf(words)
    mean, std = dense.mean(axis=0), dense.std(axis=0)
    std[std == 0] = 1.0
    model = Classifier(
        [], char_idf, word_idf, mean, std, sparse.csr_matrix((0, 0)), np.zeros(0), dict(meta or {}), dense_weight
    )
    design = model.design(chars, words, dense).tocsc()
    # a hashed column no training answer has gets weight 0 under the L2 penalty: fit on the used
    # columns only (L-BFGS's cost per step grows with the number of weights)
    used = np.flatnonzero(np.diff(design.indptr))
    regression = LogisticRegression(C=c, class_weight="balanced", solver="lbfgs", max_iter=500)
    with warnings.catch_warnings():  # the last digits of a 100k-weight fit are not worth more iterations
        warnings.simplefilter("ignore", ConvergenceWarning)
        regression.fit(design[:, used].tocsr(), list(labels), sample_weight=np.asarray(weights))
    fitted, intercept = regression.coef_, regression.intercept_
    if len(regression.classes_) == 2:  # binary: softmax over (0, z) is the sigmoid of z
        fitted, intercept = np.vstack([np.zeros_like(fitted), fitted]), np.concatenate([[0.0], intercept])
    full = np.zeros((len(fitted), design.shape[1]), dtype=np.float32)
    full[:, used] = fitted
    coef = sparse.csr_matrix(full)
    coef.data[np.abs(coef.data) < 1e-6] = 0
    coef.eliminate_zeros()
    model.classes, model.coef = list(regression.classes_), coef
    model.intercept = np.asarray(intercept, dtype=np.float64)
    return model
