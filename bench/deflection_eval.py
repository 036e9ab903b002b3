"""Deflection detector accuracy on answers it never saw, plus speed and load time.

Three measurements over ../shared/data/deflection (dev.jsonl + extra.jsonl), each by models whose
setting (penalty and dense-cue scale, train.SETTINGS) was tuned only inside their own training folds (nested), with the
pattern layer applied first as in the product:
- by_question: 5-fold cross-validation grouped by question (English and Chinese twins of a
  SpeechMap question together, an XSTest prompt's v1 and v2 answers together);
- by_model: 5-fold leave-models-out (answers of models absent from training);
- cross_source: trained without speechmap_other (US/EU/Russia criticism), tested on it.
Sources the shipped model does not train on (openai_rbr_gold, censoredplanet_blocks) are still
reported: for them every fold is an out-of-domain test.

Per source/language slice: macro-F1 over the classes present (answered/refused/deflected; partial
counts as deflected), answered-vs-not F1 (positive = not answered), per-class P/R/F1, and the
per-model non-answer rate error in points (mean and worst over models with >= 5 answers), raw and
corrected: the product shows rates corrected with one confusion matrix per language from the
detector card (lib/analysis/rates: the China-critical requests matrix of that language), so each
test fold's rates are corrected here with the matrices picked the same way (`card_matrices`) from
a card measured by an inner out-of-fold pass (grouped by question, like the shipped card) inside
that fold's training rows only; where one fold holds all of a model's answers (leave-models-out)
the share of models whose 95% interval holds the true rate is reported too.
Prints one JSON object. Usage: python bench/deflection_eval.py [--folds 5] [--skip-by-model]"""

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.metrics import f1_score, precision_recall_fscore_support  # noqa: E402

from lib.analysis.rates import card_matrices, corrected_not_answered  # noqa: E402
from lib.deflection import classify, language_identifier  # noqa: E402
from lib.deflection.model import ARTIFACT, Classifier  # noqa: E402
from lib.deflection.train import (  # noqa: E402
    TrainingDataMissing,
    decided,
    featurise,
    fit_tuned,
    load_rows,
    model_key,
    out_of_fold,
    product,
)


def training_rows_or_exit() -> list[dict]:
    """Every labelled row of ../shared (`load_rows`), or the reason they cannot be read on stderr
    and exit code 2: the start of each detector bench."""
    try:
        return load_rows()
    except TrainingDataMissing as missing:
        print(f"error: {missing}", file=sys.stderr)
        raise SystemExit(2) from None


def rate_errors(rows: list[dict], gold: list[str], pred: list[str], folds: list[dict] | None = None) -> dict:
    """Per-model |detected - true| non-answer rate in points over models with >= 5 answers: mean,
    worst and the worst model; with `folds` (out_of_fold settings holding `test` indices and an
    inner `card`) also the corrected rate's error, each fold's share of a model's answers corrected
    with the matrices the product would pick (`card_matrices`) from a card measured inside that
    fold's training rows only, and how
    often the corrected rate's 95% interval holds the true rate (where one fold holds all of a
    model's answers, as when models are left out)."""
    by_model = defaultdict(list)
    for k, row in enumerate(rows):
        by_model[row.get("model") or "?"].append(k)
    by_model = {m: ks for m, ks in by_model.items() if len(ks) >= 5}
    if not by_model:
        return {"models": 0}
    truth = {m: np.mean([gold[k] != "answered" for k in ks]) for m, ks in by_model.items()}
    raw = {m: abs(np.mean([pred[k] != "answered" for k in ks]) - truth[m]) * 100 for m, ks in by_model.items()}
    out = {"models": len(raw)} | _mean_worst(raw)
    if folds is None:
        return out
    fold_of = {int(i): f for f, fold in enumerate(folds) for i in fold["test"]}
    corrected, covered = {}, []
    for m, ks in by_model.items():
        parts = defaultdict(list)
        for k in ks:
            parts[fold_of[rows[k]["_index"]]].append(k)
        total = 0.0
        for f, part in parts.items():
            labels = defaultdict(list)
            for k in part:
                labels[rows[k].get("language") or "en"].append(pred[k])
            matrices = {lang: m.confusion for lang, m in card_matrices(folds[f]["card"]).items()}
            rate = corrected_not_answered(labels, matrices, rounds=200 if len(parts) == 1 else 1)
            total += rate.corrected * len(part)
            if len(parts) == 1:
                covered.append(rate.low <= truth[m] <= rate.high)
        corrected[m] = abs(total / len(ks) - truth[m]) * 100
    out["corrected"] = _mean_worst(corrected)
    if covered:
        out["corrected"]["interval_covers_truth"] = round(float(np.mean(covered)), 3)
    return out


