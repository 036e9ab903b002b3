"""Every chart builder, fed names, topics, prompts, answers and cluster terms that are markup:
Plotly renders trace names, ticks, titles and hover values as a subset of HTML (a `<span style>`
with a CSS `url()` fetches from another host, an `<a href>` is a live link), so no string of a
figure may carry a tag from data — only the builders' own `<br>`, `<b>`, `<i>` and `<extra>`.
The browser side (nothing fetched, names shown as written) is in test_e2e_browser.py."""

from __future__ import annotations

import inspect
import json
import re

import numpy as np
import pytest

from lib.analysis import charts
from lib.analysis import views as analysis
from lib.arena.leaderboard import build_board
from lib.arena.rating import Battle
from lib.safety import chart_text
from tests.test_analysis import row, unit

HOST = "http://127.0.0.1:8999"
MODELS = [
    "plain",
    f'<span style="cursor:url({HOST}/cur.png),auto">S</span>',
    f'<span style="fill:url({HOST}/f.svg#a)">F</span>',
    f'<a href="{HOST}/link">L</a>',
]
TOPIC = f'<span style="cursor:url({HOST}/topic.png),auto">T</span>'
PROMPT = f'<img src="{HOST}/prompt.png"> & <b>bold</b>'
ANSWER = f'<a href="{HOST}/answer">read</a> &lt;already escaped&gt;'
OURS = {"<br>", "<b>", "</b>", "<i>", "</i>", "<extra>", "</extra>"}  # the builders' own markup
TAG = re.compile(r"<[^<>]*>")


def strings(value) -> list[str]:
    """Every string in a figure's JSON: values and keys, at any depth."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


@pytest.fixture(scope="module")
def result() -> dict:
    """A whole analysis of hostile rows: English/Chinese twins per model, one topic, on hand-made vectors."""
    rows = [
        row(
            len(MODELS) * 2 * i + 2 * j + k,
            model,
            f"{PROMPT} {i}" if lang == "en" else f"告诉我第{i}件事 {PROMPT}",
            f"{ANSWER} {i} {j}",
            label=["answered", "refused", "deflected"][(i + j) % 3],
            topic=TOPIC,
            language=lang,
            twin_key=f"pair-{i}",
            exchange_id=i * 2 + k,
        )
        for i in range(6)
        for j, model in enumerate(MODELS)
        for k, lang in enumerate(("en", "zh"))
    ]
    rng = np.random.default_rng(0)
    vectors = np.stack([unit(*rng.normal(size=8)) for _ in rows])
    return analysis.run_all(rows, vectors)


def builds(result: dict) -> dict[str, list]:
    """Every builder's figures over hostile data, by builder name."""
    board = build_board(
        [Battle(MODELS[i % 4], MODELS[(i + 1) % 4], "a" if i % 3 else "b") for i in range(24)],
        names={m: m for m in MODELS},
        bootstrap=20,
    )
    order = [r.model for r in board.ratings]
    hand_made = [{"id": 0, "terms": ["<b>x</b>", TOPIC], "by_model": {m: 2 for m in MODELS}}]
    return {
        "ratings_chart": [charts.ratings_chart(board.ratings, board.names)],
        "win_rate_heatmap": [charts.win_rate_heatmap(board.models, board.win_rates, board.names, order)],
        "answer_map": [charts.answer_map(result["map"]["points"], c) for c in ("model", "cluster", "label")],
        "cluster_sizes": [charts.cluster_sizes(result["clusters"]["clusters"]), charts.cluster_sizes(hand_made)],
        "divergence_heatmap": [charts.divergence_heatmap(result["divergence"])],
        "deflection_heatmap": [
            charts.deflection_heatmap(result["deflection"], label)
            for label in ("not_answered", "corrected", "refused", "deflected")
        ],
        "language_gap": [charts.language_gap(result["deflection"])],
    }


def test_every_figure_builder_is_checked(result):
    made = {
        name
        for name, f in inspect.getmembers(charts, inspect.isfunction)
        if f.__module__ == charts.__name__ and f.__annotations__.get("return") == "go.Figure"
    }
    assert made == set(builds(result))


def test_no_tag_from_data_reaches_any_string_of_any_figure(result):
    assert set(charts.analysis_figures(result)) == {"map", "clusters", "divergence", "deflection", "language_gap"}
    for name, figures in builds(result).items():
        for figure in figures:
            texts = strings(json.loads(figure.to_json()))
            tags = {tag for text in texts for tag in TAG.findall(text)}
            assert tags <= OURS, (name, tags - OURS)
            assert not any(HOST in text and "<" in text for text in texts), name


def test_names_and_topics_are_in_the_figures_escaped_not_dropped(result):
    figures = builds(result)
    for name in ("ratings_chart", "win_rate_heatmap", "answer_map", "divergence_heatmap", "deflection_heatmap"):
        texts = set(strings(json.loads(figures[name][0].to_json())))
        assert {chart_text(m) for m in MODELS} <= texts, name
    heatmap = json.loads(figures["deflection_heatmap"][0].to_json())["data"][0]
    assert heatmap["x"] == [chart_text(TOPIC)]  # the category and its tick: one escaped string
    bars = json.loads(figures["cluster_sizes"][1].to_json())["data"]
    assert {b["name"] for b in bars} == {chart_text(m) for m in MODELS}
    assert bars[0]["x"] == [chart_text(f"0: <b>x</b>, {TOPIC}")]
    hover = json.loads(figures["answer_map"][0].to_json())["data"][0]["customdata"][0]
    assert chart_text(ANSWER) in hover[2] and "&amp;lt;already escaped&amp;gt;" in hover[2]


def test_chart_text_escapes_markup_and_entities_and_keeps_quotes():
    assert chart_text('<a href="x">&amp; it\'s</a>') == '&lt;a href="x"&gt;&amp;amp; it\'s&lt;/a&gt;'
    assert chart_text(None) == "" and chart_text(3) == "3" and chart_text("a\ud83d") == "a\ufffd"


def test_axes_of_names_are_categories_whatever_the_names_look_like(result):
    """Models named like numbers or dates stay named categories (Plotly would guess a number or date axis)."""
    figures = builds(result)
    for name, axes in {
        "ratings_chart": ("xaxis",),
        "win_rate_heatmap": ("xaxis", "yaxis"),
        "cluster_sizes": ("xaxis",),
        "divergence_heatmap": ("xaxis", "yaxis"),
        "deflection_heatmap": ("xaxis", "yaxis"),
        "language_gap": ("xaxis",),
    }.items():
        layout = json.loads(figures[name][0].to_json())["layout"]
        for axis in axes:
            assert layout.get(axis, {}).get("type") == "category", (name, axis)
    board = build_board([Battle("1", "2", "a"), Battle("2", "2024-01-01", "b")], names={}, bootstrap=0)
    chart = json.loads(charts.ratings_chart(board.ratings, board.names).to_json())
    assert sorted(chart["data"][0]["x"]) == ["1", "2", "2024-01-01"]
    assert chart["layout"]["xaxis"]["type"] == "category"
