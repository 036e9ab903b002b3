"""Blind battles: draw two different endpoints, keep their names out of the page until the vote,
and flag battles where a model gives itself away ("I am Qwen", "developed by OpenAI").

A `BlindBattle` is one battle's hidden session state (which endpoint answers as A and as B);
`vote_blind` is the one vote action: scan every answer and its reasoning for identity leaks,
store the vote on the last turn both sides answered (never when a side failed), and reveal the
battle."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from db import conversations, votes
from db.engine import session_scope
from db.vocab import Status, Winner

MODEL_NAMES = (
    r"ChatGPT|GPT-?[345](?:\.\d)?(?:o|-turbo)?|o1|o3|Claude|Gemini|Bard|LLaMA|Llama|Qwen|QwQ|Tongyi|"
    r"DeepSeek|Kimi|Moonshot|Mistral|Mixtral|Grok|GLM|ChatGLM|Yi|Ernie|ERNIE|SmolLM2?|Phi|Gemma|Command R"
)
MAKERS = (
    r"OpenAI|Anthropic|Google(?: DeepMind)?|DeepMind|Meta(?: AI)?|Alibaba(?: Cloud)?|DeepSeek|"
    r"Moonshot(?: AI)?|Mistral AI|xAI|Zhipu(?: AI)?|Baidu|01\.AI|Hugging ?Face|Microsoft|Cohere"
)
ZH_NAMES = r"通义千问|千问|文心一言|智谱清言|豆包|Kimi|DeepSeek|ChatGPT|Qwen|深度求索"
ZH_MAKERS = r"阿里巴巴|阿里云|百度|智谱|月之暗面|深度求索|字节跳动|OpenAI|谷歌|Anthropic|Meta"
# a name right after these is part of something else: "Claude Monet", "Gemini's orbit"
NOT_SELF = r"(?!['’]s\b|(?-i:\s+[A-Z][a-z]))"
LEAK_PATTERNS = [
    re.compile(rf"\b(?:I am|I'm|my name is|this is|call me)\s+(?:an? |the )?(?:{MODEL_NAMES})\b{NOT_SELF}", re.I),
    # "developed by Google", "As an AI language model trained by OpenAI": a maker named as the
    # one who built something is read as the model speaking of itself
    re.compile(rf"\b(?:developed|created|trained|made|built|designed|produced)\s+by\s+(?:{MAKERS})\b", re.I),
    # "As Claude, I...", "As ChatGPT I..." (not "such as Claude Monet" or "as Gemini's orbit")
    re.compile(
        rf"(?<!such )\bas\s+(?:an? )?(?:{MODEL_NAMES})\b{NOT_SELF}"
        r"(?=\s*,|\s+I\b|\s+(?:an? )?(?:AI|language model|assistant))",
        re.I,
    ),
    # "Claude here", "Hi! Qwen here." at the start of the answer or of a sentence
    re.compile(rf"(?:^|[.!?,:;]\s*|\n)\s*(?:{MODEL_NAMES})\s+here\b", re.I),
    re.compile(rf"我是(?:一个)?(?:由)?.{{0,12}}(?:{ZH_NAMES})"),
    re.compile(rf"由(?:{ZH_MAKERS}).{{0,10}}(?:开发|训练|研发|打造|推出)"),
]


@dataclass
class BlindBattle:
    """One blind battle's hidden state: which endpoint answers as A and which as B."""

    conversation_id: int | None
    slots: dict[str, str]  # {"a": endpoint id, "b": endpoint id}
    voted: str | None = None
    leaks: list[str] = field(default_factory=list)


def draw_pair(enabled: list[str], rng: random.Random | None = None) -> dict[str, str]:
    """Two different endpoints at random, as {"a": id, "b": id}."""
    pool = list(dict.fromkeys(enabled))
    if len(pool) < 2:
        raise ValueError("enable at least two models for the arena")
    a, b = (rng or random).sample(pool, 2)
    return {"a": a, "b": b}


def identity_leak(text: str) -> str | None:
    """The phrase by which an answer names itself or its maker, or None."""
    for pattern in LEAK_PATTERNS:
        match = pattern.search(text or "")
        if match:
            return match.group(0).lstrip(".!?,:;\n\t ")
    return None


class BattleError(ValueError):
    """A vote that cannot be taken yet (no turn answered by both sides, or already voted)."""


def last_pair(conv) -> tuple | None:
    """(exchange, answer A, answer B) of the last turn both sides answered (latest answers), or None."""
    pair = None
    for exchange in conv.exchanges:
        latest = {r.slot: r for r in exchange.responses}
        if "a" in latest and "b" in latest:
            pair = (exchange, latest["a"], latest["b"])
    return pair


def battle_leaks(conv) -> list[str]:
    """Every phrase by which an answer or its reasoning names its model or maker."""
    texts = [t for e in conv.exchanges for r in e.responses for t in (r.text, r.reasoning) if t]
    return [leak for text in texts if (leak := identity_leak(text))]


def vote_blind(battle: BlindBattle, winner: str, voter: str = "local") -> BlindBattle:
    """Vote on a blind battle: store the vote on its last turn answered by both A and B, flag it
    identity-leaked when any answer or reasoning names its model or maker, and mark the battle
    revealed.

    Returns the battle with `voted` and `leaks` set; BattleError when there is nothing to vote on
    or when either side of that turn failed (retry it or skip the battle instead)."""
    if winner not in Winner.ALL:
        raise BattleError(f"the winner must be one of {', '.join(Winner.ALL)}, not {winner!r}")
    if battle.voted is not None:
        raise BattleError("this battle has already been voted on")
    if battle.conversation_id is None:
        raise BattleError("ask both models something first")
    with session_scope() as s:
        conv = conversations.load_conversation(s, battle.conversation_id)
        pair = last_pair(conv)
        if pair is None:
            raise BattleError("no turn has answers from both models yet")
        exchange, a, b = pair
        failed = [side for side, r in (("A", a), ("B", b)) if r.status != Status.OK]
        if failed:
            raise BattleError(f"model {' and '.join(failed)} failed on this turn: retry it or skip this battle")
        leaks = battle_leaks(conv)
        votes.add_vote(s, exchange.id, a.id, b.id, winner, blind=True, identity_leaked=bool(leaks), voter=voter)
        conversations.reveal_battle(s, battle.conversation_id)
    battle.voted, battle.leaks = winner, leaks
    return battle
