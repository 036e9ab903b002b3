"""The pages across a session: sidebar settings survive page switches (checked on the request the
next turn sends), a continued conversation keeps its system prompt, the Arena's pool follows what
is ready now and draws a new pair when it changes, and empty pages offer the example study."""

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.engine import session_scope
from db.models import Exchange
from lib.imports import import_file
from lib.providers.local_server import free_port
from tests.conftest import ROOT, as_read

pytestmark = pytest.mark.app


def app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)


def two_echo_endpoints(tmp_path, url: str, extra: str = "") -> None:
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.first]\nname = "First echo"\nbase_url = "{url}"\nmodel = "echo"\nkind = "local"\n\n'
        f'[endpoints.second]\nname = "Second echo"\nbase_url = "{url}"\nmodel = "usage"\nkind = "local"\n' + extra
    )


def request_for(server, prompt: str) -> dict:
    """The last request the protocol server received whose last user message is `prompt`."""
    found = [r for r in server.requests if r["messages"][-1] == {"role": "user", "content": prompt}]
    assert found, f"no request asked {prompt!r}"
    return found[-1]


def test_compare_settings_survive_a_visit_to_another_page(protocol_server, tmp_path):
    two_echo_endpoints(tmp_path, protocol_server.url)
    at = app().run()
    at.multiselect(key="compare_models").set_value(["second"])
    at.text_area(key="compare_system").input("Answer in one word.")
    at.number_input(key="compare_temperature").set_value(0.2)
    at.number_input(key="compare_max_tokens").set_value(100)
    at.run()
    for page in ("views/history.py", "views/analysis.py", "views/arena.py"):
        at.switch_page(page).run()
        assert not at.exception, at.exception
    at.switch_page("views/compare.py").run()
    assert at.multiselect(key="compare_models").value == ["second"]
    at.chat_input(key="compare_prompt").set_value("settings kept after a page switch?").run()
    assert not at.exception, at.exception
    request = request_for(protocol_server, "settings kept after a page switch?")
    assert request["model"] == "usage"
    assert request["messages"][0] == {"role": "system", "content": "Answer in one word."}
    assert request["temperature"] == pytest.approx(0.2)
    assert request["max_tokens"] == 100


def test_compare_leaves_each_models_own_budget_and_temperature_until_one_is_typed(protocol_server, tmp_path):
    """An endpoint's `max_tokens` (a reasoning model's large budget, say) and `temperature` are what
    Compare sends by default, as `cli.py ask` does; a model with none gets neither."""
    two_echo_endpoints(tmp_path, protocol_server.url, extra="params = { max_tokens = 3000, temperature = 0.1 }\n")
    at = app().run()
    at.multiselect(key="compare_models").set_value(["first", "second"]).run()
    assert at.number_input(key="compare_max_tokens").value is None
    assert at.number_input(key="compare_temperature").value is None
    at.chat_input(key="compare_prompt").set_value("whose budget?").run()
    assert not at.exception, at.exception
    asked = {r["model"]: r for r in protocol_server.requests if r["messages"][-1]["content"] == "whose budget?"}
    assert asked["usage"]["max_tokens"] == 3000 and asked["usage"]["temperature"] == 0.1  # second's own
    assert not {"max_tokens", "max_completion_tokens", "temperature"} & set(asked["echo"])


def test_a_label_that_is_a_guess_says_so_on_its_badge(protocol_server, tmp_path):
    """The detector reads English and Chinese only: the badge of an answer in German says its label
    is a guess (the rule ends "+other-language"), as `ask` does."""
    two_echo_endpoints(tmp_path, protocol_server.url)
    at = app().run()
    at.multiselect(key="compare_models").set_value(["first"]).run()
    german = "Die Hauptstadt von Deutschland ist Berlin, eine Stadt mit vielen Museen und einer langen Geschichte."
    at.chat_input(key="compare_prompt").set_value(german).run()
    assert not at.exception, at.exception
    assert any("other language: a guess" in m.value for m in at.markdown), [m.value for m in at.markdown]


