"""Pages show model text through one safe render path, and the blind arena names no model before
the vote (issue 12, items 8, 9 and 12), with Streamlit's AppTest and the protocol test server."""

import json

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.engine import session_scope
from db.models import Exchange, Response, Vote
from lib import ui
from lib.arena.battles import BlindBattle
from tests.conftest import ROOT

pytestmark = pytest.mark.app


def app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)


def endpoints_file(tmp_path, url: str, **entries: str) -> None:
    """endpoints.user.toml with one local endpoint per id on the protocol server; the value is
    the model name, optionally followed by TOML quirks after a '|'."""
    lines = []
    for eid, spec in entries.items():
        model, _, quirks = spec.partition("|")
        lines.append(
            f'[endpoints.{eid}]\nname = "Name of {eid}"\nbase_url = "{url}"\nmodel = "{model}"\nkind = "local"'
        )
        lines.append("max_retries = 0" + (f"\nquirks = {{ {quirks} }}" if quirks else "") + "\n")
    (tmp_path / "endpoints.user.toml").write_text("\n".join(lines))


def markdown_shown(at: AppTest) -> str:
    return "\n".join(str(m.value) for m in at.markdown)


def test_compare_renders_an_answer_without_remote_images_links_or_maths(protocol_server, tmp_path):
    endpoints_file(tmp_path, protocol_server.url, mk="markup")
    at = app().run()
    at.multiselect(key="compare_models").set_value(["mk"])
    at.chat_input(key="compare_prompt").set_value("show me").run()
    assert not at.exception
    shown = markdown_shown(at)
    assert "(image not loaded) *chart*: ` http://127.0.0.1:9/collect.png?d=secret `" in shown
    assert "![chart]" not in shown and "costs \\$5 and \\$10" in shown
    assert "\\[run](javascript:alert(1))" in shown
    # with maths turned on in Settings, dollars are left for KaTeX
    at.session_state[ui.MATHS] = True
    at.run()
    assert "costs $5 and $10" in markdown_shown(at)


def test_the_maths_toggle_lives_in_settings_and_is_off_by_default():
    at = app()
    at.switch_page("views/settings.py").run()
    assert not at.exception
    toggle = at.toggle(key="settings_maths")
    assert toggle.value is False
    toggle.set_value(True).run()
    assert at.session_state[ui.MATHS] is True


def _battle(at: AppTest, a: str, b: str) -> None:
    """Fix the battle's pair: a pool of exactly these two, chosen by the user, with the pair drawn from it."""
    at.session_state["arena_models"] = [a, b]
    at.session_state["arena_pool_chosen"] = True
    at.session_state["arena_drawn_from"] = sorted([a, b])
    at.session_state[ui.ARENA_BATTLE] = BlindBattle(conversation_id=None, slots={"a": a, "b": b})


def test_arena_hides_reasoning_and_speed_until_the_vote_and_flags_a_leak_in_reasoning(protocol_server, tmp_path):
    endpoints_file(tmp_path, protocol_server.url, think='reasoner|reasoning_field = "reasoning_content"', plain="usage")
    at = app()
    at.switch_page("views/arena.py")
    _battle(at, "think", "plain")
    at.run()
    at.chat_input(key="arena_prompt").set_value("I am Claude here").run()
    assert not at.exception
    before = " ".join(str(getattr(e, "value", "")) for e in at.main)
    assert (
        "Reasoning" not in [e.label for e in at.expander]
        and "tok/s" not in before
        and "(counted)" not in before
        and "first token" not in before
    )
    at.button(key="arena_vote_a").click().run()
    assert not at.exception
    assert "Reasoning" in [e.label for e in at.expander]  # shown once the names are out
    assert any("tok/s" in c.value for c in at.caption)
    with session_scope() as s:
        vote = s.scalars(select(Vote)).one()
    assert vote.identity_leaked  # "Claude here" in an answer, read after the vote


def test_a_leak_only_in_the_reasoning_flags_the_battle(protocol_server, tmp_path):
    from lib.arena.battles import battle_leaks

    class R:
        def __init__(self, text, reasoning):
            self.text, self.reasoning = text, reasoning

    class E:
        responses = [R("The capital is Paris.", "As an AI language model trained by OpenAI, I know this.")]

    class C:
        exchanges = [E()]

    assert battle_leaks(C()) == ["trained by OpenAI"]


def test_arena_offers_retry_or_skip_not_a_vote_when_a_side_failed(protocol_server, tmp_path):
    endpoints_file(tmp_path, protocol_server.url, good="echo", bad="error500")
    at = app()
    at.switch_page("views/arena.py")
    _battle(at, "good", "bad")
    at.run()
    at.chat_input(key="arena_prompt").set_value("hello both").run()
    assert not at.exception
    keys = {b.key for b in at.button}
    assert "arena_vote_a" not in keys and {"arena_retry_b", "arena_skip"} <= keys
    assert any("failed on this turn" in w.value for w in at.warning)
    at.button(key="arena_skip").click().run()
    assert not at.exception
    assert at.session_state[ui.ARENA_BATTLE].conversation_id is None  # a fresh battle
    with session_scope() as s:
        assert s.scalars(select(Vote)).first() is None


