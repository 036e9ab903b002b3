"""What an import file turns into before anything is stored: one typed record per answer or per
pairwise battle, with the line it came from, plus the small value rules every reader shares
(text made valid Unicode, languages, labels, winners) and the content hash that makes a second
import of the same rows add nothing."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace

from db.vocab import Label, Status, Winner

MAX_MODEL_CHARS = 100  # the width of response.endpoint_id
MAX_TEXT_CHARS = 1_000_000  # one answer; anything longer is almost certainly a broken export (a prompt
# has the limit of a prompt asked in the app: PARALLAX_MAX_PROMPT_CHARS, checked by the readers)

# what other tools call our labels (SpeechMap's judges say COMPLETE / EVASIVE / DENIAL)
LABEL_WORDS = {
    Label.ANSWERED: ("answered", "answer", "complete", "compliance", "complied", "complies", "full_compliance"),
    Label.REFUSED: ("refused", "refusal", "refuse", "denial", "denied", "full_refusal"),
    # `partial` (refuses, then complies) is reported as deflected, as the detector does
    Label.DEFLECTED: ("deflected", "deflection", "evasive", "evasion", "partial", "partial_refusal"),
    Label.BLOCKED: ("blocked",),
    Label.EMPTY: ("empty",),
}
LABEL_OF = {word: label for label, words in LABEL_WORDS.items() for word in words}
# FastChat / LMArena winners, and ours
WINNER_OF = {
    "model_a": Winner.A,
    "a": Winner.A,
    "model_b": Winner.B,
    "b": Winner.B,
    "tie": Winner.TIE,
    "tie (bothbad)": Winner.BOTH_BAD,
    "both_bad": Winner.BOTH_BAD,
    "bothbad": Winner.BOTH_BAD,
}
LANGUAGE_NAMES = {
    "english": "en",
    "英文": "en",
    "英语": "en",
    "chinese": "zh",
    "中文": "zh",
    "汉语": "zh",
    "mandarin": "zh",
    "russian": "ru",
    "german": "de",
    "french": "fr",
    "spanish": "es",
    "japanese": "ja",
    "korean": "ko",
    "portuguese": "pt",
    "italian": "it",
    "arabic": "ar",
}
LANGUAGE_CODE = re.compile(r"^([a-z]{2,3})(?:[-_][a-z0-9]{1,8})*$")


class ImportProblems(ValueError):
    """A file that cannot be imported; `problems` lists every problem with its file and line."""

    def __init__(self, problems: list[str]):
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        super().__init__(shown)
        self.problems = problems


def language_code(value: object) -> str | None:
    """A language name or code ('English', 'zh-CN', 'en') as a short code; None when unknown."""
    text = str(value).strip().lower()
    if text in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[text]
    match = LANGUAGE_CODE.match(text)
    return match.group(1) if match else None


def label_code(value: object) -> str | None:
    """An imported label in our words (answered/refused/deflected/blocked/empty); None if unknown."""
    return LABEL_OF.get(str(value).strip().lower().replace(" ", "_").replace("-", "_"))


def accepted_labels() -> str:
    """The label words an import accepts, for problem messages."""
    return ", ".join(sorted(LABEL_OF))


def digest(*parts: object) -> str:
    """A SHA-256 content hash of the parts (their JSON form), 64 hex characters."""
    body = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class AnswerRecord:
    """One imported answer: a model's response to a prompt, with whatever the file said about it."""

    line: str  # "file:line" (or "file: result N"), for problems
    prompt: str
    model: str
    response: str
    language: str | None = None  # None: detected from the prompt
    topic: str = ""
    kind: str = "general"
    reasoning: str | None = None
    system: str | None = None
    label: str | None = None
    label_origin: str = ""
    conversation: str | None = None
    turn: int | None = None
    pair: str | None = None  # the same request in other languages shares it
    source_id: str | None = None
    status: str = Status.OK
    error: str | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    fields: dict | None = None  # the row as the file gave it (clean), for classify to write back
    written: list[dict] = field(default_factory=list)  # names as imports stored them before: see `digests`

    def digests(self) -> list[str]:
        """`digest`, and those imports stored for this answer before names had their one spelling
        (model, conversation, id and pair as earlier releases spelt them: `written`, where they
        differ; the pair is not in a digest, but its suite prompt's key is made from it): a file
        imported then and again now adds nothing."""
        return [self.digest()] + [replace(self, **spelt).digest() for spelt in self.written]

    def digest(self) -> str:
        """The content that makes this answer the same answer again (labels and language apart)."""
        return digest(
            "answer",
            self.conversation,
            self.turn,
            self.system,
            self.prompt,
            self.model,
            self.response,
            self.reasoning,
            self.status,
            self.source_id,
        )


@dataclass
class BattleTurn:
    """One user turn of a pairwise battle and the two answers to it."""

    prompt: str
    answer_a: str
    answer_b: str


@dataclass
class BattleRecord:
    """One pairwise battle (FastChat / LMArena): two models, their answers turn by turn, a vote."""

    line: str
    model_a: str
    model_b: str
    winner: str  # one of Winner.ALL
    turns: list[BattleTurn] = field(default_factory=list)
    system: str | None = None
    language: str | None = None
    blind: bool = True  # LMArena's anonymous battles; `anony: false` for named ones
    vote_turn: int | None = None  # which turn the vote is about (MT-Bench judges one turn); None = last
    source_id: str | None = None
    meta: dict = field(default_factory=dict)
    written: list[dict] = field(default_factory=list)  # names as imports stored them before: see `digests`

    def digests(self) -> list[str]:
        """`digest`, and those imports stored for this battle before model names had their one
        spelling (`written`, where they differ)."""
        return [self.digest()] + [replace(self, **spelt).digest() for spelt in self.written]

    def digest(self) -> str:
        """The content that makes this the same battle again."""
        turns = [(t.prompt, t.answer_a, t.answer_b) for t in self.turns]
        return digest(
            "battle", self.model_a, self.model_b, self.winner, self.system, turns, self.vote_turn, self.source_id
        )


@dataclass
class Parsed:
    """What a reader found in a file: its format, the records, and every problem and warning."""

    format: str  # rows | promptfoo | battles
    answers: list[AnswerRecord] = field(default_factory=list)
    battles: list[BattleRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Records read (answers or battles)."""
        return len(self.answers) + len(self.battles)