def _mean_worst(errors: dict) -> dict:
    worst = max(errors, key=errors.get)
    return {
        "mean": round(float(np.mean(list(errors.values()))), 1),
        "worst": round(float(errors[worst]), 1),
        "worst_model": worst,
    }


def report(rows: list[dict], gold: list[str], pred: list[str], folds: list[dict] | None = None) -> dict:
    """Per-class P/R/F1, macro-F1 over the classes present, answered-vs-not F1, rate errors (raw,
    and corrected where `folds` carry inner confusion matrices)."""
    classes = sorted(set(gold))
    p, r, f, n = precision_recall_fscore_support(gold, pred, labels=classes, zero_division=0)
    return {
        "n": len(gold),
        "macro_f1": round(float(np.mean(f)), 4),
        "binary_not_answered_f1": round(
            float(f1_score([g != "answered" for g in gold], [x != "answered" for x in pred], zero_division=0)), 4
        ),
        "rate_error_points": rate_errors(rows, gold, pred, folds),
        "classes": {
            c: {"precision": round(float(p[i]), 3), "recall": round(float(r[i]), 3), "f1": round(float(f[i]), 3)}
            | {"n": int(n[i])}
            for i, c in enumerate(classes)
        },
    }


def by_slice(rows: list[dict], idx: np.ndarray, predicted: np.ndarray, folds: list[dict] | None = None) -> dict:
    """Reports per source/language for rows `idx` (rows carry their `_index`; see `report`)."""
    slices: dict[str, list[int]] = defaultdict(list)
    for i in idx:
        slices[f"{rows[i]['source']}/{rows[i]['language']}"].append(i)
    return {
        name: report(
            [rows[i] for i in ids], [product(rows[i]["label"]) for i in ids], [predicted[i] for i in ids], folds
        )
        for name, ids in sorted(slices.items())
    }


