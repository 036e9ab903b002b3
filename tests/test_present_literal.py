"""One-line data text (model names, topics, prompts in captions) goes through `lib.ui.inline_text`:
Streamlit must show it as written. Escaping stops Markdown syntax, but Streamlit's renderer rewrites
each parsed text node afterwards (escapes resolved): remark-gfm links bare URLs and e-mail
addresses, Streamlit draws icons, emoji and arrows. These tests run those rewrites, ported from
Streamlit 1.67's frontend bundle, over the text nodes the Markdown would give; the browser test
(tests/test_e2e_browser.py) checks the real renderer."""

import re

import pytest

from lib.present import escape_markdown, literal_markdown
from lib.ui import inline_text

# an empty text directive (`:name[]`) ends a text node and renders as an empty element
_EMPTY_DIRECTIVE = re.compile(r"(?<!\\):[a-z][a-z0-9-]*\[\]")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")

# the text-node rewrites of Streamlit 1.67's Markdown (StreamlitMarkdown.js, remark-emoji.js);
# the e-mail one without its look-behind (any preceding character): stricter than the renderer
REWRITES = {
    "url": re.compile(r"(https?://|www(?=\.))[-.\w]+", re.IGNORECASE),  # mdast-util-gfm-autolink-literal
    "e-mail": re.compile(r"[-.\w+]+@[-\w]+(?:\.[-\w]+)+"),
    "icon": re.compile(r":material_\w+:|:streamlit:"),
    "emoji": re.compile(r":\+1:|:-1:|:[\w-]+:"),
    "arrow": re.compile(r"(?:^|\s)(?:<->|->|<-|--|>=|<=|~=)(?:\s|$)"),
}


def text_nodes(markdown: str) -> list[str]:
    """The text nodes a Markdown line of escaped text and empty directives parses into."""
    return [_ESCAPE.sub(r"\1", piece) for piece in _EMPTY_DIRECTIVE.split(markdown)]


def rewritten(markdown: str) -> list[str]:
    """What the renderer would turn into a link, icon, emoji or arrow."""
    nodes = text_nodes(markdown)
    return [f"{kind}: {m.group()}" for node in nodes for kind, rx in REWRITES.items() for m in rx.finditer(node)]


LINKED = [
    "http://evil.example/login",
    "https://evil.example",
    "www.evil.example",
    "admin@evil.example",
    "HTTP://EVIL.EXAMPLE/LOGIN",
    "HtTpS://Evil.Example",
    "WWW.EVIL.EXAMPLE",
    "Www.Evil.Example",
    "ADMIN@EVIL.EXAMPLE",
    "qwen-2.5 (mirror http://evil.example/x?y=1) v2",
    "model-https://evil.example/a-b",
    "gpt-4o www.evil.example/path tuned",
    "ask ops+bot@mail.evil.example now",
    "https://www.evil.example and http://user@evil.example",
    "wwww.evil.example",
    "www.www.evil.example",
    "a@b@c.example",
]
REWRITTEN = [
    ":material_home: model",
    "x:streamlit:y",
    ":smile: :+1: :-1:",
    "a -> b",
    "x <= y",
    "p <-> q",
    "m -- n",
    "u ~= v >= w",
]


@pytest.mark.parametrize("text", LINKED + REWRITTEN)
def test_data_text_is_shown_as_written_never_as_a_link_icon_or_arrow(text):
    assert rewritten(escape_markdown(text)), "the renderer rewrites it once escaped only"  # the fault
    shown = inline_text(text)
    assert rewritten(shown) == [], shown
    assert "".join(text_nodes(shown)) == text  # what is seen and copied: no character added or lost


def test_text_without_a_url_address_shortcode_or_arrow_is_only_escaped():
    for text in ("Qwen2.5-72B-Instruct (fp8)", "deepseek/deepseek-r1", "*bold* [x](y) `code` $5", "台湾 问题", ""):
        assert inline_text(text) == escape_markdown(text)


def test_an_address_is_not_completed_by_the_page_text_before_it():
    # the Suites page writes f"v{version}": a version '@evil.example' made 'v@evil.example'
    assert rewritten("v" + escape_markdown("@evil.example"))
    assert rewritten("v" + inline_text("@evil.example")) == []


def test_a_text_ending_in_www_is_not_completed_by_the_full_stop_a_page_adds():
    # Export and Suites show a message + "."; 'www.' alone is linked (to http://www)
    assert rewritten(escape_markdown("no answers on www") + ".")
    for end in ("www", "WWW", "http", "HTTPS"):
        assert rewritten(inline_text(f"no answers on {end}") + ".") == [], end


def test_each_line_of_a_multi_line_message_is_cut_too():
    shown = inline_text("cannot reach http://evil.example\nwrite to admin@evil.example\n\nwww.evil.example")
    assert rewritten(shown) == [] and "".join(text_nodes(shown)).count("\n") == 3
    assert literal_markdown("") == "" and inline_text(None) == ""
