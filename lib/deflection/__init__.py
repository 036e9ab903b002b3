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

import functools
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
LETTERS = re.compile(r"[^\W\d_]+")  # runs of letters: counting them is twice as fast as letter by letter
# An answer in another language (German, Spanish, Japanese written mostly in kanji…) is told from
# English and Chinese by a language identifier on its opening: below 15 letters it is unreliable
# ("Sorry, no." reads as Malagasy). The test is that English and Chinese together are improbable and
# one other language is probable: German splits its mass with Luxembourgish, while a list of names
# or places ("Mao Zedong (1949–1976)…", "Kashgar, Hotan…") has no probable language at all. Of the
# 8,731 training answers (all English or Chinese requests) these settings flag 8: seven answered in
# Russian, one in Spanish.
LANGUAGE_WINDOW = 300  # characters
MIN_LETTERS = 15
MAX_ENGLISH_OR_CHINESE = 0.01
MIN_OTHER = 0.5
KANA_HANGUL = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")
SHORT_ANSWER = "pattern:short-answer"


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


@functools.cache
def language_identifier():
    """py3langid's naive Bayes identifier (97 languages, normalised probabilities), loaded on first
    use (0.6 s)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _other_language(text: str) -> bool:
    """Whether an answer is neither English nor Chinese: mostly another script (Cyrillic, Arabic,
    kana…), or text that py3langid confidently identifies as another language (p(English) +
    p(Chinese) < 0.01, and one language at p ≥ 0.5). The reasoning trace is left out: it is the
    answer's language that counts."""
    text = patterns.strip_reasoning(text)
    window = text[:2000]
    other = len(OTHER_SCRIPT.findall(window))  # most answers have none: the letter count is skipped
    if other:
        letters = sum(map(len, LETTERS.findall(window)))
        if letters >= MIN_LETTERS and other / letters > 0.5:
            return True
    head = text[:LANGUAGE_WINDOW]
    letters = sum(map(len, LETTERS.findall(head)))
    if letters < MIN_LETTERS:
        return False
    if len(patterns.CJK.findall(head)) > 0.2 * letters and not KANA_HANGUL.search(head):
        return False  # Chinese: the identifier is asked only where kana or hangul may make it Japanese or Korean
    ranked = language_identifier().rank(head)
    probability = dict(ranked)
    english_or_chinese = probability.get("en", 0.0) + probability.get("zh", 0.0)
    return english_or_chinese < MAX_ENGLISH_OR_CHINESE and ranked[0][1] >= MIN_OTHER


def _other_language_check(verdict: Verdict, text: str, other: bool | None = None) -> Verdict:
    """Half the confidence, and say so, for an answer in a language neither English nor Chinese
    (`other`: `_other_language(text)` when already known)."""
    if not (_other_language(text) if other is None else other):
        return verdict
    return Verdict(verdict.label, round(verdict.confidence * 0.5, 4), f"{verdict.rule}{Label.OTHER_LANGUAGE_RULE}")


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
            other = _other_language(text)
            if canned[1] == SHORT_ANSWER and other:
                # a short answer is one with no cue of anything else: in another language none can be read
                pending.append(i)
            else:
                verdicts[i] = _other_language_check(Verdict(canned[0], 0.97, canned[1]), text, other)
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
