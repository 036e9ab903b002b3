"""Plotly figures, built from plain data so they can be tested and written to HTML headless."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def ratings_chart(ratings, names: dict[str, str]) -> go.Figure:
    """Ratings with 95% bootstrap intervals as error bars, best first."""
    labels = [names.get(r.model, r.model) for r in ratings]
    values = [r.rating for r in ratings]
    has_ci = all(r.ci_low is not None for r in ratings)
    fig = go.Figure(
        go.Scatter(
            x=labels,
            y=values,
            mode="markers",
            marker={"size": 10},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [r.ci_high - r.rating for r in ratings] if has_ci else None,
                "arrayminus": [r.rating - r.ci_low for r in ratings] if has_ci else None,
            },
            hovertemplate="%{x}<br>rating %{y:.0f}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Bradley–Terry rating (95% bootstrap CI)", yaxis_title="rating", margin={"t": 50, "b": 10}, height=420
    )
    return fig


def win_rate_heatmap(models: list[str], rates: np.ndarray, names: dict[str, str], order: list[str]) -> go.Figure:
    """Share of head-to-head games the row model won against the column model (ties half)."""
    index = [models.index(m) for m in order]
    matrix = rates[np.ix_(index, index)]
    labels = [names.get(m, m) for m in order]
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
    fig.update_layout(title="Win rate (row beats column)", height=420, margin={"t": 50, "b": 10})
    return fig
