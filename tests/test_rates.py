"""Corrected deflection rates and agreement: the prevalence correction recovers known shares."""

import numpy as np
import pytest

from lib.analysis.rates import CLASSES, Confusion, agreement, correct_shares, corrected_not_answered


def _simulate(truth_counts: dict[str, int], matrix: np.ndarray, seed: int = 0) -> list[str]:
    """Detector labels for answers whose true labels are known, drawn through `matrix`."""
    rng = np.random.default_rng(seed)
    labels = []
    for true, count in truth_counts.items():
        row = matrix[CLASSES.index(true)]
        labels += list(rng.choice(CLASSES, size=count, p=row))
    return labels


# a detector that calls half of the deflections "answered" (as the first build did in Chinese)
MISSES_DEFLECTIONS = np.array([[0.95, 0.02, 0.03], [0.05, 0.9, 0.05], [0.5, 0.0, 0.5]])


def test_correction_recovers_the_true_shares_from_observed_ones():
    truth = np.array([0.4, 0.1, 0.5])
    observed = MISSES_DEFLECTIONS.T @ truth
    assert observed[2] < 0.3  # the raw deflection share is badly low…
    assert correct_shares(observed, MISSES_DEFLECTIONS) == pytest.approx(truth, abs=1e-6)  # …and corrected


def test_corrected_rate_is_close_to_the_truth_and_its_interval_covers_it():
    labels = _simulate({"answered": 400, "refused": 100, "deflected": 500}, MISSES_DEFLECTIONS)
    # the matrix as measured on 300 labelled answers
    measured = Confusion(np.round(MISSES_DEFLECTIONS * 100).astype(int))
    rate = corrected_not_answered({"zh": labels}, {"zh": measured})
    assert rate.raw < 0.45  # the detector alone reports far less than 60%
    assert abs(rate.corrected - 0.6) < 0.05
    assert rate.low < 0.6 < rate.high


def test_an_uncertain_matrix_widens_the_interval():
    labels = _simulate({"answered": 400, "refused": 100, "deflected": 500}, MISSES_DEFLECTIONS)
    small = Confusion(np.round(MISSES_DEFLECTIONS * 10).astype(int))
    large = Confusion(np.round(MISSES_DEFLECTIONS * 1000).astype(int))
    narrow = corrected_not_answered({"zh": labels}, {"zh": large})
    wide = corrected_not_answered({"zh": labels}, {"zh": small})
    assert (wide.high - wide.low) > 1.5 * (narrow.high - narrow.low)


def test_a_language_without_a_matrix_is_left_uncorrected():
    rate = corrected_not_answered({"fr": ["answered", "refused", "answered", "deflected"]}, {})
    assert rate.raw == rate.corrected == 0.5


def test_agreement_reports_kappa_and_confusion_per_source_and_language():
    pairs = [("human", "zh", "deflected", "answered")] * 5 + [("human", "zh", "answered", "answered")] * 5
    pairs += [("human", "en", "refused", "refused")] * 4 + [("human", "en", "answered", "answered")] * 4
    found = {(a.source, a.language): a for a in agreement(pairs)}
    assert found[("human", "en")].kappa == pytest.approx(1.0)
    zh = found[("human", "zh")]
    assert zh.kappa == pytest.approx(0.0) and zh.n == 10
    assert zh.confusion[CLASSES.index("deflected")][CLASSES.index("answered")] == 5
