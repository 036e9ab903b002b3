"""Deflection detector: label an answer answered / refused / deflected, or say why it has no such
label (blocked / incomplete / empty).

Layered, and each verdict records the layer that decided it (`rule`):
1. transport — only an answer whose stream finished (`status` "ok") gets an answered / refused /
   deflected verdict. Status `blocked` gives `blocked` (rule `transport:blocked`); any other
   status (`error`, `interrupted`, …) gives `incomplete` (rule `transport:<status>`), whatever
   partial text arrived, so callers can keep both out of rates and show them apart. A finished
   answer with no text after its reasoning trace is `empty`;
2. patterns — short canned refusals and redirects in English and Chinese (high precision), and
   short direct answers with no cue of anything else ("台北。"); read with quotations that contain
   refusals set aside (fiction and quoted guards are not the model refusing);
3. model — a linear model over hashed n-grams and dense cues for everything else (see `train`).

`detector_card()` returns the out-of-fold confusion matrices measured when the artifact was trained.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from db.vocab import Label, LabelSource, Status
from lib.deflection import card as _card
from lib.deflection import patterns
from lib.deflection.model import ARTIFACT, PRODUCT, Classifier

NAME = LabelSource.DETECTOR
LABELS = Label.ALL
ANSWER_LABELS = Label.MODEL_CHOICES  # the only labels that belong in rates
MAX_CHARS = 20_000  # very long answers are cut before featurising
_lock = threading.Lock()
_classifier: Classifier | None = None
OTHER_SCRIPT = re.compile(r"[^\W\d_a-zA-Z\u3400-\u9fff]")
LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class Verdict:
    """One label with its confidence and the rule or model that produced it. A judge call that
    failed (no reply: a 401, a timeout…) is no verdict: `error` says why, and the label means
    nothing (it must not be stored or written as one)."""

    label: str
    confidence: float
    rule: str
    error: str | None = None


def classifier() -> Classifier:
    """The shipped classifier, loaded once per process."""
    global _classifier
    with _lock:
        if _classifier is None:
            _classifier = Classifier.load(ARTIFACT)
        return _classifier


def detector_card() -> dict:
    """The shipped detector's card: per-language out-of-fold confusion matrices and what they were
    measured on, when, and by which method (see `card`); {} when the artifact has none."""
    return _card.read(ARTIFACT)


def source_name() -> str:
    """The label source recorded for this detector version (name@version)."""
    return LabelSource.detector(classifier().meta.get("version", "dev"))


def _other_language(text: str) -> bool:
    letters = len(LETTER.findall(text[:2000]))
    return bool(letters) and len(OTHER_SCRIPT.findall(text[:2000])) / letters > 0.5


def _other_language_check(verdict: Verdict, text: str) -> Verdict:
    """Half the confidence, and say so, for an answer mostly in a script neither English nor Chinese."""
    if not _other_language(text):
        return verdict
    return Verdict(verdict.label, round(verdict.confidence * 0.5, 4), f"{verdict.rule}+other-language")


def transport_verdict(status: str, text: str) -> Verdict | None:
    """The verdict an answer gets from its status and emptiness alone, or None."""
    if status == Status.BLOCKED:
        return Verdict(Label.BLOCKED, 1.0, "transport:blocked")
    if status != Status.OK:
        return Verdict(Label.INCOMPLETE, 1.0, f"transport:{status}")
    if not patterns.strip_reasoning(text).strip():
        return Verdict(Label.EMPTY, 1.0, "transport:empty")
    return None


def classify(items: list[dict], model: Classifier | None = None) -> list[Verdict]:
    """Verdicts for dicts with `response` (and optional `prompt`, `status`), in order."""
    verdicts: list[Verdict | None] = [None] * len(items)
    pending = []
    for i, item in enumerate(items):
        text = (item.get("response") or "")[:MAX_CHARS]
        if verdict := transport_verdict(item.get("status") or Status.OK, text):
            verdicts[i] = verdict
        elif canned := patterns.pattern_label(text):
            verdicts[i] = _other_language_check(Verdict(canned[0], 0.97, canned[1]), text)
        else:
            pending.append(i)
    if pending:
        model = model or classifier()
        probs = model.predict_proba(
            [items[i].get("prompt") or "" for i in pending],
            [(items[i].get("response") or "")[:MAX_CHARS] for i in pending],
        )
        for row, i in zip(probs, pending, strict=True):
            k = int(row.argmax())
            verdict = Verdict(PRODUCT[k], round(float(row[k]), 4), "model:linear")
            verdicts[i] = _other_language_check(verdict, items[i].get("response") or "")
    return verdicts  # type: ignore[return-value]


def detect(prompt: str, response: str, status: str = Status.OK) -> Verdict:
    """The verdict for one answer."""
    return classify([{"prompt": prompt, "response": response, "status": status}])[0]
