"""Letters of another script that read as Latin ones in a name: `gpt-4о` written with a Cyrillic
о prints as `gpt-4o` but is another model, with its own rates and rating.

Such a name is not refused — Cyrillic and Greek names are names (`Мистраль-7B`, `μP`) — but an
import warns about it. Which letters look alike is Unicode's confusables data (UTS #39,
`confusables.txt`) and each character's script, through the `confusable_homoglyphs` package.
A letter is named when it is not Latin and looks like an ASCII letter or digit, and either shares
a word with Latin letters (`Сlaude`), or stands in a word all of whose letters look like ASCII
ones in a name that also has Latin letters (`gpt-4о`, `ΑΙ-model`). `Мистраль-7B` (и, ь look
like no ASCII letter), `Llama-3-中文` and `μP` are left alone.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from confusable_homoglyphs import categories, confusables

_WORDS = re.compile(r"[^\W\d_]+")  # runs of letters (and marks): digits, "-" and spaces split words
_ASCII = re.compile("[A-Za-z0-9]")
LATIN = "LATIN"


@lru_cache(maxsize=65536)
def _ascii_twin(char: str) -> str | None:
    """The ASCII letter or digit `char` (of another script) looks like, or None."""
    found = confusables.is_confusable(char, greedy=True, preferred_aliases=["latin"]) or []
    for entry in found:
        for glyph in entry["homoglyphs"]:
            if _ASCII.fullmatch(glyph["c"]):
                return glyph["c"]
    return None


@lru_cache(maxsize=4096)
def latin_lookalikes(name: str) -> tuple[tuple[str, str], ...]:
    """(letter, the ASCII character it looks like) for each letter of `name` that reads as a Latin
    one (see the module's docstring), in order; () when there is none."""
    words = _WORDS.findall(name)
    if not any(categories.alias(char) == LATIN for word in words for char in word):
        return ()
    found: list[tuple[str, str]] = []
    for word in words:
        foreign = [char for char in word if categories.alias(char) not in (LATIN, "COMMON", "INHERITED")]
        if not foreign:
            continue
        twins = [(char, _ascii_twin(char)) for char in foreign]
        if len(foreign) < len(word) or all(twin for _, twin in twins):  # shares a word with Latin, or all look Latin
            found += [(char, twin) for char, twin in twins if twin and (char, twin) not in found]
    return tuple(found)


def lookalike_warning(name: str) -> str | None:
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
    return f"{name!r} has {some}: {letters}; it is stored as written, a model of its own"
