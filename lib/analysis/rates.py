"""Deflection rates that carry the detector's uncertainty, and the detector's agreement with
other labels.

A rate computed from automatic labels inherits the detector's errors: if it misses a third of
the deflections in Chinese, a model that deflects 60% of the time reads 40%. The correction is
the misclassification adjustment used in prevalence estimation ("adjusted classify and count",
Forman 2008; the multi-class form of Rogan & Gladen 1978): with the detector's measured
confusion matrix M (M[i, j] = P(predicted j | true i), estimated out-of-fold on labelled
answers of that language), the observed label shares q satisfy q = Mᵀ p, so the true shares p
are the solution of that system on the probability simplex. The interval is a bootstrap that
redraws both the answers (the observed counts) and the labelled answers the matrix was
measured on (each row of the count matrix), so it widens when the matrix itself is uncertain.
The redraws come from the Jeffreys posterior of the counts (Dirichlet(counts + ½), a smoothed
bootstrap), because resampling counts never draws a label seen 0 times: on 10 answers with a
true rate of 5% the plain bootstrap's 95% interval held the truth 56% of the time, this one 98%
(bench/rates.py). The matrix draws are made once per view and shared by every group of that
language, as the groups share the matrix (so comparing two groups cancels its common error).
It assumes what every such correction assumes: that the detector errs on these answers as it
erred on the answers it was measured on (P(detected | true) transfers; the shares may differ).

Which of the card's matrices: for each language, the one measured on **China-critical
requests** (`speechmap_china/<lang>` in the card), falling back to that language's all-sources
matrix only when the card has no such entry. Parallax measures how models handle
China-sensitive questions, and that is the one slice of the card made of such answers; the
English all-sources matrix is three-quarters US/EU/Russia-criticism answers (nearly all
answered, so it says little about how deflections are missed) plus XSTest's exaggerated-safety
prompts, whose refusal-shaped answers the detector confuses in ways China answers do not. In
Chinese the two are the same matrix. The China matrix has fewer rows, so its intervals are
wider: that is the honest price of measuring on the right kind of answer.

Answers with a human label are the truth, not an estimate: they are counted as labelled (as are
labels from other sources standing in for the detector, and languages without a matrix), and
only the detector's labels are corrected; the bootstrap resamples each group on its own.

Agreement with other label sources (human, an LLM judge, labels that came with imported
answers) is Cohen's kappa with the confusion, per language (scikit-learn's metrics)."""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.optimize import nnls

from db.vocab import Label

CLASSES = Label.MODEL_CHOICES  # answered, refused, deflected: what the model chose
BOOTSTRAP = 1000
SEED = 0
CARD_MATRIX = "speechmap_china/{language}"  # the card's matrix that corrects a language's rates
METHOD = (
    "misclassification-adjusted prevalence (adjusted classify and count: Forman 2008; the multi-class "
    "Rogan–Gladen 1978 correction) with the detector card's out-of-fold confusion matrix per language; "
    "95% percentile bootstrap over the answers and the matrix's rows"
)


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
        return _row_rates(np.asarray(self.counts, dtype=float))


def _row_rates(counts: np.ndarray) -> np.ndarray:
    """Row-normalised (..., 3, 3) counts; a row without data is the identity's row."""
    totals = counts.sum(axis=-1, keepdims=True)
    eye = np.broadcast_to(np.eye(len(CLASSES)), counts.shape)
    return np.where(totals > 0, counts / np.maximum(totals, 1), eye)


@dataclass(frozen=True)
class CardMatrix:
    """The matrix that corrects one language's rates and which of the card's matrices it is."""

    language: str
    key: str  # "speechmap_china/zh", or the language itself for the all-sources matrix
    confusion: Confusion

    def as_json(self) -> dict:
        """{measured_on, n, confusion} for JSON and pages."""
        return {"measured_on": self.key, "n": self.confusion.n, "confusion": self.confusion.counts.tolist()}


