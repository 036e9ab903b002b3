"""Deflection detector accuracy by cross-validation grouped by question (answers to the same
question never sit on both sides of a split), plus speed and load time.

Prints one JSON object: per source and language, precision/recall/F1 per class and macro-F1,
binary "answered vs not" F1 (positive = not answered), overall figures, answers/s and load_s.
Usage: python bench/deflection_eval.py [--folds 5] [--judge ENDPOINT_ID]"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.metrics import f1_score, precision_recall_fscore_support  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402

from lib.deflection import classify  # noqa: E402
from lib.deflection.model import ARTIFACT, Classifier  # noqa: E402
from lib.deflection.train import load_dev, train  # noqa: E402

PRODUCT = {"partial": "deflected"}


def product(label: str) -> str:
    return PRODUCT.get(label, label)


def report(gold: list[str], pred: list[str]) -> dict:
    """Per-class P/R/F1, macro-F1 over the classes present, and binary answered-vs-not F1."""
    classes = sorted(set(gold))
    p, r, f, n = precision_recall_fscore_support(gold, pred, labels=classes, zero_division=0)
    binary_gold = [g != "answered" for g in gold]
    binary_pred = [x != "answered" for x in pred]
    return {
        "n": len(gold),
        "macro_f1": round(float(np.mean(f)), 4),
        "binary_not_answered_f1": round(float(f1_score(binary_gold, binary_pred, zero_division=0)), 4),
        "classes": {
            c: {
                "precision": round(float(p[i]), 3),
                "recall": round(float(r[i]), 3),
                "f1": round(float(f[i]), 3),
                "n": int(n[i]),
            }
            for i, c in enumerate(classes)
        },
    }


def cross_validate(rows: list[dict], folds: int) -> list[str]:
    """Out-of-fold product labels for every row."""
    groups = [r["group"] for r in rows]
    predictions: list[str] = [""] * len(rows)
    for train_idx, test_idx in GroupKFold(n_splits=folds).split(rows, groups=groups):
        model = train([rows[i] for i in train_idx])
        verdicts = classify(
            [{"prompt": rows[i]["prompt"], "response": rows[i]["response"]} for i in test_idx], model=model
        )
        for i, verdict in zip(test_idx, verdicts, strict=True):
            predictions[i] = verdict.label
    return predictions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--judge", help="Also score this endpoint as an LLM judge (costs API calls).")
    parser.add_argument("--judge-limit", type=int, default=200, help="Rows the judge sees (a seeded sample).")
    args = parser.parse_args()
    rows = load_dev()
    start = time.perf_counter()
    predictions = cross_validate(rows, args.folds)
    cv_s = time.perf_counter() - start
    out: dict = {"folds": args.folds, "grouped_by": "question", "cv_s": round(cv_s, 1), "by_slice": {}}
    slices: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        slices.setdefault(f"{row['source']}/{row['language']}", []).append(i)
    for name, idx in sorted(slices.items()):
        out["by_slice"][name] = report([product(rows[i]["label"]) for i in idx], [predictions[i] for i in idx])
    out["overall"] = report([product(r["label"]) for r in rows], predictions)
    # speed and load time of the shipped artifact
    start = time.perf_counter()
    model = Classifier.load(ARTIFACT)
    out["load_s"] = round(time.perf_counter() - start, 3)
    sample = [{"prompt": r["prompt"], "response": r["response"]} for r in rows[:1000]]
    classify(sample[:10], model=model)
    start = time.perf_counter()
    classify(sample, model=model)
    out["answers_per_s"] = round(len(sample) / (time.perf_counter() - start), 1)
    if args.judge:
        out["judge"] = score_judge(rows, args.judge, args.judge_limit)
    print(json.dumps(out, ensure_ascii=False))


def score_judge(rows: list[dict], endpoint_id: str, limit: int) -> dict:
    """The judge's report on a seeded sample of the dev rows."""
    import random

    from lib.deflection.judge import judge
    from lib.providers.endpoints import load_endpoints

    sample = random.Random(0).sample(rows, min(limit, len(rows)))
    verdicts = judge(load_endpoints()[endpoint_id], sample)
    return {"endpoint": endpoint_id, **report([product(r["label"]) for r in sample], [v.label for v in verdicts])}


if __name__ == "__main__":
    main()