def speed(
    rows: list[dict], passes: int = 3, source: str = "first dev rows (SpeechMap China answers, mostly long essays)"
) -> dict:
    """Load time of the shipped artifact and the language identifier, and answers/s through the
    whole detector: `passes` passes over the same 1,000 answers, each pass's figure and the best."""
    start = time.perf_counter()
    model = Classifier.load(ARTIFACT)
    language_identifier()
    load_s = time.perf_counter() - start
    sample = [{"prompt": r["prompt"], "response": r["response"]} for r in rows[:1000]]
    classify(sample[:10], model=model)
    walls, cpus = [], []
    for _ in range(passes):
        start, cpu = time.perf_counter(), time.process_time()
        classify(sample, model=model)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return {
        "load_s": round(load_s, 3),
        "answers_per_s": round(len(sample) / min(walls), 1),
        # the CPU is shared with other work: per CPU-second is the figure that does not depend on it
        "answers_per_cpu_s": round(len(sample) / min(cpus), 1),
        "passes_answers_per_cpu_s": [round(len(sample) / c, 1) for c in cpus],
        "sample": f"{len(sample)} {source}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--skip-by-model", action="store_true", help="Leave out the leave-models-out run.")
    parser.add_argument("--judge", help="Also score this endpoint as an LLM judge (costs API calls).")
    parser.add_argument("--judge-limit", type=int, default=200, help="Rows the judge sees (a seeded sample).")
    parser.add_argument(
        "--speed-only", action="store_true", help="Only load time and answers/s (seconds; runs without ../shared)."
    )
    args = parser.parse_args()
    try:
        rows = load_rows()
    except TrainingDataMissing as missing:
        if not args.speed_only:
            print(f"error: {missing}", file=sys.stderr)
            raise SystemExit(2) from None
        rows = None  # speed needs no labels: the bundled example study's answers are the same kind
    if args.speed_only:
        found = speed(load_dev_rows(rows)) if rows else speed(example_rows(), source=EXAMPLE_SAMPLE)
        print(json.dumps({"speed": found}, ensure_ascii=False))
        return
    for i, row in enumerate(rows):
        row["_index"] = i
    out: dict = {"rows": len(rows), "folds": args.folds}
    start = time.perf_counter()
    data = featurise(rows)
    out["featurise_s"] = round(time.perf_counter() - start, 1)
    everything = np.arange(len(rows))
    schemes = {"by_question": data.groups}
    if not args.skip_by_model:
        schemes["by_model"] = np.array([model_key(r) for r in rows])
    for name, keys in schemes.items():
        start = time.perf_counter()
        predicted, folds = out_of_fold(data, keys, args.folds, confusions=True)
        out[name] = {
            "seconds": round(time.perf_counter() - start, 1),
            "fold_settings": [{k: v for k, v in f.items() if k not in ("test", "card")} for f in folds],
        }
        out[name]["slices"] = by_slice(rows, everything, predicted, folds)
    start = time.perf_counter()
    held_out = np.array([r["source"] == "speechmap_other" for r in rows])
    model = fit_tuned(data, everything[~held_out])
    predicted = np.array([""] * len(rows), dtype=object)
    predicted[held_out] = decided(model, data, everything[held_out])
    out["cross_source"] = {
        "trained_without": "speechmap_other",
        "seconds": round(time.perf_counter() - start, 1),
        "settings": model.meta["setting"],
        "slices": by_slice(rows, everything[held_out], predicted),
    }
    out["speed"] = speed(load_dev_rows(rows))
    if args.judge:
        out["judge"] = score_judge(rows, args.judge, args.judge_limit)
    print(json.dumps(out, ensure_ascii=False))


EXAMPLE_SAMPLE = "answers of the bundled example study (SpeechMap China, as the dev rows), shuffled"


def example_rows() -> list[dict]:
    """The bundled example study's answers (SpeechMap China, as the dev rows begin), shuffled the
    same way every time (the file is sorted by model), for the speed sample without ../shared."""
    import gzip
    import random

    from lib.imports.action import EXAMPLE

    with gzip.open(EXAMPLE, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    random.Random(0).shuffle(rows)
    return rows


def load_dev_rows(rows: list[dict]) -> list[dict]:
    """The dev rows (the first part of `load_rows`), the usual speed sample."""
    return [r for r in rows if r["source"] in ("speechmap_china", "xstest_v1", "openai_rbr_gold")]


def score_judge(rows: list[dict], endpoint_id: str, limit: int) -> dict:
    """The judge's report on a seeded sample of the labelled rows."""
    import random

    from lib.deflection.judge import judge
    from lib.providers.endpoints import load_endpoints

    sample = random.Random(0).sample(rows, min(limit, len(rows)))
    verdicts = judge(load_endpoints()[endpoint_id], sample)
    answered = [(r, v) for r, v in zip(sample, verdicts, strict=True) if not v.error]  # a failed call is no verdict
    if not answered:
        return {"endpoint": endpoint_id, "failed_calls": len(sample)}
    return {
        "endpoint": endpoint_id,
        "failed_calls": len(sample) - len(answered),
        **report([r for r, _ in answered], [product(r["label"]) for r, _ in answered], [v.label for _, v in answered]),
    }


if __name__ == "__main__":
    main()