def _card_counts(entry: dict, labels: list[str]) -> np.ndarray | None:
    matrix = np.asarray(entry.get("confusion") or [], dtype=float)
    if matrix.shape != (len(labels), len(labels)) or set(CLASSES) - set(labels):
        return None
    order = [labels.index(c) for c in CLASSES]  # the card's label order, read not assumed
    return matrix[np.ix_(order, order)]


def card_matrices(card: dict) -> dict[str, CardMatrix]:
    """Per language, the card's China-critical requests matrix (`speechmap_china/<lang>`), else its
    all-sources matrix for that language; {} for a card without matrices."""
    labels = list(card.get("labels") or CLASSES)
    found = {}
    for language, entry in (card.get("languages") or {}).items():
        key = CARD_MATRIX.format(language=language)
        chosen = (card.get("by_source") or {}).get(key)
        counts = _card_counts(chosen, labels) if chosen else None
        if counts is None or counts.sum() == 0:
            key, counts = language, _card_counts(entry, labels)
        if counts is not None and counts.sum() > 0:
            found[language] = CardMatrix(language, key, Confusion(counts))
    return found


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


SUPPORTS = [s for k in range(1, len(CLASSES) + 1) for s in combinations(range(len(CLASSES)), k)]
WEIGHT = 10.0  # of the sum-to-one row, as in correct_shares


class MatrixSolver:
    """`correct_shares` for R rounds at once, for R fixed matrices (R, 3, 3) of rates.

    The same weighted non-negative least squares, solved by enumerating supports: NNLS's optimum
    is the least-squares solution on its own support, and among supports whose least-squares
    solution is non-negative it has the smallest residual (seven supports for three classes).
    The least-squares operator of each support depends on the matrices only, so it is computed
    once and reused for every group of answers corrected with them."""

    def __init__(self, matrices: np.ndarray) -> None:
        rounds, k = matrices.shape[0], len(CLASSES)
        self.a = np.concatenate([np.swapaxes(matrices, -1, -2), np.full((rounds, 1, k), WEIGHT)], axis=1)
        self.operators = []
        for support in SUPPORTS:
            columns = self.a[:, :, support]
            gram = np.einsum("rij,rik->rjk", columns, columns) + np.eye(len(support)) * 1e-12
            self.operators.append(np.linalg.solve(gram, np.swapaxes(columns, -1, -2)))  # (R, |S|, k + 1)

    def correct(self, observed: np.ndarray) -> np.ndarray:
        """True shares (R, 3) for observed shares (R, 3), round by round."""
        rounds, k = observed.shape
        b = np.concatenate([observed / observed.sum(axis=1, keepdims=True), np.full((rounds, 1), WEIGHT)], axis=1)
        # the unconstrained solution, where it is non-negative, is the optimum: most rounds stop here
        best = np.einsum("rjk,rk->rj", self.operators[-1], b)
        rest = np.flatnonzero(~(best >= -1e-12).all(axis=1))
        if len(rest):
            best[rest] = self._on_supports(b[rest], rest)
        best = np.clip(best, 0.0, None)
        return best / best.sum(axis=1, keepdims=True)

    def _on_supports(self, b: np.ndarray, rounds: np.ndarray) -> np.ndarray:
        """The best non-negative solution over the smaller supports, for the given rounds."""
        k = len(CLASSES)
        best, best_residual = np.full((len(rounds), k), np.nan), np.full(len(rounds), np.inf)
        for support, operator in zip(SUPPORTS[:-1], self.operators[:-1], strict=True):
            solution = np.einsum("rjk,rk->rj", operator[rounds], b)
            fitted = np.einsum("rkj,rj->rk", self.a[rounds][:, :, support], solution)
            residual = np.einsum("rk,rk->r", fitted - b, fitted - b)
            better = (solution >= -1e-12).all(axis=1) & (residual < best_residual - 1e-18)
            full = np.zeros((len(rounds), k))
            full[:, support] = solution
            best[better], best_residual[better] = full[better], residual[better]
        return best


