"""Streamlit AppTest for the chat pages: compare, history, settings."""

import tomllib

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from db import conversations
from db.engine import session_scope
from db.models import Label, Response, Vote
from lib.providers.endpoints import Endpoint
from lib.providers.local_server import free_port
from lib.providers.stream import Outcome
from tests.conftest import ROOT, as_read

pytestmark = pytest.mark.app


def app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)


def answers_on_page(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def page_text(at: AppTest) -> str:
    """Everything the page shows as text: messages, captions, tables and widget values."""
    parts = []
    for kind in ("markdown", "caption", "text", "code", "success", "info", "warning", "error", "title", "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [df.value.to_csv() for df in at.dataframe]
    parts += [str(w.value) for w in [*at.text_input, *at.selectbox, *at.text_area]]
    return "\n".join(parts)


def test_compare_streams_two_embedded_models_into_two_filled_columns(embedded):
    at = app().run()
    assert not at.exception
    at.multiselect(key="compare_models").set_value(["smollm2", "smollm2-guarded"])
    at.chat_input(key="compare_prompt").set_value("Name three colours.").run()
    assert not at.exception
    with session_scope() as s:
        rows = s.scalars(select(Response).order_by(Response.slot)).all()
    assert [r.slot for r in rows] == ["smollm2", "smollm2-guarded"]
    assert all(r.status == "ok" and r.text.strip() for r in rows)
    texts = answers_on_page(at)
    for row in rows:
        assert row.text.strip()[:20] in "\n".join(texts)
    with session_scope() as s:  # rendering a label badge never stores a human label by itself
        sources = set(s.scalars(select(Label.source)))
    assert sources and "human" not in sources
    # a named vote between the two columns lands in the database
    at.button(key=f"vote_{rows[0].exchange_id}_a").click().run()
    with session_scope() as s:
        vote = s.scalars(select(Vote)).one()
    assert vote.winner == "a" and not vote.blind
    assert any("Your vote" in m.value for m in at.success)


def test_failing_endpoint_shows_its_error_in_its_own_column(embedded, tmp_path, monkeypatch):
    port = free_port()
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.broken]\nname = "Broken server"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
        'model = "x"\nkind = "local"\nmax_retries = 0\n'
    )
    at = app().run()
    at.multiselect(key="compare_models").set_value(["smollm2", "broken"])
    at.chat_input(key="compare_prompt").set_value("Say hi.").run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(f"127.0.0.1:{port}" in e for e in errors)
    with session_scope() as s:
        statuses = dict(s.execute(select(Response.slot, Response.status)).all())
    assert statuses == {"smollm2": "ok", "broken": "error"}


def test_empty_selection_and_oversized_prompt_send_nothing(monkeypatch):
    monkeypatch.setenv("PARALLAX_MAX_PROMPT_CHARS", "50")
    at = app().run()
    at.chat_input(key="compare_prompt").set_value("x" * 51).run()
    assert any("limit is 50" in e.value for e in at.error)
    at.multiselect(key="compare_models").set_value([])
    at.chat_input(key="compare_prompt").set_value("hello").run()
    assert any("no model selected" in e.value.lower() for e in at.error)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Response)) == 0


def _store_conversation(prompt: str, answer: str, endpoint_id: str = "gone-model") -> int:
    endpoint = Endpoint(id=endpoint_id, name="A removed model", base_url="http://h/v1", model="m")
    with session_scope() as s:
        conv = conversations.create_conversation(s)
        ex = conversations.add_exchange(s, conv.id, prompt)
        conversations.add_response(s, ex.id, endpoint_id, endpoint, Outcome(text=answer, status="ok", done=True))
        return conv.id


