"""The deflection view: not-answered rates per model, model × topic and English/Chinese twins,
each raw (as labelled, Wilson 95%) beside corrected for the detector's measured errors (see
`rates`); the answers left out of rates, counted apart; the detector's agreement with other
label sources; and the detector card the correction used.

Only a finished answer (status `ok`) labelled answered / refused / deflected counts in a rate;
the effective label counts (a human one wins). Provider blocks, broken or interrupted streams
(`incomplete`), empty answers and unlabelled ones are counted apart, per model. Pages and the
CLI render this dict (and the display tables below) without computing anything themselves."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict

import numpy as np

from db.vocab import LANGUAGES, Label, LabelSource, Status
from lib.analysis import rates as R
from lib.analysis.stats import rate
from lib.imports.action import EXAMPLE_SOURCE
from lib.present import cli_hint, plural

IN_RATES = "in_rates"
APART = (Label.BLOCKED, Label.INCOMPLETE, Label.EMPTY, "unlabelled")  # why an answer is left out
ALL_TOPICS = "(all)"


def bucket(row: dict) -> str:
    """IN_RATES for a finished answer labelled answered/refused/deflected, else why it is left out."""
    status, label = row.get("status") or Status.OK, row.get("label")
    if status == Status.BLOCKED or label == Label.BLOCKED:
        return Label.BLOCKED
    if status != Status.OK:
        return Label.INCOMPLETE  # whatever its label: a partial text is not an answer
    if label in R.CLASSES:
        return IN_RATES
    if label is None:
        return "unlabelled"
    return Label.EMPTY if label == Label.EMPTY else Label.INCOMPLETE


def _kind(row: dict) -> str:
    """Who gave the label that counts: human (the truth), detector (corrected) or other."""
    source = row.get("label_source") or LabelSource.DETECTOR  # rows built by hand: the detector's
    if source == LabelSource.HUMAN:
        return "human"
    return "detector" if LabelSource.is_detector(source) else "other"


def _language(row: dict) -> str:
    return row.get("language") or "en"  # as db.answers reads an unknown language


def detector_label(row: dict) -> str | None:
    """The newest detector label of a row (`labels` is {source: label}, oldest first)."""
    found = [label for source, label in (row.get("labels") or {}).items() if LabelSource.is_detector(source)]
    return found[-1] if found else None


def corrected_cell(rows: list[dict], corrector: R.Corrector, *key) -> tuple[dict | None, np.ndarray]:
    """The corrected not-answered rate of rows already in rates, and its bootstrap draws.

    Detector labels are corrected with their language's matrix; human labels are counted as they
    are (the truth), as are other sources' labels. None (and no draws) without matrices."""
    if not corrector or not rows:
        return None, np.zeros(0)
    detector: dict[str, list[str]] = defaultdict(list)
    human, other = [], []
    for r in rows:
        kind = _kind(r)
        if kind == "detector":
            detector[_language(r)].append(r["label"])
        else:
            (human if kind == "human" else other).append(r["label"])
    found, draws = corrector.rate(dict(detector), human + other, *key)
    cell = {
        "rate": found.corrected,
        "low": found.low,
        "high": found.high,
        "n_corrected": found.n_corrected,
        "n_human": len(human),
        "n_uncorrected": found.n_as_labelled - len(human),
    }
    return cell, draws


def _raw(rows: list[dict]) -> dict:
    counts = Counter(r["label"] for r in rows)
    n = len(rows)
    return {
        "n": n,
        "not_answered": rate(sum(counts[x] for x in Label.NOT_ANSWERED), n),
        **{label: rate(counts[label], n) for label in R.CLASSES},
    }


def _rates(counted: list[dict], corrector: R.Corrector) -> list[dict]:
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in counted:
        cells[(r["model_name"], r["topic"])].append(r)
        cells[(r["model_name"], ALL_TOPICS)].append(r)
    out = []
    for (model, topic), members in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1] != ALL_TOPICS, kv[0][1])):
        corrected, _ = corrected_cell(members, corrector, "rate", model, topic)
        out.append({"model": model, "topic": topic, **_raw(members), "corrected": corrected})
    return out