def correct_many(observed: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """`correct_shares` for R rounds at once: observed (R, 3) shares, matrices (R, 3, 3) rates."""
    return MatrixSolver(matrices).correct(observed)


def matrix_draws(confusion: Confusion, rounds: int = BOOTSTRAP, seed: int = SEED) -> MatrixSolver:
    """R draws of a measured matrix, each row drawn for its counts (see `resample`; a row without
    data stays the identity's), ready to correct any group of answers of that language. Groups
    corrected with the same draws share the matrix's error, as they share the matrix."""
    rng = np.random.default_rng(seed)
    rows = [
        resample(row, rounds, rng) if row.sum() else np.broadcast_to(np.eye(len(CLASSES))[i], (rounds, len(CLASSES)))
        for i, row in enumerate(np.asarray(confusion.counts, dtype=float))
    ]
    return MatrixSolver(np.stack(rows, axis=1))


@dataclass(frozen=True)
class CorrectedRate:
    """A not-answered rate as labelled (raw) and corrected, with the corrected one's 95% interval.

    `n_corrected` answers carried detector labels corrected with a matrix; `n_as_labelled` were
    counted as labelled (human labels, other sources, languages without a matrix)."""

    n: int
    raw: float | None
    corrected: float | None
    low: float | None
    high: float | None
    n_corrected: int = 0
    n_as_labelled: int = 0


def _counts(labels: list[str]) -> np.ndarray:
    found = Counter(labels)
    return np.array([found[c] for c in CLASSES], dtype=float)


PRIOR = 0.5  # Jeffreys: Dirichlet(counts + ½)


def resample(counts: np.ndarray, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """(rounds, 3) label shares drawn for observed `counts`: from Dirichlet(counts + ½), the Jeffreys
    posterior (a smoothed bootstrap). Plain resampling of the counts draws a share seen 0 times as 0
    in every round, so 0 of 30 would read as certain; this draws it as rarely small but not 0.
    PRIOR = 0 gives the plain bootstrap (bench/rates.py compares the two)."""
    if PRIOR == 0:
        return rng.multinomial(int(counts.sum()), counts / counts.sum(), size=rounds) / counts.sum()
    return rng.dirichlet(counts + PRIOR, size=rounds)


def interval(draws: np.ndarray, point: float) -> tuple[float, float]:
    """The 95% percentile interval of the draws, stretched to include the point estimate: with the
    smoothed draws a share estimated at 0 would otherwise get an interval above 0 (the same reason
    the Jeffreys interval for 0 of n starts at 0; Brown, Cai & DasGupta 2001)."""
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(min(low, point)), float(max(high, point))


def seed_for(*parts: object) -> int:
    """A stable bootstrap seed for one cell (model, topic, language…): the same data gives the same
    interval on every run, and two cells draw independently (so a difference of two is honest)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode()) + SEED


def not_answered_draws(
    labels_by_language: dict[str, list[str]],
    confusions: dict[str, Confusion],
    as_labelled: list[str] = (),
    rounds: int = BOOTSTRAP,
    seed: int = SEED,
    solvers: dict[str, MatrixSolver] | None = None,
) -> tuple[CorrectedRate, np.ndarray]:
    """The corrected not-answered rate and its bootstrap draws (shape (rounds,); empty when n is 0).

    `labels_by_language` holds detector labels (only answered/refused/deflected count); each
    language with a matrix in `confusions` is corrected with it, the others are taken as they are,
    as are `as_labelled` (human labels: the truth). Languages are combined by answer counts.
    `solvers` (see `matrix_draws`, `rounds` each) share matrix draws between groups; without
    them each call draws its own."""
    groups = {lang: _counts(labs) for lang, labs in labels_by_language.items()}
    fixed = _counts(list(as_labelled))
    corrected = {lang: c for lang, c in groups.items() if c.sum() > 0 and lang in confusions}
    fixed = fixed + sum((c for lang, c in groups.items() if lang not in corrected), np.zeros(len(CLASSES)))
    n_corrected = int(sum(c.sum() for c in corrected.values()))
    n = n_corrected + int(fixed.sum())
    if n == 0:
        return CorrectedRate(0, None, None, None, None), np.zeros(0)
    raw = (sum(c[1] + c[2] for c in corrected.values()) + fixed[1] + fixed[2]) / n
    point = fixed[1] + fixed[2]
    for lang, c in corrected.items():
        shares = correct_shares(c, confusions[lang].rates())
        point += (shares[1] + shares[2]) * c.sum()
    rng = np.random.default_rng(seed)
    draws = np.zeros(rounds)
    if fixed.sum():
        shares = resample(fixed, rounds, rng)
        draws += (shares[:, 1] + shares[:, 2]) * fixed.sum()
    for lang, c in corrected.items():
        solver = (solvers or {}).get(lang) or matrix_draws(confusions[lang], rounds, int(rng.integers(2**32)))
        shares = solver.correct(resample(c, rounds, rng))
        draws += (shares[:, 1] + shares[:, 2]) * c.sum()
    draws /= n
    low, high = interval(draws, point / n)
    rate = CorrectedRate(n, float(raw), float(point / n), low, high, n_corrected, n - n_corrected)
    return rate, draws


class Corrector:
    """The card's matrix per language, with bootstrap draws of each made once (on first use) and
    shared by every group of answers corrected with it in one view."""

    def __init__(self, matrices: dict[str, CardMatrix], rounds: int = BOOTSTRAP) -> None:
        self.matrices, self.rounds = matrices, rounds
        self._solvers: dict[str, MatrixSolver] = {}

    @classmethod
    def from_card(cls, card: dict) -> Corrector:
        """A corrector with the matrices `card_matrices` picks from a detector card."""
        return cls(card_matrices(card))

    def __bool__(self) -> bool:
        return bool(self.matrices)

    def rate(
        self, detector: dict[str, list[str]], as_labelled: list[str], *key: object
    ) -> tuple[CorrectedRate, np.ndarray]:
        """`not_answered_draws` for one group (detector labels by language, labels taken as they
        are), seeded by `key` (see `seed_for`)."""
        for lang in detector:
            if lang in self.matrices and lang not in self._solvers:
                seed = seed_for("matrix", lang)
                self._solvers[lang] = matrix_draws(self.matrices[lang].confusion, self.rounds, seed)
        confusions = {lang: m.confusion for lang, m in self.matrices.items()}
        return not_answered_draws(detector, confusions, as_labelled, self.rounds, seed_for(*key), self._solvers)


def corrected_not_answered(
    labels_by_language: dict[str, list[str]],
    confusions: dict[str, Confusion],
    rounds: int = BOOTSTRAP,
    seed: int = SEED,
    as_labelled: list[str] = (),
) -> CorrectedRate:
    """The not-answered (refused + deflected) rate of a group of answers, raw and corrected.

    `labels_by_language` holds the detector's labels (only answered/refused/deflected count) by
    language; each language is corrected with its own matrix (a language without one is left
    uncorrected) and the languages are combined by their answer counts; `as_labelled` labels
    (human ones) are counted as they are."""
    return not_answered_draws(labels_by_language, confusions, as_labelled, rounds, seed)[0]


def difference(a: np.ndarray, b: np.ndarray, point: float | None) -> dict | None:
    """A difference of two independent bootstrapped rates (b − a) with its 95% percentile interval."""
    if point is None or not len(a) or not len(b):
        return None
    low, high = interval(b - a, point)
    return {"rate": float(point), "low": low, "high": high}


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
