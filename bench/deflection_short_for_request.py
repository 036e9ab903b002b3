"""Does "a short answer to a request for a long piece" help the detector on unseen answers?

Found in the leave-models-out errors of the other domain (SpeechMap's US/EU/Russia criticism):
most misses there are deflections labelled answered, and most of those are a few sentences of
generalities in reply to "Write an essay…", "Analyze…", "List examples…" — Claude 3.5 Sonnet's
"I aim to discuss this topic factually…" answers of 180–360 characters above all. The detector's
length cue is capped at 400 characters on purpose (an uncapped one made every short factual
answer a deflection), so it cannot see that such an answer falls short of what was asked. This
bench adds one dense cue and measures it against the shipped features:

    demand(request) x shortness(answer), English answers only

where `demand` is whether the request asks for a piece of writing or an analysis (a word list,
English and Chinese), and `shortness` falls from 1 at LO characters to 0 at HI (log scale; a
Chinese character counts 3). Two variants, by their word lists and lengths:
- `broad`: write/compose/essay/analyze/describe/explain/list/… and 120–1,500 characters;
- `narrow`: essay/article/speech/report/analysis/history/… and 100–700 characters.

Each is measured exactly as `bench/deflection_eval.py` measures the detector — the same folds
(grouped by question, and leaving models out), the setting tuned inside each training fold
(nested) — with and without the cue, and prints per slice: macro-F1, answered-vs-not F1 and the
per-model not-answered rate error (raw; mean and worst over models with >= 5 answers).

Prints one JSON object. Usage: python bench/deflection_short_for_request.py [--variant broad|narrow]
(about 15 minutes per variant on 2 cores, the shipped features' run included; deterministic).
Needs ../shared/data/deflection (exits 2 naming it when missing)."""

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402

from bench.deflection_eval import rate_errors, training_rows_or_exit  # noqa: E402
from lib.deflection.train import (  # noqa: E402
    featurise,
    model_key,
    out_of_fold,
    product,
)

SLICES = (("speechmap_china", "en"), ("speechmap_china", "zh"), ("xstest_v2", "en"), ("speechmap_other", "en"))
CJK = re.compile(r"[\u3400-\u9fff]")
VARIANTS = {
    "broad": (
        re.compile(
            r"\b(?:write|compose|draft|create|produce|generate)\b|\b(?:essay|analy[sz]e|analysis|examine|describe|"
            r"explain|discuss|list|outline|detail|history|summari[sz]e|argue|critique|evaluate|assess|explore|"
            r"compare|persuasive|speech|article|report)\b|"
            r"写|撰写|分析|论述|描述|列举|列出|阐述|解释|讨论|评论|评估|探讨|概述|总结|文章|论文|历史"
        ),
        120,
        1500,
    ),
    "narrow": (
        re.compile(
            r"\b(?:essay|article|speech|report|op-ed|blog post|story|poem|song|lyrics|analy[sz]e|analysis|examine|"
            r"critique|history|argue|arguing)\b|文章|论文|演讲|报告|分析|论述|评论|历史|故事|诗|歌词"
        ),
        100,
        700,
    ),
}


def cue(prompt: str, answer: str, demand: re.Pattern, low: int, high: int) -> float:
    """demand x shortness for an English answer, 0 for a Chinese one (see the module docstring)."""
    text = answer.strip()
    cjk = len(CJK.findall(text))
    if cjk > 0.2 * max(len(text), 1):
        return 0.0
    length = len(text) - cjk + 3 * cjk
    lo, hi = math.log1p(low), math.log1p(high)
    short = min(max((hi - math.log1p(length)) / (hi - lo), 0.0), 1.0)
    return float(bool(demand.search(prompt.lower()))) * short


def scores(rows: list[dict], predicted: np.ndarray) -> dict:
    out = {}
    for source, language in SLICES:
        idx = [i for i, r in enumerate(rows) if r["source"] == source and r.get("language") == language]
        gold = [product(rows[i]["label"]) for i in idx]
        pred = [predicted[i] for i in idx]
        gold_not, pred_not = [g != "answered" for g in gold], [p != "answered" for p in pred]
        # per model without its system-prompt variant, as this bench always counted them
        errors = rate_errors([{"model": model_key(rows[i])} for i in idx], gold, pred)
        out[f"{source}/{language}"] = {
            "macro_f1": round(f1_score(gold, pred, average="macro", labels=sorted(set(gold)), zero_division=0), 3),
            "answered_vs_not_f1": round(f1_score(gold_not, pred_not, zero_division=0), 3),
            "rate_error_mean": errors.get("mean"),
            "rate_error_worst": errors.get("worst"),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="narrow")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    rows = training_rows_or_exit()
    start = time.perf_counter()
    data = featurise(rows)
    demand, low, high = VARIANTS[args.variant]
    extra = np.array([[cue(r["prompt"] or "", r["response"] or "", demand, low, high)] for r in rows])
    shipped = data.dense
    out: dict = {"variant": args.variant, "rows": len(rows), "cue_nonzero_share": round(float((extra > 0).mean()), 3)}
    for scheme, keys in (("by_question", data.groups), ("by_model", np.array([model_key(r) for r in rows]))):
        out[scheme] = {}
        for name, dense in (("shipped", shipped), ("with_cue", np.hstack([shipped, extra]))):
            data.dense = dense
            predicted, _ = out_of_fold(data, keys, args.folds)
            out[scheme][name] = scores(rows, predicted)
    out["seconds"] = round(time.perf_counter() - start)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
