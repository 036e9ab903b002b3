"""Deflection rates that carry the detector's uncertainty, and the detector's agreement with
other labels.

A rate computed from automatic labels inherits the detector's errors: if it misses a third of
the deflections in Chinese, a model that deflects 60% of the time reads 40%. The correction is
the misclassification adjustment used in prevalence estimation ("adjusted classify and count",
Forman 2008; the multi-class form of Rogan & Gladen 1978): with the detector's measured
confusion matrix M (M[i, j] = P(predicted j | true i), estimated out-of-fold on labelled
answers of that language), the observed label shares q satisfy q = Mᵀ p, so the true shares p
are the solution of that system on the probability simplex. The interval is a bootstrap that
resamples both the answers (the observed counts) and the labelled answers the matrix was
measured on (each row of the count matrix), so it widens when the matrix itself is uncertain.

Agreement with other label sources (human, an LLM judge, labels that came with imported
answers) is Cohen's kappa with the confusion, per language (scikit-learn's metrics)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from db.vocab import Label

CLASSES = Label.MODEL_CHOICES  # answered, refused, deflected: what the model chose
BOOTSTRAP = 400
SEED = 0


@dataclass(frozen=True)
class Confusion:
    """Counts of true label (rows) × detector label (columns) over CLASSES, measured on `n` answers."""

    counts: np.ndarray  # shape (3, 3), integers

    @property
    def n(self) -> int:
        """How many labelled answers the matrix was measured on."""
        return int(self.counts.sum())

    def rates(self) -> np.ndarray:
        """Row-normalised: P(detector says j | truth is i); a row without data is the identity."""
        counts = np.asarray(self.counts, dtype=float)
        totals = counts.sum(axis=1, keepdims=True)
        eye = np.eye(len(CLASSES))
        return np.where(totals > 0, counts / np.maximum(totals, 1), eye)


def correct_shares(observed: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """True class shares p (sums to 1) from observed shares q and P(pred | true): q ≈ Mᵀ p, p ≥ 0.

    Solved as non-negative least squares with the sum-to-one row appended (SciPy's nnls)."""
    q = np.asarray(observed, dtype=float)
    if q.sum() <= 0:
        return np.full(len(q), np.nan)
    q = q / q.sum()
    a = np.vstack([matrix.T, np.ones(len(q)) * 10.0])  # the weighted last row holds the sum to 1
    b = np.concatenate([q, [10.0]])
    p, _ = nnls(a, b)
    total = p.sum()
    return p / total if total > 0 else q


@dataclass(frozen=True)
class CorrectedRate:
    """A not-answered rate as labelled (raw, Wilson-free here) and corrected, with a 95% interval."""

    n: int
    raw: float | None
    corrected: float | None
    low: float | None
    high: float | None


def _counts(labels: list[str]) -> np.ndarray:
    found = Counter(labels)
    return np.array([found[c] for c in CLASSES], dtype=float)


def corrected_not_answered(
    labels_by_language: dict[str, list[str]],
    confusions: dict[str, Confusion],
    rounds: int = BOOTSTRAP,
    seed: int = SEED,
) -> CorrectedRate:
    """The not-answered (refused + deflected) rate of a group of answers, raw and corrected.

    `labels_by_language` holds the detector's labels (only answered/refused/deflected count) by
    language; each language is corrected with its own matrix (a language without one is left
    uncorrected) and the languages are combined by their answer counts."""
    groups = {lang: _counts(labs) for lang, labs in labels_by_language.items()}
    groups = {lang: c for lang, c in groups.items() if c.sum() > 0}
    n = int(sum(c.sum() for c in groups.values()))
    if n == 0:
        return CorrectedRate(0, None, None, None, None)
    raw = sum(c[1] + c[2] for c in groups.values()) / n

    def estimate(counts_by_lang: dict[str, np.ndarray], matrices: dict[str, np.ndarray]) -> float:
        total = 0.0
        for lang, c in counts_by_lang.items():
            shares = correct_shares(c, matrices[lang]) if lang in matrices else c / c.sum()
            total += (shares[1] + shares[2]) * c.sum()
        return total / n

    point = estimate(groups, {lang: confusions[lang].rates() for lang in groups if lang in confusions})
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(rounds):
        counts = {lang: rng.multinomial(int(c.sum()), c / c.sum()).astype(float) for lang, c in groups.items()}
        matrices = {}
        for lang in groups:
            if lang not in confusions:
                continue
            rows = []
            for row in np.asarray(confusions[lang].counts, dtype=float):
                total = int(row.sum())
                rows.append(rng.multinomial(total, row / total) if total else np.zeros(len(CLASSES)))
            matrices[lang] = Confusion(np.array(rows)).rates()
        draws.append(estimate({k: v for k, v in counts.items() if v.sum() > 0}, matrices))
    low, high = np.percentile(draws, [2.5, 97.5])
    return CorrectedRate(n, float(raw), float(point), float(low), float(high))


@dataclass(frozen=True)
class Agreement:
    """The detector against another label source on the same answers, in one language."""

    source: str
    language: str
    n: int
    kappa: float | None
    accuracy: float | None
    classes: list[str]
    confusion: list[list[int]]  # rows: the other source's label; columns: the detector's


def agreement(pairs: list[tuple[str, str, str, str]]) -> list[Agreement]:
    """Cohen's kappa and the confusion per (source, language) from (source, language, theirs,
    detector's) label pairs; only answered/refused/deflected pairs count."""
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for source, language, theirs, ours in pairs:
        if theirs in CLASSES and ours in CLASSES:
            groups.setdefault((source, language), []).append((theirs, ours))
    out = []
    for (source, language), items in sorted(groups.items()):
        theirs, ours = [t for t, _ in items], [o for _, o in items]
        matrix = confusion_matrix(theirs, ours, labels=list(CLASSES))
        kappa = None
        if len(set(theirs) | set(ours)) > 1:
            kappa = float(cohen_kappa_score(theirs, ours, labels=list(CLASSES)))
        accuracy = float(np.trace(matrix) / matrix.sum()) if matrix.sum() else None
        out.append(Agreement(source, language, len(items), kappa, accuracy, list(CLASSES), matrix.tolist()))
    return out
