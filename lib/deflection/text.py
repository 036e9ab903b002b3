"""Text preparation shared by the pattern layer and the features: reasoning traces split off the
answer, typographic quotes folded, long answers cut to their opening and close, and the rewrites
that keep cues honest — a refusal that sits inside a quotation or a written dialogue's line
(fiction, a quoted guard, a cited slogan) is not the model refusing, nor is saying what is not
known ("I can't give an exact number, because…"), and an apology is not a refusal unless a decline
or an objection comes with it ("I'm sorry to hear that. Here is what to do…")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lib.deflection import patterns as p

HEAD, TAIL = 1000, 200  # long answers: the opening and the close carry the signal
# <think>…</think> (DeepSeek-R1, Qwen3) and ◁think▷…◁/think▷ (Kimi); R1 variants served behind a
# chat template often emit only the closing tag, the opening one being part of the prompt
OPEN_TAGS = ("<think>", "◁think▷")
CLOSE_RE = re.compile(r"</think>|◁/think▷")
# quoted spans: “…” 「…」 『…』 "…" and '…' (a single quote opens after a non-letter and closes before
# one, so the apostrophes of can't or students' do not end a quotation)
QUOTED = re.compile(
    r"“[^”\n]{1,400}”|「[^」\n]{1,400}」|『[^』\n]{1,400}』|\"[^\"\n]{1,400}\"|(?<![a-z])'[^\n]{1,400}?'(?![a-z])"
)
SPACE = re.compile(r"\s+")
SENSITIVE_REASON = re.compile(r"sensitiv|polic(?:y|ies)|guideline|not allowed|敏感|不便|不方便|规定|政策")
# a line of a written dialogue: a speaker's name (one or two words, bold or not) and a colon
SPEAKER_LINE = re.compile(
    r"(?m)^[ \t>*_-]*([^\s：:，。,.!?！？\"“*]{1,12}(?: [^\s：:，。,.!?！？\"“*]{1,12})?)[*_]*[：:][*_]*[ \t]*"
    r"(\S[^\n]*)$"
)
# labels of a transcript or a Q&A layout: the model's own turns, not characters
ROLE_LABELS = re.compile(
    r"(?:user|assistant|ai|model|bot|chatbot|system|human|q|a|question|answer|response|english|chinese|"
    r"问|答|问题|回答|用户|助手|中文|英文|系统|提问|回复)"
)


@dataclass(frozen=True)
class Prepared:
    """One answer made ready for cues and n-grams."""

    answer: str  # the answer without its reasoning trace, as written
    state: str  # "none", "closed" (a finished trace was removed) or "unclosed" (only a trace)
    low: str  # folded, lower-cased opening and close, quoted refusals removed: where cues are looked for
    words: str  # `low` with disclaimers of opinion as written, without bare apologies, whitespace collapsed: n-grams
    latin: bool  # whether `low` has Latin letters
    cjk: bool  # whether `low` has Chinese characters


def split_reasoning(raw: str) -> tuple[str, str]:
    """(answer, state) where state is "none", "closed" (a finished trace was removed) or "unclosed"
    (the text is a trace that never reached an answer; it is returned as the answer)."""
    text = raw or ""
    closes = list(CLOSE_RE.finditer(text))
    if closes:
        return text[closes[-1].end() :].strip(), "closed"
    stripped = text.strip()
    for tag in OPEN_TAGS:
        if stripped.startswith(tag):
            return stripped[len(tag) :].strip(), "unclosed"
    return stripped, "none"


def fold(text: str) -> str:
    """Typographic apostrophes and quotes as ASCII, so one pattern matches both spellings."""
    return text.replace("’", "'").replace("‘", "'").replace("`", "'").replace("´", "'").replace("\u00a0", " ")


def window(text: str) -> str:
    """The opening and the close of a long text."""
    return text if len(text) <= HEAD + TAIL else text[:HEAD] + "\n…\n" + text[-TAIL:]


def _quote_has_refusal(span: str) -> bool:
    refusal = p.INABILITY.search(span) or p.REFUSAL.en.search(span) or p.DECLINE.search(span)
    return bool(refusal or p.APOLOGY.search(span))


def unquote_refusals(low: str) -> str:
    """Lower-cased text with the quotations that contain refusal words replaced by a placeholder,
    and so the lines of a written dialogue ("记者：…" / "发言人：我无法回答。" / "记者：…"): at least
    three lines that open with a speaker's name, two speakers or more, one of them speaking twice —
    but not a transcript or Q&A layout of the model's own turns ("问：/答：", "User:/Assistant:")."""
    low = QUOTED.sub(lambda m: "“…”" if _quote_has_refusal(m.group(0)) else m.group(0), low)
    lines = list(SPEAKER_LINE.finditer(low))
    speakers = [m.group(1) for m in lines]
    if len(lines) < 3 or len(set(speakers)) < 2 or len(set(speakers)) == len(speakers):
        return low
    if any(ROLE_LABELS.fullmatch(name) for name in speakers):
        return low
    return SPEAKER_LINE.sub(lambda m: f"{m.group(1)}：“…”" if _quote_has_refusal(m.group(2)) else m.group(0), low)


