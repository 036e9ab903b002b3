"""The analysis page renders every view from a small stored data set; `cli.py analyze --json`."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db import conversations, labels
from db.engine import session_scope
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome
from tests.conftest import ROOT
from tests.test_cli import cli

CANNED = "I'm sorry, but let's talk about something else."
TOPICS = ["rivers", "volcanoes", "bread", "chess", "tiananmen", "taiwan", "xinjiang", "tibet"]


def stored_dataset() -> None:
    models = [Endpoint(id=m, name=m.title(), base_url="http://h/v1", model=m) for m in ("alpha", "beta", "gamma")]
    with session_scope() as s:
        for k, topic in enumerate(TOPICS):
            conv = conversations.create_conversation(s)
            ex = conversations.add_exchange(s, conv.id, f"Tell me about {topic}.", language="en")
            for j, endpoint in enumerate(models):
                sensitive = k >= 4 and j == 2
                text = (
                    CANNED
                    if sensitive
                    else f"{topic.title()} answer from {endpoint.name}: "
                    + " ".join([topic] * (3 + j))
                    + f" facts about {topic} and history number {k}."
                )
                row = conversations.add_response(s, ex.id, endpoint.id, endpoint, Outcome(text=text, status="ok"))
                labels.set_label(s, row.id, "deflected" if sensitive else "answered", "parallax-deflection@test")


@pytest.mark.app
def test_analysis_page_renders_every_view_from_stored_answers():
    stored_dataset()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.switch_page("views/analysis.py").run()
    assert not at.exception, at.exception
    assert len(at.tabs) == 5
    charts = at.get("plotly_chart")
    assert len(charts) >= 4  # map, clusters (or a reason), divergence, deflection
    assert any("Used 4× for 4 prompts" in m.value for m in at.markdown)


@pytest.mark.app
def test_analysis_page_with_no_answers_says_so():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("views/analysis.py").run()
    assert not at.exception
    assert any("No answers in this scope" in i.value for i in at.info)


def test_analyze_html_charts_load_their_script_from_beside_them_not_from_a_cdn(tmp_path):
    import re

    stored_dataset()
    done = cli("analyze", "--json", "--html", str(tmp_path / "charts"))
    assert done.returncode == 0, done.stderr
    pages = json.loads(done.stdout)["html"]
    assert pages and (tmp_path / "charts" / "plotly.min.js").stat().st_size > 1_000_000
    for page in pages:
        html = Path(page).read_text()
        assert re.findall(r'<script[^>]* src="([^"]*)"', html) == ["plotly.min.js"], page
        assert "cdn.plot.ly" not in html and "https://" not in html, page


def test_analyze_json_shape_and_reasons(tmp_path):
    stored_dataset()
    done = cli("analyze", "--json", "--html", str(tmp_path / "charts"))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["n"] == 24 and data["models"] == ["Alpha", "Beta", "Gamma"]
    assert {"map", "clusters", "templates", "divergence", "deflection", "scope", "timings"} <= set(data)
    assert data["templates"]["templates"][0]["uses"] == 4
    assert data["divergence"]["prompts_compared"] == 8
    gamma = next(r for r in data["deflection"]["rates"] if r["model"] == "Gamma" and r["topic"] == "(all)")
    assert gamma["not_answered"]["k"] == 4 and 0 < gamma["not_answered"]["low"] < 0.5 < gamma["not_answered"]["high"]
    assert (tmp_path / "charts" / "divergence.html").exists()
    one_model = json.loads(cli("analyze", "--json", "--models", "alpha").stdout)
    assert "at least two models" in one_model["divergence"]["error"]
    empty = json.loads(cli("analyze", "--json", "--suite-run", "999").stdout)
    assert empty["n"] == 0 and empty["clusters"]["error"]
    assert cli("analyze", "--json", "--language", "fr").returncode == 2
    unknown = cli("analyze", "--json", "--models", "alpha", "--models", "no-such-model")
    assert unknown.returncode == 2 and not unknown.stdout
    listed = "(models with answers: alpha (Alpha), beta (Beta), gamma (Gamma))"
    assert f"no stored answers from 'no-such-model' {listed}" in unknown.stderr
    # the display name the output prints selects the same answers as the id (it was refused)
    by_name = json.loads(cli("analyze", "--json", "--models", "Gamma", "-m", "Alpha").stdout)
    by_id = json.loads(cli("analyze", "--json", "--models", "gamma", "-m", "alpha").stdout)
    assert by_name["n"] == by_id["n"] == 16 and by_name["models"] == by_id["models"] == ["Alpha", "Gamma"]


def test_analyze_models_are_read_in_the_one_spelling_of_stored_names(tmp_path):
    """An imported 'Ｑｗｅｎ２．５' or 'Deep\u00a0Seek' is stored as 'Qwen2.5', 'Deep Seek': `--models`
    typed either way finds it (it found nothing and said nothing)."""
    path = tmp_path / "rows.jsonl"
    rows = [
        {"prompt": f"q{i}", "model": model, "response": f"An answer number {i}."}
        for i, model in enumerate(["\uff31\uff57\uff45\uff4e\uff12\uff0e\uff15", "Deep\u00a0Seek"])
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli("import", str(path)).returncode == 0
    done = cli("analyze", "--json", "-m", "\uff31\uff57\uff45\uff4e\uff12\uff0e\uff15", "-m", "Deep\u00a0Seek")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["n"] == 2 and data["scope"]["models"] == ["Qwen2.5", "Deep Seek"], data["scope"]


def test_analyze_models_reads_every_stored_name_of_an_id_in_one_spelling():
    """A display name selects every id stored under it — as an endpoint wrote it (not folded),
    under a name it had before a rename, and beside an id spelt alike (each was refused, or
    picked only the id)."""
    named = [("e4", "\uff27\uff41\uff4d\uff4d\uff41"), ("e5", "A\u00a0B"), ("e6", "Cafe\u0301"), ("e7", "Imp")]
    named += [("e7", "ImpNew"), ("Shared", "Shared"), ("e1", "Shared"), ("e2", "Shared")]
    with session_scope() as s:
        for k, (endpoint_id, name) in enumerate(named):
            ex = conversations.add_exchange(s, conversations.create_conversation(s).id, f"Question {k}?", language="en")
            endpoint = Endpoint(id=endpoint_id, name=name, base_url="http://h/v1", model="m")
            conversations.add_response(s, ex.id, endpoint_id, endpoint, Outcome(text=f"An answer {k}.", status="ok"))

    def scope(*names: str) -> list[str]:
        done = cli("analyze", "--json", *[arg for name in names for arg in ("-m", name)])
        assert done.returncode == 0, (names, done.stderr)
        return sorted(json.loads(done.stdout)["scope"]["models"])

    assert scope("Gamma", "A B", "Caf\u00e9", "Imp") == ["e4", "e5", "e6", "e7"]
    assert scope("Shared") == ["Shared", "e1", "e2"]  # the id Shared and the ids named so
    many = cli("analyze", "--json", *[a for k in range(30) for a in ("-m", f"nobody{k}")])
    assert many.returncode == 2 and "'nobody19' and 10 more (models with answers:" in many.stderr, many.stderr
