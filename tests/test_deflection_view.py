"""The deflection view: raw and corrected rates side by side, human labels as truth, each language
with its own matrix, answers left out of rates, agreement with other sources, the card."""

import numpy as np
import pytest

from lib.analysis import deflection
from lib.analysis import rates as R
from lib.analysis.views import deflection_view
from lib.suites.results import without_retried

DETECTOR = "parallax-deflection@test"
# zh: the detector calls half of the deflections "answered"; en: it makes no mistakes
ZH = [[95, 2, 3], [5, 90, 5], [50, 0, 50]]
EN = [[100, 0, 0], [0, 100, 0], [0, 0, 100]]
CARD = {
    "detector": DETECTOR,
    "measured": "2026-11-29",
    "method": "5-fold cross-validation grouped by question",
    "labels": ["answered", "refused", "deflected"],
    "matrix": "rows: true label, columns: detected label, raw counts",
    "languages": {
        "en": {"n": 900, "sources": {"speechmap_china": 300, "xstest_v2": 600}, "confusion": [[500, 100, 0]] * 3},
        "zh": {"n": 300, "sources": {"speechmap_china": 300}, "confusion": ZH},
    },
    "by_source": {
        "speechmap_china/en": {"n": 300, "confusion": EN},
        "speechmap_china/zh": {"n": 300, "confusion": ZH},
        "xstest_v2/en": {"n": 600, "confusion": [[500, 100, 0]] * 3},
    },
}


def row(i, label, model="M", language="zh", status="ok", source=DETECTOR, topic="t", twin=None, labels=None):
    return {
        "response_id": i,
        "endpoint_id": model,
        "model_name": model,
        "exchange_id": i,
        "status": status,
        "language": language,
        "topic": topic,
        "twin_key": twin,
        "kind": "probe",
        "label": label,
        "label_source": source if label else None,
        "labels": labels if labels is not None else ({source: label} if label else {}),
    }


def detector_rows(counts: dict[str, int], start=0, **kw) -> list[dict]:
    rows = []
    for label, n in counts.items():
        rows += [row(start + len(rows), label, **kw) for _ in range(n)]
    return rows


def cell(view, model="M", topic="(all)"):
    return next(r for r in view["rates"] if r["model"] == model and r["topic"] == topic)


def test_card_matrix_is_the_china_one_per_language_in_the_card_s_label_order():
    card = {**CARD, "labels": ["deflected", "answered", "refused"]}
    card["by_source"] = {"speechmap_china/zh": {"confusion": [[50, 50, 0], [3, 95, 2], [5, 5, 90]]}}
    found = R.card_matrices(card)
    assert found["zh"].key == "speechmap_china/zh" and found["en"].key == "en"  # en falls back to all sources
    assert found["zh"].confusion.counts.tolist() == ZH  # rows and columns reordered to answered/refused/deflected


def test_corrected_rate_undoes_missed_deflections_beside_the_raw_wilson_rate():
    # truth: 40% answered, 60% deflected; the zh detector reports half the deflections as answered
    view = deflection_view(detector_rows({"answered": 70, "deflected": 30}), CARD)
    all_topics = cell(view)
    assert all_topics["not_answered"]["rate"] == pytest.approx(0.30)
    assert all_topics["not_answered"]["low"] < 0.30 < all_topics["not_answered"]["high"]  # Wilson, as before
    fixed = all_topics["corrected"]
    assert fixed["rate"] == pytest.approx(0.6, abs=0.05) and fixed["low"] < 0.6 < fixed["high"]
    assert fixed["n_corrected"] == 100 and fixed["n_human"] == 0
    assert view["correction"]["matrices"]["zh"]["measured_on"] == "speechmap_china/zh"


def test_each_language_is_corrected_with_its_own_matrix():
    rows = detector_rows({"answered": 70, "deflected": 30}, language="en")
    view = deflection_view(rows, CARD)
    assert cell(view)["corrected"]["rate"] == pytest.approx(0.30, abs=1e-6)  # the en matrix makes no mistakes
    rows += detector_rows({"answered": 70, "deflected": 30}, start=100, language="zh")
    view = deflection_view(rows, CARD)
    assert cell(view)["corrected"]["rate"] == pytest.approx((0.30 + 0.6) / 2, abs=0.03)


def test_human_labels_are_the_truth_and_only_detector_labels_are_corrected():
    humans = detector_rows({"answered": 70, "deflected": 30}, source="human")
    view = deflection_view(humans, CARD)
    assert cell(view)["corrected"]["rate"] == pytest.approx(0.30)
    assert cell(view)["corrected"]["n_human"] == 100 and cell(view)["corrected"]["n_corrected"] == 0
    mixed = humans + detector_rows({"answered": 70, "deflected": 30}, start=100)
    fixed = cell(deflection_view(mixed, CARD))["corrected"]
    assert fixed["n_human"] == 100 and fixed["n_corrected"] == 100
    assert fixed["rate"] == pytest.approx((0.30 + 0.6) / 2, abs=0.03)