HOSTILE_NAME = "![n](http://127.0.0.1:9/name.png) $x^2$ [go](javascript:alert(1))"


def _fetches_or_maths(markdown: str) -> list[str]:
    """Images, javascript: links and unescaped dollars a renderer without limits would act on."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"maxNesting": 10_000}).enable(["table", "strikethrough"])
    parser.validateLink = lambda url: True
    parser.core.ruler.disable("text_join")
    found, stack = [], list(parser.parse(markdown))
    while stack:
        token = stack.pop()
        stack += token.children or []
        if token.type == "image" or (token.type == "link_open" and "javascript" in str(token.attrs.get("href"))):
            found.append(token.type)
        if token.type == "text" and "$" in token.content:
            found.append("maths")
    return found


def test_endpoint_and_imported_model_names_are_shown_literally(protocol_server, tmp_path):
    """Names come from an endpoints file and from imported files: every page shows them as text."""
    from lib.imports import import_file

    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.mk]\nname = "{HOSTILE_NAME}"\ndescription = "{HOSTILE_NAME}"\n'
        f'base_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\nmax_retries = 0\n'
    )
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"prompt": "p", "model": m, "response": "ok"}) + "\n" for m in (HOSTILE_NAME, "m2"))
    )
    import_file(rows)
    at = app().run()
    at.multiselect(key="compare_models").set_value(["mk"])
    at.chat_input(key="compare_prompt").set_value("hello").run()
    assert not at.exception
    pages = {"compare": markdown_shown(at) + "\n".join(str(c.value) for c in at.caption)}
    for page in ("views/history.py", "views/leaderboard.py", "views/settings.py", "views/suites.py"):
        at.switch_page(page).run()
        assert not at.exception, page
        pages[page] = markdown_shown(at) + "\n".join(str(c.value) for c in at.caption)
    assert "name\\.png" in pages["compare"]  # the name is there, as text
    for page, shown in pages.items():
        assert _fetches_or_maths(shown) == [], (page, shown[:2000])


def test_the_arena_reveal_shows_endpoint_names_literally(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        "".join(
            f'[endpoints.{eid}]\nname = "{eid} {HOSTILE_NAME}"\nbase_url = "{protocol_server.url}"\n'
            f'model = "echo"\nkind = "local"\nmax_retries = 0\n\n'
            for eid in ("one", "two")
        )
    )
    at = app()
    at.switch_page("views/arena.py")
    _battle(at, "one", "two")
    at.run()
    at.chat_input(key="arena_prompt").set_value("hello").run()
    at.button(key="arena_vote_a").click().run()
    assert not at.exception
    shown = markdown_shown(at)
    assert "name\\.png" in shown  # revealed, as text
    assert _fetches_or_maths(shown) == [], shown[:2000]


RLO, ISOLATE = "\u202e", "\u2067"  # right-to-left override; right-to-left isolate


def test_bidirectional_overrides_never_reorder_what_a_page_shows(protocol_server, tmp_path):
    """An answer or prompt holding a right-to-left override showed its characters reversed
    ("\\u202edesufer" read "refused"; Trojan Source): the page drops overrides and isolates and
    shows the characters in the order written; the stored text keeps them."""
    endpoints_file(tmp_path, protocol_server.url, e="echo")
    at = app().run()
    at.multiselect(key="compare_models").set_value(["e"])
    at.chat_input(key="compare_prompt").set_value(f"say {RLO}desufer and {ISOLATE}x\u2069 \u200fok").run()
    assert not at.exception
    shown = markdown_shown(at) + "\n".join(str(c.value) for c in at.caption)
    assert "desufer" in shown and RLO not in shown and ISOLATE not in shown
    assert "\u200f" in shown  # a right-to-left mark only sets a neutral's direction: kept
    with session_scope() as s:  # stored as written
        assert all(RLO in text for text in s.scalars(select(Response.text)))
        assert RLO in s.scalars(select(Exchange.prompt)).one()


def test_every_table_and_plain_text_on_a_page_takes_the_one_path():
    """Pages show tables and preformatted text only through lib.ui (table, plain_text), which drop
    bidirectional overrides: a direct st.dataframe or st.text of untrusted text would not."""
    views = sorted((ROOT / "views").glob("*.py")) + [ROOT / "app.py"]
    direct = [
        f"{path.name}:{n}"
        for path in views
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if any(call in line for call in ("st.dataframe(", "st.text(", "st.data_editor(", "st.table("))
    ]
    assert not direct, direct
    ui.table  # noqa: B018 - the path exists


def test_a_table_shows_its_text_cells_and_column_names_in_written_order(monkeypatch):
    shown = {}
    monkeypatch.setattr(ui.st, "dataframe", lambda frame, **options: shown.update(frame=frame, options=options))
    ui.table([{f"{RLO}prompt": f"{RLO}desufer", "n": 3, "none": None}], hide_index=True)
    frame = shown["frame"]
    assert list(frame.columns) == ["prompt", "n", "none"] and shown["options"] == {"hide_index": True}
    assert frame.iloc[0].tolist()[:2] == ["desufer", 3] and frame.iloc[0]["none"] is None
