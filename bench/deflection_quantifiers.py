"""Which way of turning the detector's output into a per-model rate errs least on unseen answers?

The product reports each model's not-answered rate by counting its labels ("classify and count",
CC, the raw rate) and corrects it with the detector card's confusion matrix (adjusted count; its
error is in `bench/deflection_eval.py`). Two other estimators from the quantification literature
use the detector's probabilities instead of its labels:
- PCC, probabilistic classify and count: the mean probability of "not answered" over the model's
  answers (Bella et al., "Quantification via probability estimators", ICDM 2010);
- SLD / EMQ: the expectation-maximisation prior adjustment of Saerens, Latinne and Decaestecker
  ("Adjusting the outputs of a classifier to new a priori probabilities", Neural Computation 14,
  2002): each answer's probability re-weighted by the model's estimated not-answered share over the
  share in the training rows of that slice (source and language), until the share stops moving
  (1e-6). Answers the pattern layer decides keep their 0/1 verdict, as in the product.
Out-of-fold probabilities come from models tuned inside their own training folds (nested), with
the same folds as `bench/deflection_eval.py`: grouped by question, and leaving models out. Per
slice: |estimate - judged| not-answered rate in points, mean and worst over models with >= 5
answers (the raw figures equal that bench's raw rate error).

Prints one JSON object. Usage: python bench/deflection_quantifiers.py (13 minutes on 2 cores;
deterministic). Needs ../shared/data/deflection (exits 2 naming it when missing)."""

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402

from bench.deflection_eval import training_rows_or_exit  # noqa: E402
from lib.deflection.model import PRODUCT  # noqa: E402
from lib.deflection.train import featurise, fit_tuned, model_key, product  # noqa: E402

FOLDS = 5
SLICES = ("speechmap_china/en", "speechmap_china/zh", "speechmap_other/en", "xstest_v2/en")


def sld(p_not: np.ndarray, fixed: np.ndarray, train_share: float, iterations: int = 1000) -> float:
    """The SLD / EMQ estimate of the not-answered share of answers with probabilities `p_not`
    (`fixed` >= 0 where the pattern layer decided: that 0/1 is kept) under a training share."""
    train_share = float(np.clip(train_share, 1e-4, 1 - 1e-4))
    share = train_share
    for _ in range(iterations):
        yes = p_not * share / train_share
        no = (1 - p_not) * (1 - share) / (1 - train_share)
        posterior = np.where(fixed >= 0, fixed, yes / np.maximum(yes + no, 1e-12))
        new = float(np.clip(posterior.mean(), 1e-4, 1 - 1e-4))
        if abs(new - share) < 1e-6:
            return new
        share = new
    return share


def main() -> None:
    rows = training_rows_or_exit()
    start = time.perf_counter()
    data = featurise(rows)
    gold = np.array([product(r["label"]) != "answered" for r in rows])
    fixed = np.where(data.canned != "", (data.canned != "answered").astype(float), -1.0)
    slices = np.array([f"{r['source']}/{r['language']}" for r in rows])
    out: dict = {"rows": len(rows), "folds": FOLDS}
    schemes = {"by_question": data.groups, "by_model": np.array([model_key(r) for r in rows])}
    everything = np.arange(len(rows))
    for scheme, keys in schemes.items():
        p_not, fold = np.zeros(len(rows)), np.zeros(len(rows), dtype=int)
        argmax_not = np.zeros(len(rows), dtype=bool)
        for f, (train_idx, test_idx) in enumerate(GroupKFold(FOLDS).split(everything, groups=keys)):
            model = fit_tuned(data, train_idx)
            probs = model.predict_features(data.chars[test_idx], data.words[test_idx], data.dense[test_idx])
            p_not[test_idx] = 1 - probs[:, PRODUCT.index("answered")]
            argmax_not[test_idx] = probs.argmax(axis=1) != PRODUCT.index("answered")
            fold[test_idx] = f
        detected_not = np.where(data.canned != "", data.canned != "answered", argmax_not)  # the product's labels
        out[scheme] = {}
        for name in SLICES:
            ids = np.flatnonzero(slices == name)
            by_model = defaultdict(list)
            for i in ids:
                by_model[rows[i].get("model") or "?"].append(i)
            errors: dict[str, list[float]] = defaultdict(list)
            for answers in (np.array(a) for a in by_model.values() if len(a) >= 5):
                judged = gold[answers].mean() * 100
                test_fold = fold[answers[0]]
                train_share = gold[ids[fold[ids] != test_fold]].mean()
                posterior = np.where(fixed[answers] >= 0, fixed[answers], p_not[answers])
                errors["raw"].append(abs(detected_not[answers].mean() * 100 - judged))
                errors["pcc"].append(abs(posterior.mean() * 100 - judged))
                errors["sld"].append(abs(sld(p_not[answers], fixed[answers], train_share) * 100 - judged))
            out[scheme][name] = {
                "models": len(errors["raw"]),
                **{k: [round(float(np.mean(v)), 1), round(float(np.max(v)), 1)] for k, v in errors.items()},
            }
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["note"] = "per slice: estimator -> [mean, worst] |estimate - judged| not-answered rate, points"
    print(json.dumps(out))


if __name__ == "__main__":
    # --help prints what the bench measures instead of starting it
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