def test_answers_that_did_not_finish_are_left_out_of_rates_and_counted_apart():
    rows = detector_rows({"answered": 3, "refused": 1})
    rows += [
        row(10, "blocked", status="blocked"),
        row(11, "blocked"),  # a canned gateway message inside a finished stream
        row(12, "incomplete", status="error"),
        row(13, "answered", status="interrupted", source="human"),  # a partial text is not an answer
        row(14, "empty"),
        row(15, None),
        row(16, None, status="error"),
    ]
    view = deflection_view(rows, CARD)
    assert cell(view)["n"] == 4 and cell(view)["not_answered"]["k"] == 1
    assert view["left_out"]["M"] == {
        "answers": 11,
        "in_rates": 4,
        "blocked": 2,
        "incomplete": 3,
        "empty": 1,
        "unlabelled": 1,
    }
    assert view["provider_blocks"]["M"]["k"] == 2 and view["provider_blocks"]["M"]["n"] == 11


def test_a_scope_with_nothing_to_rate_says_why_and_still_counts_what_was_left_out():
    view = deflection_view([row(1, "blocked", status="blocked"), row(2, "incomplete", status="error")], CARD)
    assert "none of the 2 answers" in view["error"]
    assert view["left_out"]["M"]["blocked"] == 1 and view["detector_card"]["detector"] == DETECTOR
    assert "no answer in this scope has a label yet" in deflection_view([row(1, None)], CARD)["error"]


def test_language_gap_is_reported_raw_and_corrected_with_an_interval():
    en = detector_rows({"answered": 70, "deflected": 30}, language="en", twin="k")
    zh = detector_rows({"answered": 70, "deflected": 30}, start=100, language="zh", twin="k")
    gap = deflection_view(en + zh, CARD)["language_gap"][0]
    assert gap["gap"] == pytest.approx(0.0)  # the raw labels see no gap…
    corrected = gap["gap_corrected"]  # …the corrected rates do: the zh detector misses deflections
    assert corrected["rate"] == pytest.approx(0.3, abs=0.06) and 0 < corrected["low"] < corrected["rate"]
    assert gap["en_corrected"]["rate"] == pytest.approx(0.3, abs=1e-6)


def test_agreement_with_each_other_source_per_language():
    rows = []
    for i in range(10):  # the human and the judge disagree with the detector on half the zh answers
        theirs = "deflected" if i < 5 else "answered"
        labels = {DETECTOR: "answered", "human": theirs, "judge:big": theirs, "import:study": "answered"}
        rows.append(row(i, theirs, source="human", labels=labels))
    rows.append(row(20, "incomplete", status="error", labels={DETECTOR: "incomplete", "human": "refused"}))
    found = {(a["source"], a["language"]): a for a in deflection_view(rows, CARD)["agreement"]}
    assert set(found) == {("human", "zh"), ("judge:big", "zh"), ("import:study", "zh")}
    human = found[("human", "zh")]
    assert human["n"] == 10 and human["kappa"] == pytest.approx(0.0) and human["accuracy"] == 0.5
    assert human["confusion"][2][0] == 5  # deflected by the human, answered by the detector
    assert found[("import:study", "zh")]["accuracy"] == 1.0


def test_without_a_card_rates_are_raw_only_and_the_view_says_so():
    view = deflection_view(detector_rows({"answered": 7, "deflected": 3}), {})
    assert cell(view)["corrected"] is None and cell(view)["not_answered"]["rate"] == pytest.approx(0.3)
    assert "no card" in view["correction"]["notes"][0]
    assert deflection.card_line(view) == "No detector card: rates are not corrected."


def test_labels_from_another_detector_version_are_noted():
    view = deflection_view(detector_rows({"answered": 5}, source="parallax-deflection@old"), CARD)
    assert "another detector version" in view["correction"]["notes"][0]


def test_display_tables_show_raw_and_corrected_side_by_side():
    view = deflection_view(detector_rows({"answered": 70, "deflected": 30}), CARD)
    table = deflection.rate_table(view["rates"])
    assert table[0][deflection.RAW].startswith("30% [")
    assert table[0][deflection.CORRECTED] == deflection.with_interval(cell(view)["corrected"])
    assert table[0][deflection.CORRECTED].startswith("57% [")
    assert "zh ← speechmap_china/zh (n=300)" in deflection.card_line(view)
    card = {r["language"]: r for r in deflection.card_table(view)}
    assert card["zh"]["corrects with"] == "speechmap_china/zh (n=300)" and card["en"]["n"] == "900"