def test_a_suite_runs_item_opened_in_compare_cannot_be_retried_or_continued():
    """Another answer or turn in a suite run's item would count twice in the run's rates: opened
    in Compare it reads as an import does (no Retry, no chat box), with the reason."""
    from db.vocab import Mode
    from lib import ui

    endpoint = Endpoint(id="smollm2", name="SmolLM2", base_url="embedded", model="m")
    with session_scope() as s:
        conv = conversations.create_conversation(s, mode=Mode.SUITE)
        ex = conversations.add_exchange(s, conv.id, "What happened in 1989?")
        conversations.add_response(s, ex.id, "smollm2", endpoint, Outcome(text="", status="error", error_message="x"))
        conversation_id = conv.id
    at = app()
    at.session_state[ui.CONVERSATION] = conversation_id
    at.run()
    assert not at.exception, at.exception
    assert not [b for b in at.button if b.key and b.key.startswith("retry_")]
    assert at.chat_input(key="compare_prompt").disabled
    # a failed answer shows its badge, but takes no label or rating of a person
    assert not [w for w in at.get("segmented_control") if "_label_" in (w.key or "")]
    assert not [w for w in at.get("feedback")]
    assert any("an item of a suite run" in as_read(i.value) for i in at.info), [i.value for i in at.info]


def test_a_voted_turn_offers_no_retry():
    """A vote stays with the answers it was given: a retry after it showed other answers beside it."""
    from db import votes
    from lib import ui

    made = []
    with session_scope() as s:
        conv = conversations.create_conversation(s)
        ex = conversations.add_exchange(s, conv.id, "Capital of France?")
        for slot in ("smollm2", "smollm2-guarded"):
            endpoint = Endpoint(id=slot, name=slot, base_url="embedded", model="m")
            made.append(conversations.add_response(s, ex.id, slot, endpoint, Outcome(text="Paris.", status="ok")).id)
        conversation_id, exchange_id = conv.id, ex.id
    at = app()
    at.session_state[ui.CONVERSATION] = conversation_id
    at.run()
    assert len([b for b in at.button if b.key and b.key.startswith("retry_")]) == 2
    assert any("The left answer is A, the right one B." in c.value for c in at.caption)  # before the vote too
    assert len([w for w in at.get("segmented_control") if "_label_" in (w.key or "")]) == 2  # finished: correctable
    assert len(at.get("feedback")) == 2
    with session_scope() as s:
        votes.add_vote(s, exchange_id, made[0], made[1], "a", blind=False, voter="local")
    at.run()
    assert not at.exception, at.exception
    assert not [b for b in at.button if b.key and b.key.startswith("retry_")]
    with session_scope() as s:  # a later turn: the earlier turn's vote still shows
        later = conversations.add_exchange(s, conversation_id, "And of Spain?")
        endpoint = Endpoint(id="smollm2", name="smollm2", base_url="embedded", model="m")
        conversations.add_response(s, later.id, "smollm2", endpoint, Outcome(text="Madrid.", status="ok"))
    at.run()
    assert [as_read(x.value) for x in at.success] == ["Your vote: A is better (left is A, right is B)"]


def test_opening_a_conversation_with_a_broken_endpoints_file_keeps_the_history_whole(tmp_path):
    """The endpoints file's problems were shown inside the opened row, and the rest of the list
    and its paging vanished; Compare, which needs the endpoints, explains them."""
    _store_conversation("First question", "First answer.")
    _store_conversation("Second question", "Second answer.")
    (tmp_path / "endpoints.user.toml").write_text(
        '[endpoints.bad]\nkind = "nope"\nbase_url = "http://h"\nmodel = "m"\n', encoding="utf-8"
    )
    at = app()
    at.switch_page("views/history.py").run()
    at.button(key="open_2").click().run()
    assert not at.exception, at.exception
    errors = [as_read(e.value) for e in at.error]
    assert len(errors) == 1 and "The endpoints file" in errors[0] and "Fix the file" in errors[0], errors


def test_history_search_finds_a_stored_conversation_and_opens_it():
    _store_conversation("Tell me about the Great Leap Forward", "It was a campaign from 1958.")
    _store_conversation("Best dumpling recipe", "Use a thin wrapper.")
    at = app()
    at.switch_page("views/history.py").run()
    assert not at.exception
    at.text_input(key="history_query").input("great leap").run()
    titles = [m.value for m in at.markdown]
    assert any("Great Leap Forward" in t for t in titles)
    assert not any("dumpling" in t for t in titles)
    open_button = next(b for b in at.button if b.key and b.key.startswith("open_"))
    open_button.click().run()
    assert not at.exception
    # a model removed from the config still shows its stored answer
    assert any("It was a campaign from 1958." in m.value for m in at.markdown)
    assert any("no longer configured" in m.value for m in at.markdown)


