"""Plain-text presentation helpers shared by the pages and the CLI (no Streamlit here)."""

from __future__ import annotations

import functools
import itertools
import re

from markdown_it import MarkdownIt

from db.vocab import Label, Winner
from lib.safety import page_text, terminal_text

LABEL_COLOURS = {
    Label.ANSWERED: "green",
    Label.REFUSED: "red",
    Label.DEFLECTED: "orange",
    Label.BLOCKED: "violet",
    Label.EMPTY: "gray",
    Label.PARTIAL: "blue",
}
WINNER_TEXT = {Winner.A: "A is better", Winner.B: "B is better", Winner.TIE: "Tie", Winner.BOTH_BAD: "Both are bad"}


CLI = ".venv/bin/python cli.py"  # how the README runs the command line: the form every hint shows


def cli_hint(arguments: str) -> str:
    """A command to run, as messages show it: '`.venv/bin/python cli.py ARGUMENTS`'."""
    return f"`{CLI} {arguments}`"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """A count with its noun: '1 row', '0 rows', '12 rows' (`nouns` for an irregular plural)."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def format_metrics(ttft_ms, latency_ms, output_tokens, tokens_counted=False, cost_usd=None) -> str:
    """One footer line: time to first token, total time, tokens, tokens/s and cost."""
    parts = []
    if ttft_ms is not None:
        parts.append(f"first token {ttft_ms / 1000:.2f} s")
    if latency_ms is not None:
        parts.append(f"total {latency_ms / 1000:.2f} s")
    if output_tokens:
        parts.append(f"{output_tokens} tokens{' (counted)' if tokens_counted else ''}")
        if latency_ms and ttft_ms is not None and latency_ms > ttft_ms:
            rate = output_tokens / ((latency_ms - ttft_ms) / 1000) if output_tokens > 1 else None
            if rate:
                parts.append(f"{rate:.1f} tok/s")
    if cost_usd is not None:
        parts.append(f"${cost_usd:.5f}")
    return " · ".join(parts)


# --- Markdown from models: shown, never fetched or run -------------------------------------------
# Answers, reasoning and prompts are rendered by Streamlit's Markdown, which fetches images, turns
# `$...$` into maths and follows links. `safe_markdown` rewrites the text so that it cannot:
# images become their alt text and their URL as code, links with other schemes than http(s) and
# mailto become text, and `$` is escaped unless maths is on. Code spans and blocks are left as
# they are. Text with none of these is returned as it is (one parse); a rewritten text is parsed
# again and, should anything unsafe survive (an odd construct the rewrite missed), the whole text
# is shown as a plain code block instead. Raw HTML needs nothing:
# st.markdown shows it as text.

SAFE_SCHEMES = ("http", "https", "mailto")
_SCHEME = re.compile(r"^\s*<?\s*([A-Za-z][A-Za-z0-9+.\-]*):")
_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")
_IMAGE = re.compile(r'!\[([^\[\]\n]*)\]\(\s*(<[^<>\n]*>|[^\s()<>]*(?:\([^\s()]*\)[^\s()<>]*)*)(?:\s+"[^"\n]*")?\s*\)')
_LINK = re.compile(r"\[[^\[\]\n]*\]\(\s*(<[^<>\n]*>|[^\s)]*)")
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}):[^\s<>]*>")
_DEFINITION = re.compile(r"^( {0,3})\[[^\]\n]+\]:\s*(\S+)")
# a GFM footnote definition: CommonMark (the checking parser) reads it as a link reference
# definition and never looks inside, while the browser's renderer shows it, images and maths too
_FOOTNOTE = re.compile(r"\[(?=\^[^\]\n]*\]:)")
MAX_REWRITE_CHARS = 20_000  # an unsafe text longer than this is shown as a plain block (the rewrite is not linear)


_SPECIAL = re.compile(r"[\\`$!\[<]")
_TICKS = re.compile(r"`+")


@functools.lru_cache(maxsize=16)
def _closer(run: int) -> re.Pattern:
    return re.compile(rf"(?<!`)`{{{run}}}(?!`)")


def _unsafe_url(url: str) -> bool:
    found = _SCHEME.match(url or "")
    return bool(found) and found.group(1).lower() not in SAFE_SCHEMES


def inline_code(text: object) -> str:
    """Untrusted text (a model name) as a Markdown code span: rendered literally wherever the
    Markdown is shown (no link, image, HTML or emphasis) and read as written in the plain file (no
    backslash escapes); control characters dropped, line breaks as spaces, and a fence longer
    than any run of backticks inside."""
    flat = " ".join(terminal_text(text).split())
    fence = "`" * (max((len(run) for run in _TICKS.findall(flat)), default=0) + 1)
    pad = " " if flat[:1] == "`" or flat[-1:] == "`" else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def escape_markdown(text: str) -> str:
    """Text whose Markdown syntax is shown literally (every ASCII punctuation character
    backslash-escaped); Streamlit still links bare URLs in it: data text uses `literal_markdown`."""
    return _PUNCT.sub(r"\\\1", text)


# --- One-line data text: shown as written, never as a link ---------------------------------------
# Escaping stops Markdown syntax, but Streamlit's renderer rewrites the parsed text afterwards,
# escapes already resolved: remark-gfm links bare `http://`, `https://`, `www.` and e-mail
# addresses (any case, anywhere in the text), and Streamlit turns `:material_x:`, `:streamlit:` and
# emoji shortcodes into icons and ` -> `, ` <= `... into arrows. Each rewrite is a regular
# expression run over one text node of the parsed tree, so the text is cut into separate nodes just
# before (or, for `@`, after) the character that would complete a match, by an empty `:small[]`:
# Streamlit's small-text directive, which renders as an empty <span>, so nothing is seen or copied
# (tests/test_e2e_browser.py checks this in Chromium). A text ending in `www` is cut at its end too:
# pages add a full stop after a message, and `www.` alone is a link (page text after it never
# starts with `{`, which would be read as the directive's attributes).
_CUT = ":small[]"
_CUT_AT = re.compile(
    r"(?i:(?<=www)(?=\.)|(?<=http)(?=:)|(?<=https)(?=:))"  # www. http:// https://
    r"|(?<=@)"  # an e-mail address: its local part and domain in two nodes
    r"|(?<=[<-])(?=-)|(?<=-)(?=>)|(?<=[<>~])(?==)"  # <- -> -- <= >= ~= (arrows, dashes, signs)
)
_SHORTCODE = re.compile(r":[\w+-]+(?=:)")  # :name: -- cut before its closing colon
_OPEN_END = re.compile(r"(?:www|https?)\Z", re.IGNORECASE)


def literal_markdown(text: str) -> str:
    """Text that Streamlit's Markdown shows exactly as written: no syntax, no autolinked URL or
    e-mail address, no icon, emoji or arrow (escaped, and cut where its renderer would rewrite it),
    and no bidirectional override (`page_text`)."""
    text = page_text(text)
    cuts = {m.start() for m in _CUT_AT.finditer(text)} | {m.end() for m in _SHORTCODE.finditer(text)}
    edges = [0, *sorted(c for c in cuts if 0 < c < len(text)), len(text)]
    shown = _CUT.join(escape_markdown(text[a:b]) for a, b in itertools.pairwise(edges))
    return shown + _CUT if _OPEN_END.search(text) else shown


MAX_NESTING = 20  # markdown-it's commonmark preset; deeper text is never judged safe


@functools.lru_cache(maxsize=1)
def _parser():
    md = MarkdownIt("commonmark", {"maxNesting": MAX_NESTING}).enable(["table", "strikethrough"])
    md.core.ruler.disable("text_join")  # keep escapes as their own tokens, so `\$` can be told from `$`
    md.validateLink = lambda url: True  # see every link, then judge its scheme ourselves
    return md


def _protected_lines(tokens) -> set[int]:
    lines: set[int] = set()
    for token in tokens:
        if token.type in ("fence", "code_block") and token.map:
            lines.update(range(*token.map))
    return lines


def _regions(tokens, count: int, protected: set[int]) -> list[tuple[int, int]]:
    """Line ranges rewritten as one piece: each inline block (a paragraph, a heading, a table row),
    and every other line that is not code on its own."""
    regions, covered = [], set(protected)
    for token in tokens:
        if token.type == "inline" and token.map:
            start, end = token.map
            if not covered.intersection(range(start, end)):
                regions.append((start, end))
                covered.update(range(start, end))
    regions += [(n, n + 1) for n in range(count) if n not in covered]
    return sorted(regions)


def _rewrite(text: str, maths: bool) -> str:
    """The text with images, unsafe links and (unless `maths`) dollars neutralised outside code."""
    out, i, n = [], 0, len(text)
    # longer than any backtick run in the text, so it can never close a span the text opened
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    while i < n:
        special = _SPECIAL.search(text, i)  # jump to the next character that can matter
        if special is None:
            out.append(text[i:])
            break
        out.append(text[i : special.start()])
        i = special.start()
        char = text[i]
        if char == "\\" and i + 1 < n and _PUNCT.match(text[i + 1]):
            out.append(text[i : i + 2])  # already escaped
            i += 2
        elif char == "`":
            run = _TICKS.match(text, i).end() - i
            close = _closer(run).search(text, i + run)
            end = close.end() if close else i + run
            out.append(text[i:end])  # a code span (or a literal run of backticks)
            i = end
        elif char == "$" and not maths:
            out.append("\\$")
            i += 1
        elif char == "!" and text.startswith("![", i):
            image = _IMAGE.match(text, i)
            if image:
                alt, url = image.group(1), image.group(2).strip("<>")
                label = f" *{escape_markdown(alt)}*" if alt.strip() else ""
                out.append(f"(image not loaded){label}: {fence} {url} {fence}")  # as code: no link
                i = image.end()
            else:
                out.append("\\!")  # an image in another form: at most a link, judged below
                i += 1
        elif char == "[" and (link := _LINK.match(text, i)) and _unsafe_url(link.group(1).strip("<>")):
            out.append("\\[")  # [text](javascript:...) shows as text
            i += 1
        elif char == "<" and (auto := _AUTOLINK.match(text, i)) and _unsafe_url(auto.group(0)[1:]):
            out.append("\\<")
            i += 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _deepest(tokens) -> int:
    """The deepest nesting level of these tokens and their inline children."""
    return max((max(t.level, _deepest(t.children or [])) for t in tokens), default=0)


def _is_safe(tokens, maths: bool) -> bool:
    # the parser stops reading structure at maxNesting levels while a browser's renderer goes on:
    # text that deep cannot be judged, so it is not safe (shown as a plain block)
    if _deepest(tokens) >= MAX_NESTING - 1:
        return False
    for token in tokens:
        if token.type == "image":
            return False
        if token.type == "link_open" and _unsafe_url(str(token.attrs.get("href", ""))):
            return False
        if token.type == "text" and not maths and "$" in token.content:
            return False
        if token.children and not _is_safe(token.children, maths):
            return False
    return True


def plain_block(text: str) -> str:
    """Text as a fenced code block: shown exactly as written, nothing rendered."""
    ticks = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (ticks + 1)
    return f"{fence}text\n{text}\n{fence}"


def safe_markdown(text: str | None, maths: bool = False) -> str:
    """Model or user text as Markdown that fetches nothing and runs nothing (see above), and shows its
    characters in the order they were written (`page_text`)."""
    text = page_text(text).replace("\r\n", "\n").replace("\r", "\n")
    if not text:
        return ""
    tokens = _parser().parse(text)
    if _FOOTNOTE.search(text):  # no footnotes: their definitions become text both parsers read alike
        protected = _protected_lines(tokens)
        lines = text.split("\n")
        text = "\n".join(line if n in protected else _FOOTNOTE.sub(r"\\[", line) for n, line in enumerate(lines))
        tokens = _parser().parse(text)
    if _is_safe(tokens, maths):
        return text  # most answers: one parse, nothing to change
    if len(text) > MAX_REWRITE_CHARS:
        return plain_block(text)
    lines = text.split("\n")
    protected = _protected_lines(tokens)
    for start, end in reversed(_regions(tokens, len(lines), protected)):  # from the end: counts may change
        block = _rewrite("\n".join(lines[start:end]), maths)
        definition = _DEFINITION.match(block)
        if definition and _unsafe_url(definition.group(2)):
            block = f"{definition.group(1)}\\{block[len(definition.group(1)) :]}"
        lines[start:end] = block.split("\n")
    result = "\n".join(lines)
    return result if _is_safe(_parser().parse(result), maths) else plain_block(text)
