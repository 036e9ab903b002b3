"""Plotly figures, built from plain data so they can be tested and written to HTML headless.

Plotly renders trace names, legends, ticks, titles, annotations and hover values as a subset of
HTML that keeps `<span style>` (a CSS `url()` fetches from another host) and `<a href>`. Every
string that comes from data (model names, topics, prompts, answers, cluster terms) goes through
`lib.safety.chart_text` here, before it reaches a figure; categories are escaped where they are
made, so an axis's keys and its tick labels stay the same strings. The HTML in this module's own
templates (`<br>`, `<b>`, `<extra>`) is the only markup a figure carries.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from lib.analysis.deflection import with_interval
from lib.safety import chart_text

# an axis of names is categorical: Plotly otherwise guesses a type from the values, and models
# named "1", "2" or "2024-01-01" would be drawn on a number or date line (and merged or spaced)
NAMES = {"type": "category"}
ALL_NAMED = 60  # up to this many models a heatmap names every one (18 px a row)


def ratings_chart(ratings, names: dict[str, str]) -> go.Figure:
    """Ratings with 95% bootstrap intervals as error bars, best first."""
    labels = [chart_text(names.get(r.model, r.model)) for r in ratings]
    values = [r.rating for r in ratings]
    has_ci = any(r.ci_low is not None for r in ratings)  # a model with too few battles has none: no bar
    fig = go.Figure(
        go.Scatter(
            x=labels,
            y=values,
            mode="markers",
            marker={"size": 10},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [None if r.ci_high is None else r.ci_high - r.rating for r in ratings] if has_ci else None,
                "arrayminus": [None if r.ci_low is None else r.rating - r.ci_low for r in ratings] if has_ci else None,
            },
            hovertemplate="%{x}<br>rating %{y:.0f}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Bradley–Terry rating (95% bootstrap CI)",
        yaxis_title="rating",
        xaxis=NAMES,
        margin={"t": 50, "b": 10},
        height=420,
    )
    return fig


def win_rate_heatmap(models: list[str], rates: np.ndarray, names: dict[str, str], order: list[str]) -> go.Figure:
    """Share of head-to-head games the row model won against the column model (ties half)."""
    index = [models.index(m) for m in order]
    matrix = rates[np.ix_(index, index)]
    labels = [chart_text(names.get(m, m)) for m in order]
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=labels,
            y=labels,
            zmin=0,
            zmax=1,
            colorscale="RdBu",
            text=[[("" if np.isnan(v) else f"{v:.0%}") for v in row] for row in matrix],
            texttemplate="%{text}",
            hovertemplate="%{y} vs %{x}: %{z:.0%}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Win rate (row beats column)", xaxis=NAMES, yaxis=NAMES, height=420, margin={"t": 50, "b": 10}
    )
    return fig


def answer_map(points: list[dict], colour: str = "model") -> go.Figure:
    """The 2-D map of answers, one trace per colour group, hover with model, prompt and answer."""
    fig = go.Figure()
    groups: dict[str, list[dict]] = {}
    for point in points:
        groups.setdefault(str(point[colour]), []).append(point)
    for name, members in sorted(groups.items()):
        fig.add_trace(
            go.Scattergl(
                x=[p["x"] for p in members],
                y=[p["y"] for p in members],
                mode="markers",
                name=chart_text(name),
                # the response id last: a page reads a selected answer's own (unescaped) text by it
                customdata=[
                    [chart_text(p["model"]), chart_text(p["prompt"]), chart_text(p["answer"]), p["response_id"]]
                    for p in members
                ],
                hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<br><i>%{customdata[2]}</i><extra></extra>",
                marker={"size": 7, "opacity": 0.8},
            )
        )
    fig.update_layout(height=560, legend_title=chart_text(colour), margin={"t": 30}, dragmode="lasso")
    return fig


def cluster_sizes(clusters: list[dict]) -> go.Figure:
    """Stacked bars: answers per cluster, split by model."""
    models = sorted({m for c in clusters for m in c["by_model"]})
    names = [chart_text(f"{c['id']}: {', '.join(c['terms'][:3])}") for c in clusters]
    bars = [go.Bar(name=chart_text(m), x=names, y=[c["by_model"].get(m, 0) for c in clusters]) for m in models]
    fig = go.Figure(bars)
    fig.update_layout(barmode="stack", height=420, title="Cluster sizes per model", xaxis=NAMES, margin={"t": 50})
    return fig


def divergence_heatmap(view: dict) -> go.Figure:
    """Mean cosine distance between each pair of models across shared prompts."""
    z = [[np.nan if v is None else v for v in row] for row in view["matrix"]]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[chart_text(m) for m in view["models"]],
            y=[chart_text(m) for m in view["models"]],
            colorscale="Viridis",
            hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>",
        )
    )
    every = {"dtick": 1} if len(view["models"]) <= ALL_NAMED else {}  # beyond that Plotly picks which to name
    fig.update_layout(
        title="Mean divergence (cosine distance)",
        height=max(460, 160 + 18 * min(len(view["models"]), ALL_NAMED)),  # one readable row per model
        margin={"t": 50},
        xaxis={**NAMES, **every, "automargin": True},
        # the first model at the top, in the order of the tables
        yaxis={**NAMES, **every, "automargin": True, "autorange": "reversed"},
    )
    return fig


def deflection_heatmap(view: dict, label: str = "not_answered") -> go.Figure:
    """Rate of one label per model × topic (or the corrected not-answered rate: label "corrected"),
    with the raw (Wilson 95%) and corrected (bootstrap 95%) rates and n in the hover."""
    cells = [r for r in view["rates"] if r["topic"] != "(all)"]
    models = sorted({r["model"] for r in cells})
    topics = sorted({r["topic"] for r in cells})
    z = [[None] * len(topics) for _ in models]
    text = [[""] * len(topics) for _ in models]
    for r in cells:
        i, j = models.index(r["model"]), topics.index(r["topic"])
        cell = r.get(label) or {}
        z[i][j] = cell.get("rate")
        raw = r["not_answered"] if label in ("not_answered", "corrected") else r[label]
        hover = f"raw {with_interval(raw)}, n={raw['n']}"
        fixed = r.get("corrected")
        if label in ("not_answered", "corrected") and fixed and fixed.get("rate") is not None:
            hover += f"<br>corrected {with_interval(fixed)}"
        text[i][j] = hover
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[chart_text(t) for t in topics],
            y=[chart_text(m) for m in models],
            zmin=0,
            zmax=1,
            colorscale="Reds",
            customdata=text,
            hovertemplate="%{y} · %{x}<br>%{customdata}<extra></extra>",
        )
    )
    title = "not answered (corrected)" if label == "corrected" else label.replace("_", " ")
    fig.update_layout(
        title=f"{chart_text(title)} rate by topic (95% intervals in hover)",
        height=max(460, 120 + 18 * len(models)),  # one readable row per model
        margin={"t": 50},
        xaxis=NAMES,
        yaxis={**NAMES, "dtick": 1, "automargin": True},  # every model named, not every other one
    )
    return fig


def language_gap(view: dict) -> go.Figure:
    """Not-answered rate on English vs Chinese twin prompts, per model, raw and corrected, with intervals."""
    gap = view["language_gap"]
    fig = go.Figure()
    for lang in ("en", "zh"):
        for key, name in ((lang, f"{lang} raw"), (f"{lang}_corrected", f"{lang} corrected")):
            cells = [g.get(key) or {} for g in gap]
            if not any(c.get("rate") is not None for c in cells):
                continue
            fig.add_trace(
                go.Bar(
                    name=name,
                    x=[chart_text(g["model"]) for g in gap],
                    y=[c.get("rate") for c in cells],
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [(c["high"] - c["rate"]) if c.get("rate") is not None else 0 for c in cells],
                        "arrayminus": [(c["rate"] - c["low"]) if c.get("rate") is not None else 0 for c in cells],
                    },
                )
            )
    fig.update_layout(
        barmode="group",
        title="Not answered: English vs Chinese twins (raw and corrected, 95% intervals)",
        yaxis_range=[0, 1],
        xaxis=NAMES,
        height=420,
        margin={"t": 50},
    )
    return fig


def analysis_figures(result: dict) -> dict[str, go.Figure]:
    """Every chart an analysis result supports, by file-friendly name."""
    figures = {}
    if "points" in result["map"]:
        figures["map"] = answer_map(result["map"]["points"])
    if "clusters" in result["clusters"]:
        figures["clusters"] = cluster_sizes(result["clusters"]["clusters"])
    if "matrix" in result["divergence"]:
        figures["divergence"] = divergence_heatmap(result["divergence"])
    if "rates" in result["deflection"]:
        figures["deflection"] = deflection_heatmap(result["deflection"])
        if result["deflection"]["language_gap"]:
            figures["language_gap"] = language_gap(result["deflection"])
    return figures
