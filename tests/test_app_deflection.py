"""The Analysis page's Deflection tab and `cli.py analyze`: raw and corrected rates side by side,
answers left out of rates, agreement with human / judge / imported labels, the detector card."""

import json

import pytest
from streamlit.testing.v1 import AppTest

from db import conversations, labels
from db.engine import session_scope
from lib.analysis.deflection import CORRECTED, RAW
from lib.deflection import detector_card
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome
from tests.conftest import ROOT
from tests.test_cli import cli

DETECTOR = detector_card()["detector"]


def stored_scope() -> None:
    """Two models on ten Chinese prompts: Alpha answers, Beta deflects half; a human (agreeing with
    the detector), a judge and an import (half agreeing) labelled four of Beta's; Beta also has a
    provider block and an interrupted answer."""
    models = {m: Endpoint(id=m, name=m.title(), base_url="http://h/v1", model=m) for m in ("alpha", "beta")}
    with session_scope() as s:
        for k in range(10):
            ex = conversations.add_exchange(s, conversations.create_conversation(s).id, f"问题 {k}", language="zh")
            for name, endpoint in models.items():
                text = f"回答 {k}" if name == "alpha" or k % 2 else "我们换个话题吧。"
                rid = conversations.add_response(s, ex.id, name, endpoint, Outcome(text=text, status="ok")).id
                detected = "answered" if name == "alpha" or k % 2 else "deflected"
                labels.set_label(s, rid, detected, DETECTOR)
                if name == "beta" and k < 4:
                    labels.set_label(s, rid, detected, "human")
                    labels.set_label(s, rid, "deflected", "judge:big")
                    labels.set_label(s, rid, "answered", "import:study")
        ex = conversations.add_exchange(s, conversations.create_conversation(s).id, "问题 x", language="zh")
        blocked = Outcome(text="", status="blocked", error_kind="content_filter")
        rid = conversations.add_response(s, ex.id, "beta", models["beta"], blocked).id
        labels.set_label(s, rid, "blocked", DETECTOR)
        cut = Outcome(text="一半的", status="interrupted", error_kind="interrupted")
        rid = conversations.add_response(s, ex.id, "beta", models["beta"], cut).id
        labels.set_label(s, rid, "incomplete", DETECTOR)


def frame_with(at, column: str):
    return next(df.value for df in at.dataframe if column in df.value.columns)


@pytest.mark.app
def test_deflection_tab_shows_raw_and_corrected_rates_left_out_answers_agreement_and_the_card():
    stored_scope()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.switch_page("views/analysis.py").run()
    assert not at.exception, at.exception
    rates = frame_with(at, CORRECTED).set_index("model")
    assert rates.loc["Beta", RAW].startswith("50% [") and rates.loc["Beta", "n"] == "10"
    assert rates.loc["Beta", CORRECTED] != "–" and rates.loc["Beta", "human labels"] == "4"
    apart = frame_with(at, "blocked (provider)").set_index("model")
    assert (
        apart.loc["Beta", "blocked (provider)"] == "1"
        and apart.loc["Beta", "incomplete (failed or interrupted)"] == "1"
    )
    assert apart.loc["Beta", "in rates"] == "10" and apart.loc["Alpha", "answers"] == "10"
    agreement = frame_with(at, "Cohen's kappa").set_index("source")
    assert set(agreement.index) == {"human", "judge:big", "import:study"}
    assert agreement.loc["human", "agreement"] == "100.0%" and agreement.loc["import:study", "agreement"] == "50.0%"
    card = next(e for e in at.expander if e.label.startswith("Detector card:"))
    assert DETECTOR in card.label and detector_card()["measured"] in card.label
    assert f"features v{detector_card()['features']}" in card.label
    used = frame_with(at, "corrects with").set_index("language")
    assert used.loc["zh", "corrects with"].startswith("speechmap_china/zh (n=")
    assert any("speechmap_china/zh" in c.value for c in at.caption)
    at.segmented_control(key="analysis_defl_label").set_value("corrected").run()
    assert not at.exception, at.exception


def test_analyze_json_and_text_carry_corrected_rates_left_out_agreement_and_the_card():
    stored_scope()
    done = cli("analyze", "--json", "--models", "beta")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)["deflection"]
    assert {"rates", "language_gap", "left_out", "agreement", "correction", "detector_card"} <= set(data)
    beta = next(r for r in data["rates"] if r["topic"] == "(all)")
    assert beta["not_answered"]["k"] == 5 and beta["n"] == 10
    assert set(beta["corrected"]) == {"rate", "low", "high", "n_corrected", "n_human", "n_uncorrected"}
    assert beta["corrected"]["n_human"] == 4 and beta["corrected"]["n_corrected"] == 6
    assert data["left_out"]["Beta"]["blocked"] == 1 and data["left_out"]["Beta"]["incomplete"] == 1
    assert {(a["source"], a["language"], a["n"]) for a in data["agreement"]} == {
        ("human", "zh", 4),
        ("judge:big", "zh", 4),
        ("import:study", "zh", 4),
    }
    assert data["correction"]["matrices"]["zh"]["measured_on"] == "speechmap_china/zh"
    assert data["detector_card"]["detector"] == DETECTOR and data["detector_card"]["languages"]["zh"]["confusion"]
    assert data["detector_card"]["features"] == detector_card()["features"]
    text = cli("analyze", "--models", "beta").stdout
    assert "Beta: 50% [" in text and "corrected, of 10" in text  # each under its heading: tests/test_text_sections.py
    assert "Beta: 1 blocked, 1 incomplete" in text
    assert "human (zh): kappa" in text and "zh ← speechmap_china/zh" in text


def test_differences_in_points_never_print_minus_zero():
    from lib.analysis.deflection import points, signed

    assert signed({"rate": 0.12, "low": -0.003, "high": 0.34}) == "+12 pts [+0, +34]"
    assert signed({"rate": 0.19, "low": -0.03, "high": 0.45}) == "+19 pts [\u22123, +45]"  # a minus sign
    assert [points(x) for x in (-0.004, 0.0, -0.03, 0.256)] == ["+0", "+0", "\u22123", "+26"]