def test_arena_model_pick_survives_a_page_switch(protocol_server, tmp_path):
    two_echo_endpoints(tmp_path, protocol_server.url)
    at = app()
    at.switch_page("views/arena.py").run()
    at.multiselect(key="arena_models").set_value(["first", "second"]).run()
    at.switch_page("views/history.py").run()
    at.switch_page("views/arena.py").run()
    assert not at.exception, at.exception
    assert at.multiselect(key="arena_models").value == ["first", "second"]


def test_history_filters_survive_a_page_switch():
    at = app()
    at.switch_page("views/history.py").run()
    at.text_input(key="history_query").input("tiananmen").run()
    at.selectbox(key="history_mode").set_value("imported").run()
    at.switch_page("views/compare.py").run()
    at.switch_page("views/history.py").run()
    assert at.text_input(key="history_query").value == "tiananmen"
    assert at.selectbox(key="history_mode").value == "imported"


def test_continuing_from_history_keeps_the_conversations_system_prompt(protocol_server, tmp_path):
    two_echo_endpoints(tmp_path, protocol_server.url)
    from lib.providers.chat import Column, ask
    from lib.providers.endpoints import load_endpoints

    endpoints = load_endpoints()
    first = ask("first turn", [Column("first", endpoints["first"])], system="Reply like a pirate.")
    at = app()
    at.switch_page("views/history.py").run()
    at.button(key=f"open_{first.conversation_id}").click().run()
    assert not at.exception, at.exception
    assert at.text_area(key="compare_system").value == "Reply like a pirate."
    at.switch_page("views/compare.py")  # AppTest stays on the page it ran; a browser follows switch_page
    at.chat_input(key="compare_prompt").set_value("a follow-up from history").run()
    request = request_for(protocol_server, "a follow-up from history")
    assert request["messages"][0] == {"role": "system", "content": "Reply like a pirate."}
    with session_scope() as s:
        systems = s.scalars(
            select(Exchange.system_prompt).where(Exchange.conversation_id == first.conversation_id)
        ).all()
    assert systems == ["Reply like a pirate.", "Reply like a pirate."]


def test_arena_default_pool_holds_only_endpoints_that_answer_now(protocol_server, tmp_path, monkeypatch):
    for name in ("OPENAI_API_KEY", "DEEPSEEK_API_KEY", "DASHSCOPE_API_KEY", "MOONSHOT_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    two_echo_endpoints(
        tmp_path,
        protocol_server.url,
        f'\n[endpoints.dead]\nname = "Not running"\nbase_url = "{dead}"\nmodel = "x"\nkind = "local"\n',
    )
    at = app()
    at.switch_page("views/arena.py").run()
    assert not at.exception, at.exception
    pool = at.multiselect(key="arena_models").value
    assert {"first", "second"} <= set(pool)
    assert "dead" not in pool  # a local server that does not answer is not in the default pool
    assert not {"ollama-qwen2-5", "vllm", "lmstudio"} & set(pool)  # nor the presets with nothing running
    assert not {"gpt-4o", "deepseek-chat", "qwen-max", "kimi"} & set(pool)  # nor hosted ones without a key


def test_arena_draws_a_new_pair_when_the_pool_changes(protocol_server, tmp_path):
    two_echo_endpoints(
        tmp_path,
        protocol_server.url,
        f'\n[endpoints.third]\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n'
        f'\n[endpoints.fourth]\nbase_url = "{protocol_server.url}"\nmodel = "usage"\nkind = "local"\n',
    )
    at = app()
    at.switch_page("views/arena.py").run()
    at.multiselect(key="arena_models").set_value(["first", "second"]).run()
    assert set(at.session_state["arena_battle"].slots.values()) == {"first", "second"}
    at.multiselect(key="arena_models").set_value(["third", "fourth"]).run()
    assert not at.exception, at.exception
    assert set(at.session_state["arena_battle"].slots.values()) == {"third", "fourth"}