def _gaps(counted: list[dict], corrector: R.Corrector) -> list[dict]:
    out = []
    for model in sorted({r["model_name"] for r in counted}):
        twins = [r for r in counted if r["model_name"] == model and r.get("twin_key")]
        by_lang = {lang: [r for r in twins if _language(r) == lang] for lang in LANGUAGES}
        if not (by_lang["en"] and by_lang["zh"]):
            continue
        entry: dict = {"model": model}
        draws = {}
        for lang, members in by_lang.items():
            entry[lang] = _raw(members)["not_answered"]
            entry[f"{lang}_corrected"], draws[lang] = corrected_cell(members, corrector, "gap", model, lang)
        entry["gap"] = entry["zh"]["rate"] - entry["en"]["rate"]
        point = None
        if entry["en_corrected"] and entry["zh_corrected"]:
            point = entry["zh_corrected"]["rate"] - entry["en_corrected"]["rate"]
        entry["gap_corrected"] = R.difference(draws["en"], draws["zh"], point)
        out.append(entry)
    return out


def _agreement(rows: list[dict]) -> list[dict]:
    pairs = []
    for r in rows:
        if (r.get("status") or Status.OK) != Status.OK or not (ours := detector_label(r)):
            continue
        for source, theirs in (r.get("labels") or {}).items():
            if not LabelSource.is_detector(source):
                pairs.append((source, _language(r), theirs, ours))
    return [asdict(a) for a in R.agreement(pairs)]


def card_summary(card: dict) -> dict:
    """What the detector card says, without its fold settings: detector, date, method, and per
    language and per source the answers it was measured on and the confusion counts."""
    if not card:
        return {}

    def entry(e: dict) -> dict:
        return {k: e.get(k) for k in ("n", "sources", "accuracy", "mean_recall", "confusion")}

    return {
        "detector": card.get("detector"),
        "features": card.get("features"),
        "measured": card.get("measured"),
        "method": card.get("method"),
        "labels": card.get("labels"),
        "matrix": card.get("matrix"),
        "languages": {lang: entry(e) for lang, e in (card.get("languages") or {}).items()},
        "by_source": {key: entry(e) for key, e in (card.get("by_source") or {}).items()},
        "trained_on": card.get("trained_on"),
        "not_trained_on": card.get("not_trained_on"),
    }


def correction_summary(counted: list[dict], corrector: R.Corrector, card: dict) -> dict:
    """How the corrected rates were made: method, the matrix used per language, what was not corrected."""
    matrices = corrector.matrices
    kinds = Counter(_kind(r) for r in counted)
    detector = card.get("detector")
    other_versions = sum(
        1 for r in counted if _kind(r) == "detector" and r.get("label_source") and r["label_source"] != detector
    )
    no_matrix = sorted({_language(r) for r in counted if _kind(r) == "detector" and _language(r) not in matrices})
    notes = []
    if not matrices:
        notes.append("the detector has no card with confusion matrices: rates are not corrected")
    if other_versions:
        notes.append(
            f"{plural(other_versions, 'label comes', 'labels come')} from another detector version than the card's "
            f"(corrected with this card anyway; {cli_hint('classify --db')} relabels them)"
        )
    if no_matrix:
        notes.append(f"no matrix for language(s) {', '.join(no_matrix)}: their detector labels are not corrected")
    example = sum(1 for r in counted if LabelSource.imported(EXAMPLE_SOURCE) in (r.get("labels") or {}))
    if example and matrices:
        notes.append(
            f"{plural(example, 'answer is', 'answers are')} from the example study, which the detector was trained "
            "on: its labels there match the judges' almost always, so read their raw rate — the correction "
            "applies the errors it makes on answers it never saw and moves these rates away from the judges'"
        )
    return {
        "method": R.METHOD,
        "detector": detector,
        "measured": card.get("measured"),
        "matrices": {lang: m.as_json() for lang, m in sorted(matrices.items())},
        "labels": {"detector": kinds["detector"], "human": kinds["human"], "other": kinds["other"]},
        "notes": notes,
    }