def test_correct_many_matches_the_nnls_solution_round_by_round():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 40, size=(300, 3, 3)).astype(float) + np.eye(3) * rng.integers(0, 200, size=(300, 1, 1))
    matrices = R.Confusion(counts).rates()
    observed = rng.dirichlet([1, 1, 1], size=300)
    observed[:50] = [1, 0, 0]  # at the boundary, where the exact solution goes negative
    expected = np.array([R.correct_shares(q, m) for q, m in zip(observed, matrices, strict=True)])
    assert np.allclose(R.correct_many(observed, matrices), expected, atol=1e-8)


def test_a_share_never_seen_is_not_reported_as_certain():
    rate = R.corrected_not_answered({"en": ["answered"] * 30}, {"en": R.Confusion(np.array(EN))})
    assert rate.corrected == 0.0 and rate.high > 0.02  # 0 of 30 is not 0% for sure


def test_retried_failures_are_not_left_out_answers():
    rows = [
        {"exchange_id": 1, "endpoint_id": "a", "status": "error"},
        {"exchange_id": 1, "endpoint_id": "a", "status": "ok"},
        {"exchange_id": 2, "endpoint_id": "a", "status": "interrupted"},
        {"exchange_id": 1, "endpoint_id": "b", "status": "error"},
    ]
    assert [(r["exchange_id"], r["endpoint_id"], r["status"]) for r in without_retried(rows)] == [
        (1, "a", "ok"),
        (2, "a", "interrupted"),
        (1, "b", "error"),
    ]


def test_scope_rows_carry_who_gave_each_label():
    from db import answers, conversations, labels
    from db.engine import session_scope
    from lib.providers.endpoints import Endpoint
    from lib.providers.stream import Outcome

    endpoint = Endpoint(id="m", name="M", base_url="http://h/v1", model="m")
    with session_scope() as s:
        ex = conversations.add_exchange(s, conversations.create_conversation(s).id, "q", language="zh")
        rid = conversations.add_response(s, ex.id, "m", endpoint, Outcome(text="t", status="ok")).id
        labels.set_label(s, rid, "answered", DETECTOR)
        labels.set_label(s, rid, "deflected", "judge:big")
        labels.set_label(s, rid, "refused", "human")
    with session_scope() as s:
        (found,) = answers.scope_answers(s, answers.AnswerScope())
    assert found["label"] == "refused" and found["label_source"] == "human"
    assert found["labels"] == {DETECTOR: "answered", "judge:big": "deflected", "human": "refused"}
    assert deflection.detector_label(found) == "answered"


def test_agreement_is_shown_to_a_tenth_of_a_percent():
    # 2 disagreements in 709 rounded to a whole percentage read "100%" beside a confusion that has them
    (row,) = deflection.agreement_table(
        [{"source": "judge", "language": "en", "n": 709, "kappa": 0.99, "accuracy": 707 / 709}]
    )
    assert row["agreement"] == "99.7%"


def test_the_divergence_heatmap_names_every_model_in_table_order():
    from lib.analysis import charts

    models = [f"model-{i:02d}" for i in range(37)]
    view = {"models": models, "matrix": [[0.1] * 37 for _ in models]}
    layout = charts.divergence_heatmap(view).layout
    assert layout.yaxis.dtick == 1 and layout.xaxis.dtick == 1  # every other model was unnamed at 37
    assert layout.height >= 18 * 37 and layout.yaxis.autorange == "reversed"  # model-00 at the top


def test_answers_of_the_example_study_come_with_a_note_to_read_their_raw_rate():
    study = {DETECTOR: "answered", "import:speechmap-china-sample": "answered"}
    rows = [row(i, "answered", labels=study) for i in range(4)] + detector_rows({"refused": 2}, start=10)
    notes = deflection_view(rows, CARD)["correction"]["notes"]
    assert any(n.startswith("4 answers are from the example study") and "raw rate" in n for n in notes), notes
    assert not any(
        "example study" in n for n in deflection_view(detector_rows({"refused": 2}), CARD)["correction"]["notes"]
    )


def test_a_heatmap_of_many_models_is_not_a_page_of_overlapping_names():
    from lib.analysis import charts

    models = [f"m{i:03d}" for i in range(200)]
    layout = charts.divergence_heatmap({"models": models, "matrix": [[0.1] * 200 for _ in models]}).layout
    assert layout.yaxis.dtick is None and layout.height <= 160 + 18 * charts.ALL_NAMED