def test_empty_pages_offer_the_example_study_until_there_are_answers(tmp_path):
    at = app()
    pages = {"compare": "views/compare.py", "history": "views/history.py", "leaderboard": "views/leaderboard.py"}
    pages["analysis"] = "views/analysis.py"
    for where, page in pages.items():
        at.switch_page(page).run()
        assert not at.exception, at.exception
        assert at.button(key=f"load_example_{where}").label == "Load the example study"
    path = tmp_path / "one.jsonl"
    path.write_text('{"prompt": "p", "model": "m", "response": "r"}\n')
    import_file(path)
    for where, page in pages.items():
        at.switch_page(page).run()
        assert not [b for b in at.button if b.key == f"load_example_{where}"], where


def test_an_imported_conversation_opens_read_only_and_keeps_the_model_pick(protocol_server, tmp_path):
    two_echo_endpoints(tmp_path, protocol_server.url)
    path = tmp_path / "old-answers.jsonl"
    path.write_text(
        '{"prompt": "What happened in 1989?", "model": "first", "response": "A crackdown."}\n'
        '{"prompt": "What happened in 1989?", "model": "elsewhere/model", "response": "I cannot say."}\n'
    )
    import_file(path)
    at = app().run()
    at.multiselect(key="compare_models").set_value(["second"]).run()
    at.switch_page("views/history.py").run()
    next(b for b in at.button if b.key and b.key.startswith("open_")).click().run()
    assert not at.exception, at.exception
    assert any("cannot be continued or retried" in as_read(i.value) for i in at.info)
    assert at.chat_input(key="compare_prompt").proto.disabled
    assert not [b for b in at.button if b.key and b.key.startswith("retry_")]  # not even for 'first'
    assert any("first (imported)" in as_read(m.value) for m in at.markdown)
    assert at.multiselect(key="compare_models").value == ["second"]  # the user's pick stays


def test_result_page_filters_survive_a_page_switch():
    at = app()
    at.switch_page("views/analysis.py").run()
    at.selectbox(key="analysis_language").set_value("zh").run()
    at.switch_page("views/leaderboard.py").run()
    at.number_input(key="lb_rounds").set_value(200).run()
    at.switch_page("views/export.py").run()
    at.selectbox(key="export_language").set_value("en").run()
    at.switch_page("views/compare.py").run()
    for page, kind, key, value in (
        ("views/analysis.py", "selectbox", "analysis_language", "zh"),
        ("views/leaderboard.py", "number_input", "lb_rounds", 200),
        ("views/export.py", "selectbox", "export_language", "en"),
    ):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        assert getattr(at, kind)(key=key).value == value, key


def test_an_example_study_loaded_part_way_is_named_and_finished_from_the_page():
    """Leaving the page while the example study loaded left answers without a detector label
    (or embeddings unstored) and the button gone: Analysis was incomplete and nothing said so."""
    from sqlalchemy import delete, select

    from db.models import Label
    from db.vocab import LabelSource
    from lib.imports import example_state, load_example

    load_example()
    assert example_state() == "loaded"
    with session_scope() as s:  # as a load stopped while labelling leaves it
        ids = list(s.scalars(select(Label.id).where(Label.source.startswith(LabelSource.DETECTOR)).limit(500)))
        s.execute(delete(Label).where(Label.id.in_(ids)))
    assert example_state() == "unfinished"
    at = app()
    at.switch_page("views/analysis.py").run()
    assert not at.exception, at.exception
    button = at.button(key="load_example_analysis")
    assert button.label == "Finish loading the example study"
    assert any("loaded only part way" in as_read(m.value) for m in at.markdown)
    button.click().run()
    assert not at.exception, at.exception
    assert example_state() == "loaded"
    assert any(  # what it finished, not "already loaded"
        "Finished loading the example study: 500 answers labelled" in as_read(m.value) for m in at.success
    ), [m.value for m in at.success]
    at.switch_page("views/compare.py").run()
    assert not [b for b in at.button if b.key == "load_example_compare"]
    with session_scope() as s:  # a load stopped while storing the precomputed embeddings
        from db.models import Embedding

        s.execute(delete(Embedding).where(Embedding.id.in_(list(s.scalars(select(Embedding.id).limit(10))))))
    assert example_state() == "unfinished"
    load_example()  # as `import --example` finishes it
    assert example_state() == "loaded"
