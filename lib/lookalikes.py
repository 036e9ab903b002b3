"""Letters of another script that read as Latin ones in a name: `gpt-4о` written with a Cyrillic
о prints as `gpt-4o` but is another model, with its own rates and rating.

Such a name is not refused — Cyrillic and Greek names are names (`Мистраль-7B`, `ЯндексGPT`,
`α-CLIP`) — but an import warns about it. Which letters look alike is Unicode's confusables data
(UTS #39, `confusables.txt`) and each character's script, through the `confusable_homoglyphs`
package. A name is split into tokens (runs of letters and digits) and tokens into runs of one
script; a run of another script than Latin is named when every letter of it looks like an ASCII
letter or digit and either it shares its token with Latin letters or digits (`Сlaude`, `gpt-4о`,
`72В`), or it is a token of two letters or more in a name that also has Latin letters
(`ΑΙ-model`). `ЯндексGPT` (Я, д look like no ASCII letter), `Llama-3-中文`, `α-CLIP` and `μP`
are left alone.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from itertools import groupby

from confusable_homoglyphs import categories, confusables

_TOKENS = re.compile(r"[^\W_]+")  # runs of letters, marks and digits: "-", "." and spaces split them
_ASCII = re.compile("[A-Za-z0-9]")
LATIN = "LATIN"


@lru_cache(maxsize=65536)
def _ascii_twin(char: str) -> str | None:
    """The ASCII letter or digit `char` (of another script) looks like, or None; in its case where
    the data gives the prototype of several ("l" for I, l and 1: Greek Ι is "I")."""
    found = confusables.is_confusable(char, greedy=True, preferred_aliases=["latin"]) or []
    twins = [glyph["c"] for entry in found for glyph in entry["homoglyphs"] if _ASCII.fullmatch(glyph["c"])]
    if not twins:
        return None
    if char.isupper() and twins[0] == "l":
        return "I"
    return next((twin for twin in twins if twin.isupper() == char.isupper()), twins[0])


def _script(char: str) -> str:
    return "DIGIT" if char.isdigit() else categories.alias(char)


@lru_cache(maxsize=4096)
def latin_lookalikes(name: str) -> tuple[tuple[str, str], ...]:
    """(letter, the ASCII character it looks like) for each letter of `name` that reads as a Latin
    one (see the module's docstring), each once, in order; () when there is none."""
    tokens = _TOKENS.findall(name)
    has_latin = any(_script(char) == LATIN for token in tokens for char in token)
    found: list[tuple[str, str]] = []
    for token in tokens:
        runs = [list(run) for _, run in groupby(token, key=_script)]
        latin_beside = any(_script(run[0]) in (LATIN, "DIGIT") for run in runs)
        for run in runs:
            if _script(run[0]) in (LATIN, "DIGIT", "COMMON", "INHERITED"):
                continue
            twins = [(char, _ascii_twin(char)) for char in run]
            if not all(twin for _, twin in twins):
                continue  # a word of its own script: "Яндекс" in "ЯндексGPT"
            if latin_beside or (has_latin and len(run) >= 2):
                for pair in twins:
                    if pair not in found:
                        found.append(pair)
    return tuple(found)


def lookalike_warning(name: str, kept: str = "stored as written") -> str | None:
    """A sentence on the letters of `name` that read as Latin ones, or None: "'gpt-4о' has a
    letter of another script that looks like a Latin one: о (U+043E CYRILLIC SMALL LETTER O) like
    o; it is stored as written, a model of its own"."""
    found = latin_lookalikes(name)
    if not found:
        return None
    letters = ", ".join(f"{char} (U+{ord(char):04X} {unicodedata.name(char, '?')}) like {twin}" for char, twin in found)
    some = (
        "letters of another script that look like Latin ones"
        if len(found) > 1
        else ("a letter of another script that looks like a Latin one")
    )
    return f"{name!r} has {some}: {letters}; it is {kept}, a model of its own"


MAX_WARNINGS = 20  # per file: a file of such names gets the first ones, then how many more


def lookalike_warnings(first_seen: dict[str, str], name: str, kept: str = "stored as written") -> list[str]:
    """The warnings for a file's model names (`first_seen`: each name and where it first stands,
    "FILE:LINE"), each at its place — the first 20, then how many more ("`name`: N more …")."""
    said = [
        f"{where}: model {warning}"
        for model, where in first_seen.items()
        if model and (warning := lookalike_warning(model, kept))
    ]
    if len(said) > MAX_WARNINGS:
        said = said[:MAX_WARNINGS] + [f"{name}: {len(said) - MAX_WARNINGS:,} more model names like these"]
    return said