def test_settings_add_and_edit_round_trip_through_the_user_file(tmp_path):
    at = app()
    at.switch_page("views/settings.py").run()
    assert not at.exception
    form = "settings_form_(new endpoint)"
    at.text_input(key=f"{form}_id").input("my-local")
    at.text_input(key=f"{form}_name").input("My local model")
    at.text_input(key=f"{form}_base_url").input("http://127.0.0.1:9999/v1")
    at.text_input(key=f"{form}_model").input("qwen2.5")
    at.text_input(key=f"{form}_key_env").input("MY_LOCAL_KEY")
    at.button(key="settings_save").click().run()
    at.button(key="settings_confirm_key").click().run()  # a key going to a new host is confirmed
    assert not at.exception, at.exception
    saved = tomllib.loads((tmp_path / "endpoints.user.toml").read_text())
    assert saved["endpoints"]["my-local"]["model"] == "qwen2.5"
    assert saved["endpoints"]["my-local"]["kind"] == "local"  # the new form's URL is a local one
    assert saved["endpoints"]["my-local"]["key_env"] == "MY_LOCAL_KEY"
    # said at the top of the page and in a toast (the form's bottom is where the user is), as written
    assert any(as_read(m.value).startswith("Saved 'my-local' to ") for m in at.success), [m.value for m in at.success]
    assert any("Saved 'my-local'" in as_read(t.value) for t in at.toast)
    # edit it: the form starts from the saved entry
    at.selectbox(key="settings_edit_choice").set_value("my-local").run()
    assert at.text_input(key="settings_form_my-local_name").value == "My local model"
    at.text_input(key="settings_form_my-local_model").input("qwen3")
    at.button(key="settings_save").click().run()
    assert not at.exception, at.exception
    saved = tomllib.loads((tmp_path / "endpoints.user.toml").read_text())
    assert saved["endpoints"]["my-local"]["model"] == "qwen3"
    assert saved["endpoints"]["my-local"]["name"] == "My local model"


def test_settings_form_errors_name_the_forms_fields(tmp_path):
    """A problem names the field by its label on the form beside the file's name for it, and a
    kind that disagrees with an "embedded" base URL is refused, not saved as written."""
    at = app()
    at.switch_page("views/settings.py").run()
    form = "settings_form_(new endpoint)"
    at.text_input(key=f"{form}_id").input("model")  # an id that is a field's name stays as it is
    at.text_input(key=f"{form}_base_url").input("http://127.0.0.1:9999/v1")
    at.button(key="settings_save").click().run()
    assert any("the endpoint 'model' is missing 'Model name' (model)" in e.value.replace("\\", "") for e in at.error), [
        e.value for e in at.error
    ]
    at.text_input(key=f"{form}_model").input("m")
    at.text_input(key=f"{form}_key_env").input("not a variable")
    at.button(key="settings_save").click().run()
    assert any("'Key variable name' (key_env) must name" in e.value.replace("\\", "") for e in at.error), [
        e.value for e in at.error
    ]
    at.text_input(key=f"{form}_id").input("smollm2")  # a new endpoint cannot take an existing id
    at.button(key="settings_save").click().run()
    assert any("the id 'smollm2' is taken by the endpoint" in e.value.replace("\\", "") for e in at.error)
    (tmp_path / "endpoints.user.toml").write_text("[endpoints.gpt-4o]\nenabled = false\n")  # a disabled id too
    at.text_input(key=f"{form}_id").input("gpt-4o")
    at.button(key="settings_save").click().run()
    assert any("the id 'gpt-4o' is taken by a disabled endpoint" in e.value.replace("\\", "") for e in at.error)
    (tmp_path / "endpoints.user.toml").unlink()
    at.text_input(key=f"{form}_id").input("model")
    at.text_input(key=f"{form}_key_env").input("")
    at.text_input(key=f"{form}_base_url").input("embedded")
    at.button(key="settings_save").click().run()
    assert any(
        "has kind 'local' with 'Base URL' (base_url) \"embedded\"" in e.value.replace("\\", "") for e in at.error
    ), [e.value for e in at.error]
    assert not (tmp_path / "endpoints.user.toml").exists()


