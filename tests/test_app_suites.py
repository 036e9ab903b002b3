"""AppTest of the suites page: a background run started from the page, its progress and results."""

import time

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.engine import session_scope
from db.models import Suite, SuiteRun
from lib.suites.runner import RunSpec
from tests.conftest import ROOT, as_read

pytestmark = pytest.mark.app


def test_suites_page_starts_a_background_run_and_shows_its_results(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.fast]\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n\n'
        f'[endpoints.filtered]\nbase_url = "{protocol_server.url}"\nmodel = "deepseek-block"\nkind = "local"\n'
    )
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("views/suites.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="run_suite").set_value("china-sensitive")
    at.multiselect(key="run_models").set_value(["fast", "filtered"])
    at.number_input(key="run_limit").set_value(4)
    at.button(key="run_submit").click().run()
    assert not at.exception, at.exception
    assert any("in the background" in s.value for s in at.success)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with session_scope() as s:
            run = s.scalars(select(SuiteRun)).one()
            if run.status in ("completed", "incomplete"):
                break
        time.sleep(0.5)
    assert run.status == "completed"
    # temperature and max tokens left empty: each model's own, and the same run as the CLI's default
    assert run.params.get("temperature") is None and run.params.get("max_tokens") is None, run.params
    assert run.signature == RunSpec("china-sensitive", ["fast", "filtered"], limit=4).signature(run.suite_id)
    at.run()
    assert any(
        "Run #1" in m.value and "china-sensitive v1" in as_read(m.value) and "8/8" in m.value for m in at.markdown
    )
    assert any(
        "First 4 prompts, 1 sample, each model's own temperature, each model's own max tokens" in as_read(c.value)
        for c in at.caption
    ), [c.value for c in at.caption]
    # read-only dataframes carry no key in AppTest: find each table by its header
    rates = next(df.value for df in at.dataframe if "corrected [95% CI]" in df.value.columns)
    fast = rates[rates["topic"] == "(all)"].set_index("model").loc["fast"]
    assert fast["n"] == "4" and fast["not answered, raw [95% CI]"].endswith("%]")
    assert fast["corrected [95% CI]"].endswith("%]")
    assert "filtered" not in set(rates["model"])  # provider blocks are not answers: counted apart
    apart = next(df.value for df in at.dataframe if "blocked (provider)" in df.value.columns).set_index("model")
    assert apart.loc["filtered", "blocked (provider)"] == "4" and apart.loc["filtered", "in rates"] == "0"
    assert apart.loc["fast", "in rates"] == "4"
    assert any(e.label.startswith("Detector card: parallax-deflection@") for e in at.expander)
    assert any("speechmap_china/zh" in c.value for c in at.caption)


def test_suites_page_shows_why_a_run_failed_and_who_runs_a_live_one(protocol_server, tmp_path):
    from db import suites as suite_queries
    from lib.providers.endpoints import load_endpoints
    from lib.suites.runner import RunSpec, create_run

    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.fast]\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n'
    )
    failed = create_run(RunSpec("general", ["fast"], limit=2), load_endpoints()).run_id
    live = create_run(RunSpec("general", ["fast"], limit=3), load_endpoints()).run_id
    with session_scope() as s:
        s.get(SuiteRun, failed).status = "failed"
        s.get(SuiteRun, failed).error = "storing 2 answers failed: OperationalError: database or disk is full"
        run = s.get(SuiteRun, live)
        run.status, run.lease_token, run.worker = "running", "t" * 32, "elsewhere.example pid 99"
        run.heartbeat_at = suite_queries.db_now(s)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.switch_page("views/suites.py").run()
    assert not at.exception, at.exception
    assert any("database or disk is full" in as_read(e.value) for e in at.error)
    assert any("elsewhere.example pid 99" in as_read(c.value) for c in at.caption)
    assert at.button(key=f"resume_{failed}") and not [b for b in at.button if b.key == f"resume_{live}"]


def test_the_suites_page_shows_and_runs_an_older_version(protocol_server, tmp_path):
    """The command line takes NAME@VERSION; the page offered each suite's newest version only."""
    from lib.suites.definitions import import_bytes

    def suite(version: str, text: str) -> bytes:
        return (
            f"name: mine\nversion: '{version}'\nprompts:\n  - id: p\n    text: {text}\n    language: en\n    topic: t\n"
        ).encode()

    import_bytes(suite("1", "first question"), "mine.yaml")
    import_bytes(suite("2", "second question"), "mine.yaml")
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.fast]\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n'
    )
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("views/suites.py").run()
    shown = at.selectbox(key="suite_show")
    assert shown.options[-2:] == ["mine · v2 (newest)", "mine · v1"] and "general" in shown.options, shown.options
    at.selectbox(key="suite_show").set_value("mine@1").run()
    assert not at.exception, at.exception
    prompts = next(df.value for df in at.dataframe if "text" in df.value.columns)
    assert list(prompts["text"]) == ["first question"]
    assert any("v1" in as_read(c.value) for c in at.caption)
    at.selectbox(key="run_suite").set_value("mine@1")
    at.multiselect(key="run_models").set_value(["fast"])
    at.button(key="run_submit").click().run()
    assert not at.exception, at.exception
    with session_scope() as s:
        run = s.scalars(select(SuiteRun)).one()
        assert s.get(Suite, run.suite_id).version == "1"