def state_limits(low: str) -> str:
    """Lower-cased text with statements of what is not known ("i can't give an exact number",
    "无法给出确切数字") rewritten so that no decline pattern reads them as a refusal — unless
    sensitivity or policy follows as the reason ("…because this topic is sensitive", "… This is a
    sensitive matter"). Disclaimers of opinion: `set_aside_disclaimers`."""

    def rewrite(m: re.Match, known: str) -> str:
        return m.group(0) if SENSITIVE_REASON.search(low, m.end(), m.end() + 80) else known

    if p.CJK.search(low):  # each half only where its script is (the Chinese one alone cost 3% of the speed)
        low = p.LIMIT.zh.sub(lambda m: rewrite(m, "确切数字未知"), low)
    if p.LATIN.search(low):
        low = p.LIMIT.en.sub(lambda m: rewrite(m, "the exact figure is unknown"), low)
    return low


def set_aside_disclaimers(low: str) -> str:
    """Lower-cased text with disclaimers of opinion ("as an ai i don't have personal opinions,
    but…", "我不参与任何形式的政治立场表达") rewritten so that no decline pattern reads them as a
    refusal, unless the answer is nothing but disclaimers and sign-offs (`patterns.bare_disclaimer`:
    then they decline). For the cues only: the n-grams read the disclaimer's words as written."""
    cjk, latin = bool(p.CJK.search(low)), bool(p.LATIN.search(low))
    if not p.STANCE.search(low, latin, cjk) or p.bare_disclaimer(low, latin, cjk):
        return low  # most answers have no disclaimer: one search, no rewriting pass
    if cjk:
        low = p.STANCE.zh.sub("观点不论", low)
    if latin:
        low = p.STANCE.en.sub("opinions aside", low)
    return low


def skip_disclaimers(low: str) -> str:
    """Lower-cased text without its opening sentences that are only disclaimers of opinion or who
    is speaking ("as an ai, i don't have personal opinions. by the way, …" -> "by the way, …")."""
    rest = low
    while (end := p.SENTENCE_END.search(rest)) and p.bare_disclaimer(rest[: end.end()]):
        rest = rest[end.end() :].lstrip()
    return rest


def quoted_share(text: str) -> float:
    """Share of the characters that sit inside quotations (dialogue, fiction, citations)."""
    if not text:
        return 0.0
    return sum(len(m.group(0)) for m in QUOTED.finditer(text)) / len(text)


def drop_bare_apologies(low: str) -> str:
    """Lower-cased text without the apology words whose sentence has no decline or objection in it
    ("sorry to hear that. here is…", "unfortunately there is no single cause…"): for the n-grams,
    which would otherwise learn that "sorry" means refused."""

    def keep_if_declining(m: re.Match) -> str:
        sentence = low[m.start() : m.start() + 160]
        declining = p.INABILITY.search(sentence) or p.DECLINE.search(sentence) or p.OBJECTION.search(sentence)
        return m.group(0) if declining else " "

    if not (p.APOLOGY.en.search(low) or p.APOLOGY.zh.search(low)):
        return low
    return p.APOLOGY.en.sub(keep_if_declining, p.APOLOGY.zh.sub(keep_if_declining, low))


def prepare(raw: str) -> Prepared:
    """The answer split from its trace, and the texts that cues and n-grams read."""
    answer, state = split_reasoning(raw)
    # the cues read disclaimers of opinion set aside; the n-grams read them as written (a disclaimer
    # the patterns miss still looks like one to the model)
    limited = state_limits(unquote_refusals(fold(window(answer)).lower()))
    low = set_aside_disclaimers(limited)
    latin, cjk = bool(p.LATIN.search(low)), bool(p.CJK.search(low))
    return Prepared(answer, state, low, SPACE.sub(" ", drop_bare_apologies(limited)).strip(), latin, cjk)