def test_settings_lists_every_problem_of_the_form_at_once(tmp_path):
    """The form named only its first problem: each fix showed the next."""
    at = app()
    at.switch_page("views/settings.py").run()
    form = "settings_form_(new endpoint)"
    at.text_input(key=f"{form}_id").input("bad id!")  # an invalid id is one problem among the others
    at.text_input(key=f"{form}_base_url").input("ftp://127.0.0.1/v1")
    at.text_input(key=f"{form}_key_env").input("not a variable")
    at.button(key="settings_save").click().run()
    assert not at.exception, at.exception
    (shown,) = [e.value.replace("\\", "") for e in at.error]
    lines = shown.split("\n")
    assert lines[0] == "Not saved:" and len(lines) == 5, shown
    assert "has an invalid id" in lines[1] and "is missing 'Model name' (model)" in lines[2]
    assert "'Base URL' (base_url) must be" in lines[3] and "'Key variable name' (key_env) must name" in lines[4]
    assert all(line.startswith("- the endpoint 'bad id!'") for line in lines[1:])
    assert not (tmp_path / "endpoints.user.toml").exists()


def test_settings_never_shows_a_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    at = app()
    at.switch_page("views/settings.py").run()
    assert not at.exception, at.exception
    shown = page_text(at)
    assert "OPENAI_API_KEY" in shown  # the variable's name is shown…
    assert "sk-very-secret-value" not in shown  # …never its value


def test_retry_re_asks_one_column_and_keeps_the_other(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.first]\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n\n'
        f'[endpoints.second]\nbase_url = "{protocol_server.url}"\nmodel = "usage"\nkind = "local"\n'
    )
    at = app().run()
    at.multiselect(key="compare_models").set_value(["first", "second"])
    at.chat_input(key="compare_prompt").set_value("retry me").run()
    exchange_id = next(b.key for b in at.button if b.key and b.key.startswith("retry_")).split("_")[1]
    at.button(key=f"retry_{exchange_id}_second").click().run()
    assert not at.exception
    with session_scope() as s:
        slots = sorted(s.scalars(select(Response.slot)))
    assert slots == ["first", "second", "second"]


def test_settings_test_connection_reports_the_outcome(embedded):
    at = app()
    at.switch_page("views/settings.py").run()
    at.selectbox(key="settings_test_id").set_value("smollm2")
    at.button(key="settings_test").click().run()
    assert not at.exception
    assert any("Connected: SmolLM2-135M (embedded)" in as_read(s.value) for s in at.success)


@pytest.mark.parametrize("page", ["views/compare.py", "views/settings.py", "views/analysis.py"])
def test_a_broken_endpoints_file_is_explained_once_per_page(tmp_path, page):
    """The sidebar points to the page that says why; the reason is not shown twice (it was: in
    the sidebar and again above a page that needs the endpoints)."""
    (tmp_path / "endpoints.user.toml").write_text(
        '[endpoints.bad]\nkind = "nope"\nbase_url = "http://h"\nmodel = "m"\n', encoding="utf-8"
    )
    at = app()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    errors = [as_read(e.value) for e in at.error]
    assert sum("it must be 'hosted'" in e for e in errors) == (0 if page.endswith("analysis.py") else 1), errors
    pointer = [e.value for e in at.sidebar.error if "the Settings page says why" in e.value]
    assert len(pointer) == (1 if page.endswith("analysis.py") else 0), errors  # not beside the reason itself
    assert all("Fix the file and reload the page" in e for e in errors if "it must be 'hosted'" in e), errors


def test_a_page_lists_every_broken_endpoint_entry(tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        '[endpoints.bad]\nkind = "nope"\nbase_url = "http://h"\nmodel = "m"\n[endpoints.worse]\ntimeout = -1\n',
        encoding="utf-8",
    )
    at = app()
    at.switch_page("views/compare.py").run()
    assert not at.exception, at.exception
    errors = [as_read(e.value) for e in at.error]
    assert len(errors) == 1 and "The endpoints files cannot be read (4 problems)" in errors[0], errors
    assert "line 2: [endpoints.bad] has kind 'nope'" in errors[0], errors
    assert "line 5: [endpoints.worse] is missing 'base_url'" in errors[0], errors  # every problem of an entry
    assert "line 5: [endpoints.worse] is missing 'model'" in errors[0], errors
    assert "line 6: [endpoints.worse] timeout must be more than 0" in errors[0], errors
