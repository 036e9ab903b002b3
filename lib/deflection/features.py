"""Features for the statistical layer: hashed character and word n-grams of the answer (works
for Chinese without a tokenizer, and needs no stored vocabulary), plus a few dense signals —
refusal and inability cues, official-line boilerplate, length and structure, and how relevant
the answer is to the prompt (character-bigram overlap and hashed-vector cosine)."""

from __future__ import annotations

import math
import re

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer

from lib.deflection import patterns as p

VERSION = "4"  # bump when features change, so the model version changes with them
CHAR_FEATURES = 2**18
WORD_FEATURES = 2**17
HEAD, TAIL = 1000, 200  # long answers: the opening and the close carry the signal
CJK = re.compile(r"[\u3400-\u9fff]")
NON_WORD = re.compile(r"\W+")
LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)、]|#+)\s", re.M)
DENSE_NAMES = [
    "log_len",
    "log_lines",
    "log_list_items",
    "refusal_opening",
    "log_inability",
    "apology_opening",
    "redirect",
    "official_per_kchar",
    "log_official",
    "relevance_cosine",
    "prompt_bigram_overlap",
    "cjk_share",
    "cjk_mismatch",
    "log_questions",
    "had_reasoning",
    "first_person_ai",
    "critical_per_kchar",
    "critical_minus_official",
]

_char = HashingVectorizer(
    analyzer="char", ngram_range=(2, 4), n_features=CHAR_FEATURES, alternate_sign=False, norm=None, lowercase=True
)
_word = HashingVectorizer(
    analyzer="word",
    ngram_range=(1, 2),
    n_features=WORD_FEATURES,
    alternate_sign=False,
    norm=None,
    lowercase=True,
    token_pattern=r"(?u)\b\w[\w']+\b",
)
FIRST_PERSON_AI = re.compile(r"\bas an ai\b|\bi'?m an ai\b|作为(?:一个)?(?:人工智能|AI|ai|语言模型)", re.I)


def clip(text: str) -> str:
    """Whitespace-collapsed text, at most HEAD + TAIL characters."""
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= HEAD + TAIL else text[:HEAD] + " … " + text[-TAIL:]


def _bigrams(text: str) -> set[str]:
    text = NON_WORD.sub("", text.lower())
    return {text[i : i + 2] for i in range(len(text) - 1)}


def dense_features(prompt: str, raw_answer: str, answer: str, clipped: str) -> list[float]:
    """The hand-made signals for one answer (see DENSE_NAMES); cues are searched in `clipped`."""
    head = answer[:200]
    length = max(len(answer), 1)
    lowered = clipped.lower()
    official = len(p.OFFICIAL_RE.findall(lowered))
    critical = len(p.CRITICAL_RE.findall(lowered))
    cjk_answer = len(CJK.findall(answer)) / length
    cjk_prompt = len(CJK.findall(prompt)) / max(len(prompt), 1)
    prompt_bigrams = _bigrams(prompt)
    overlap = len(prompt_bigrams & _bigrams(clipped)) / len(prompt_bigrams) if prompt_bigrams else 0.0
    return [
        # length and structure are capped: long essays dominate the training data, and an
        # uncapped length cue taught the model that any short factual answer is a deflection
        min(math.log1p(len(answer)), math.log1p(400)),
        min(math.log1p(answer.count("\n")), math.log1p(3)),
        min(math.log1p(len(LIST_LINE.findall(answer))), math.log1p(2)),
        float(bool(p.REFUSAL_RE.search(head) or p.ZH_REFUSAL_RE.search(head))),
        math.log1p(len(p.INABILITY_RE.findall(clipped))),
        # an apology counts only when it opens a refusal ("Sorry for the long answer" does not)
        float(bool(p.APOLOGY_RE.search(head) and p.INABILITY_RE.search(head[:150]))),
        float(bool(p.REDIRECT_RE.search(clipped) or p.ZH_REDIRECT_RE.search(clipped))),
        min(official * 1000 / length, 20.0),
        math.log1p(official),
        0.0,  # relevance_cosine: filled in batch below
        overlap,
        cjk_answer,
        abs(cjk_answer - cjk_prompt),
        math.log1p(answer.count("?") + answer.count("？")),
        float("<think>" in (raw_answer or "")),
        float(bool(FIRST_PERSON_AI.search(answer[:500]))),
        min(critical * 1000 / min(length, HEAD + TAIL), 20.0),
        math.log1p(critical) - math.log1p(official),
    ]


def featurize(prompts: list[str], answers: list[str]) -> tuple[sparse.csr_matrix, sparse.csr_matrix, np.ndarray]:
    """(char counts, word counts, dense features) for answers to prompts; reasoning is stripped."""
    cleaned = [p.strip_reasoning(a) for a in answers]
    clipped = [clip(a) for a in cleaned]
    chars = _char.transform(clipped).tocsr()
    words = _word.transform(clipped).tocsr()
    dense = np.array(
        [dense_features(q or "", raw, a, c) for q, raw, a, c in zip(prompts, answers, cleaned, clipped, strict=True)],
        dtype=np.float64,
    ).reshape(len(answers), len(DENSE_NAMES))
    # relevance: cosine between the prompt's and the answer's character n-gram vectors
    prompt_chars = _char.transform([clip(q or "") for q in prompts]).tocsr()
    num = np.asarray(prompt_chars.multiply(chars).sum(axis=1)).ravel()
    norms = np.sqrt(np.asarray(prompt_chars.multiply(prompt_chars).sum(axis=1)).ravel()) * np.sqrt(
        np.asarray(chars.multiply(chars).sum(axis=1)).ravel()
    )
    dense[:, DENSE_NAMES.index("relevance_cosine")] = np.divide(num, norms, out=np.zeros_like(num), where=norms > 0)
    return chars, words, dense


def tfidf(counts: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
    """Sublinear tf × idf, rows L2-normalised."""
    out = counts.astype(np.float32).copy()
    out.data = 1.0 + np.log(out.data)
    out = out @ sparse.diags(idf.astype(np.float32))
    norms = np.sqrt(np.asarray(out.multiply(out).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms) @ out


def fit_idf(counts: sparse.csr_matrix) -> np.ndarray:
    """Smoothed inverse document frequency per hashed feature."""
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    n = counts.shape[0]
    return (np.log((1 + n) / (1 + df)) + 1.0).astype(np.float32)