def view(rows: list[dict], card: dict | None = None) -> dict:
    """The deflection view of a scope's rows (see db.answers.scope_answers), corrected with `card`
    (default: the shipped detector's card). JSON-ready; `{"error": why, ...}` when no rate can be
    computed (the answers left out and the card are still given)."""
    if not rows:
        return {"error": "no answers in this scope"}
    if card is None:
        from lib.deflection import detector_card

        card = detector_card()
    corrector = R.Corrector.from_card(card)
    models = sorted({r["model_name"] for r in rows})
    apart: dict[str, Counter] = {m: Counter() for m in models}
    counted = []
    for r in rows:
        where = bucket(r)
        apart[r["model_name"]][where] += 1
        if where == IN_RATES:
            counted.append(r)
    left_out = {
        m: {"answers": sum(c.values()), IN_RATES: c[IN_RATES], **{k: c[k] for k in APART}} for m, c in apart.items()
    }
    blocks = {m: rate(c[Label.BLOCKED], sum(c.values())) for m, c in apart.items()}
    common = {
        "left_out": left_out,
        "provider_blocks": blocks,
        "detector_card": card_summary(card),
    }
    if not counted:
        if all(c["unlabelled"] == c["answers"] for c in left_out.values()):
            why = f"no answer in this scope has a label yet (run {cli_hint('classify --db')})"
        else:
            why = (
                f"none of the {len(rows)} answers in this scope is a finished answer labelled "
                "answered/refused/deflected"
            )
        return {"error": why, **common}
    gap = _gaps(counted, corrector)
    return {
        "rates": _rates(counted, corrector),
        "language_gap": gap,
        "language_gap_note": None if gap else "no twin (English/Chinese) prompts answered in this scope",
        "agreement": _agreement(rows),
        "correction": correction_summary(counted, corrector, card),
        **common,
    }


# --- display tables (strings), shared by the Analysis page, suite results and the CLI ---------


def pct(value: float | None, digits: int = 0) -> str:
    """A share as a percentage with `digits` decimals (whole by default), '–' when unknown."""
    return "–" if value is None else f"{value:.{digits}%}"


# An interval is written [low, high] everywhere (pages, CLI, suite results, chart hovers): a dash
# between signed bounds ('-3–+45') reads as a subtraction.
MINUS = "\u2212"  # a minus sign, not a hyphen: '−3'


def with_interval(cell: dict | None) -> str:
    """'40% [31%, 50%]' for a {rate, low, high} dict, '–' without one."""
    if not cell or cell.get("rate") is None:
        return "–"
    return f"{cell['rate']:.0%} [{cell['low']:.0%}, {cell['high']:.0%}]"


def points(share: float) -> str:
    """A difference of shares in whole points with its sign: '+12', '−3' (a minus sign), and '+0'
    (never '−0')."""
    number = int(round(float(share) * 100))
    return f"+{number}" if number >= 0 else f"{MINUS}{-number}"


def signed(cell: dict | None) -> str:
    """'+12 pts [−3, +20]' for a difference with an interval, '–' without one."""
    if not cell or cell.get("rate") is None:
        return "–"
    return f"{points(cell['rate'])} pts [{points(cell['low'])}, {points(cell['high'])}]"


RAW = "not answered, raw [95% CI]"
CORRECTED = "corrected [95% CI]"


