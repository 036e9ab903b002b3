"""The shipped detector on another study's answers: questions, models and wording it never saw.

The study is AUGMXNT/deccp (Apache-2.0, ../shared/data/prompts/deccp_qwen2_responses.jsonl): 95
China-sensitive requests (English and Chinese) that Qwen2-7B-Instruct refused, each answered by
Qwen2-7B-Instruct and by the same model with its refusal direction ablated ("abliterated"). The
study publishes no labels; `bench/labels/deccp.jsonl` holds one per answer, written by an annotator
who read every answer with the judge's rubric (lib/deflection/judge.RUBRIC) and two clarifications
(the official position counts as answered only where it addresses the question with substance; a
decline followed by a genuine answer is answered, followed only by filler or an official paragraph
refused) without seeing the detector's labels, and marked the answers a second annotator could
label otherwise (`sure`: false). Neither model, none of the prompts and no answer
of this study is in the detector's training data.

Reports, per language and over both: macro-F1 (answered/refused/deflected), answered-vs-not F1
(positive = not answered), the confusion, and per model the judged and detected not-answered rate,
raw and corrected with the shipped card's matrices as the pages correct it (with the 95% interval);
the same over the `sure` answers only.
Prints one JSON object. Usage: python bench/deflection_other_study.py"""

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.metrics import confusion_matrix, f1_score  # noqa: E402

from lib.analysis.rates import card_matrices, corrected_not_answered  # noqa: E402
from lib.deflection import classify, detector_card, source_name  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT.parent / "shared" / "data" / "prompts" / "deccp_qwen2_responses.jsonl"
LABELS = ROOT / "bench" / "labels" / "deccp.jsonl"
MODELS = {"qwen2_7b_instruct": "Qwen2-7B-Instruct", "abliterated": "Qwen2-7B-Instruct abliterated"}
CLASSES = ["answered", "refused", "deflected"]
CJK = re.compile(r"[\u3400-\u9fff]")


def load() -> list[dict]:
    """The study's answers with their labels: prompt, response, model, language, label, sure."""
    study = [json.loads(line) for line in STUDY.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for line in LABELS.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        label = json.loads(line)
        item = study[label["prompt_index"]]
        if item["prompt"] != label["prompt"]:
            raise SystemExit(f"{LABELS}: prompt {label['prompt_index']} is not the study's (the study file changed)")
        rows.append(
            {
                "prompt": item["prompt"],
                "response": item[f"{label['response']}_response"],
                "model": MODELS[label["response"]],
                "language": "zh" if CJK.search(item["prompt"]) else "en",
                "label": label["label"],
                "sure": label["sure"],
            }
        )
    return rows


def scores(rows: list[dict], detected: list[str]) -> dict:
    """Macro-F1, answered-vs-not F1 and the confusion (rows: judged, columns: detected)."""
    gold = [r["label"] for r in rows]
    present = [c for c in CLASSES if c in gold]
    return {
        "n": len(rows),
        "macro_f1": round(f1_score(gold, detected, labels=present, average="macro", zero_division=0), 3),
        "answered_vs_not_f1": round(
            f1_score([g != "answered" for g in gold], [d != "answered" for d in detected], zero_division=0), 3
        ),
        "confusion": {"labels": CLASSES, "counts": confusion_matrix(gold, detected, labels=CLASSES).tolist()},
    }


def rates(rows: list[dict], detected: list[str]) -> dict:
    """Per model: judged and detected not-answered rate (points), the detected one corrected with
    the shipped card as the pages do, its 95% interval, and whether the interval holds the judged rate."""
    matrices = {lang: m.confusion for lang, m in card_matrices(detector_card()).items()}
    by_model = defaultdict(list)
    for k, row in enumerate(rows):
        by_model[row["model"]].append(k)
    out = {}
    for model, ks in sorted(by_model.items()):
        judged = sum(rows[k]["label"] != "answered" for k in ks) / len(ks)
        labels = defaultdict(list)
        for k in ks:
            labels[rows[k]["language"]].append(detected[k])
        rate = corrected_not_answered(labels, matrices)
        out[model] = {
            "n": len(ks),
            "judged": round(judged * 100, 1),
            "detected_raw": round(rate.raw * 100, 1),
            "detected_corrected": round(rate.corrected * 100, 1),
            "interval": [round(rate.low * 100, 1), round(rate.high * 100, 1)],
            "interval_holds_judged": bool(rate.low <= judged <= rate.high),
            "error_raw": round(abs(rate.raw - judged) * 100, 1),
            "error_corrected": round(abs(rate.corrected - judged) * 100, 1),
        }
    return out


def main() -> None:
    if not STUDY.exists():
        print(json.dumps({"skipped": f"{STUDY} is absent (the shared data folder)"}))
        return
    rows = load()
    detected = [v.label for v in classify([{"prompt": r["prompt"], "response": r["response"]} for r in rows])]
    out: dict = {"detector": source_name(), "study": "AUGMXNT/deccp Qwen2-7B-Instruct answers", "labels": str(LABELS)}
    for name, keep in (("all", lambda r: True), ("sure", lambda r: r["sure"])):
        part = [k for k, r in enumerate(rows) if keep(r)]
        block = {}
        for language in ("all", "en", "zh"):
            ks = [k for k in part if language == "all" or rows[k]["language"] == language]
            block[language] = scores([rows[k] for k in ks], [detected[k] for k in ks])
        block["per_model"] = rates([rows[k] for k in part], [detected[k] for k in part])
        out[name] = block
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    # --help prints what the bench measures instead of starting it
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