def rate_table(rates: list[dict]) -> list[dict[str, str]]:
    """Rates as display rows: model, topic, n, raw and corrected not-answered rates, each label."""
    return [
        {
            "model": r["model"],
            "topic": r["topic"],
            "n": str(r["n"]),
            RAW: with_interval(r["not_answered"]),
            CORRECTED: with_interval(r.get("corrected")),
            "refused": pct(r["refused"]["rate"]),
            "deflected": pct(r["deflected"]["rate"]),
            "human labels": str((r.get("corrected") or {}).get("n_human", 0)),
        }
        for r in rates
    ]


def gap_table(gaps: list[dict]) -> list[dict[str, str]]:
    """English-vs-Chinese twins as display rows, raw and corrected."""
    return [
        {
            "model": g["model"],
            "en raw": with_interval(g["en"]),
            "en corrected": with_interval(g.get("en_corrected")),
            "zh raw": with_interval(g["zh"]),
            "zh corrected": with_interval(g.get("zh_corrected")),
            "gap raw": f"{points(g['gap'])} pts",
            "gap corrected": signed(g.get("gap_corrected")),
        }
        for g in gaps
    ]


def left_out_table(left_out: dict) -> list[dict[str, str]]:
    """Per model: all answers, those in rates, and each reason for leaving one out."""
    return [
        {
            "model": model,
            "answers": str(c["answers"]),
            "in rates": str(c[IN_RATES]),
            "blocked (provider)": str(c[Label.BLOCKED]),
            "incomplete (failed or interrupted)": str(c[Label.INCOMPLETE]),
            "empty": str(c[Label.EMPTY]),
            "unlabelled": str(c["unlabelled"]),
        }
        for model, c in left_out.items()
    ]


def agreement_table(agreements: list[dict]) -> list[dict[str, str]]:
    """The detector against each other label source, per language."""
    return [
        {
            "source": a["source"],
            "language": a["language"],
            "n": str(a["n"]),
            "Cohen's kappa": "–" if a["kappa"] is None else f"{a['kappa']:.2f}",
            "agreement": pct(a["accuracy"], 1),  # 2 disagreements in 709 are 99.7%, not 100%
        }
        for a in agreements
    ]


def confusion_table(confusion: list[list[int]], rows_are: str, columns_are: str = "detector") -> list[dict]:
    """A 3 × 3 count matrix over answered/refused/deflected as display rows."""
    return [
        {f"{rows_are} ↓ / {columns_are} →": label, **{c: int(v) for c, v in zip(R.CLASSES, row, strict=True)}}
        for label, row in zip(R.CLASSES, confusion, strict=True)
    ]


def used_matrices(view_: dict) -> dict[str, dict]:
    """Per language, the card's matrix that corrects its rates: {measured_on, n, confusion}."""
    found = (view_.get("correction") or {}).get("matrices")
    return found or {lang: m.as_json() for lang, m in R.card_matrices(view_.get("detector_card") or {}).items()}


def card_table(view_: dict) -> list[dict[str, str]]:
    """Per language: what the card measured (n, sources, accuracy) and the matrix that corrects it."""
    card = view_.get("detector_card") or {}
    used = used_matrices(view_)
    return [
        {
            "language": lang,
            "measured on (n)": ", ".join(f"{s} ({n})" for s, n in (e.get("sources") or {}).items()),
            "n": str(e.get("n")),
            "accuracy": pct(e.get("accuracy")),
            "corrects with": f"{used[lang]['measured_on']} (n={used[lang]['n']})" if lang in used else "–",
        }
        for lang, e in (card.get("languages") or {}).items()
    ]


def card_line(view_: dict) -> str:
    """One sentence: which detector card and matrices corrected the rates (or why none did)."""
    card = view_.get("detector_card") or {}
    if not card:
        return "No detector card: rates are not corrected."
    used = used_matrices(view_)
    matrices = ", ".join(f"{lang} ← {m['measured_on']} (n={m['n']})" for lang, m in used.items())
    return f"Corrected with the card of {card.get('detector')} (measured {card.get('measured')}): {matrices}."
