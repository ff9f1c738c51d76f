"""Plotly figure builders: arrays in, go.Figure out. Layout only; every number comes from the core."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

MAX_BAR_PANELS = 12


def probability_bars(names: list[str], ranked: list[list[tuple[str, float, float]]]) -> go.Figure:
    """One horizontal bar panel per image: top-k probabilities, each bar annotated with its cosine."""
    names, ranked = names[:MAX_BAR_PANELS], ranked[:MAX_BAR_PANELS]
    columns = 1 if len(names) == 1 else 2
    rows = max(1, (len(names) + columns - 1) // columns)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[_short(n) for n in names],
                        horizontal_spacing=0.25, vertical_spacing=min(0.12, 0.5 / rows))
    for i, entries in enumerate(ranked):
        labels = [label for label, _, _ in entries][::-1]
        probs = [p for _, p, _ in entries][::-1]
        cosines = [c for _, _, c in entries][::-1]
        fig.add_trace(go.Bar(
            x=probs, y=labels, orientation="h", marker_color="#4f6bed",
            text=[f"{p:.1%} · cos {c:.3f}" for p, c in zip(probs, cosines)], textposition="auto",
            customdata=cosines, hovertemplate="%{y}<br>probability %{x:.2%}<br>cosine %{customdata:.4f}<extra></extra>",
            showlegend=False), row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_layout(height=max(260, 60 + rows * (40 + 28 * max(len(r) for r in ranked))),
                      margin=dict(l=10, r=10, t=40, b=10), title_text="Top labels per image (probability · raw cosine)")
    return fig


def probability_heatmap(names: list[str], labels: list[str], probabilities: np.ndarray,
                        cosines: np.ndarray) -> go.Figure:
    """Images x labels softmax probabilities; hover shows the cosine too."""
    fig = go.Figure(go.Heatmap(
        z=probabilities, x=labels, y=[_short(n) for n in names], customdata=cosines,
        colorscale="Viridis", zmin=0, zmax=1, colorbar=dict(title="probability", tickformat=".0%"),
        hovertemplate="image %{y}<br>label %{x}<br>probability %{z:.2%}<br>cosine %{customdata:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=max(300, 120 + 28 * len(names)), margin=dict(l=10, r=10, t=40, b=10),
                      title_text="Probability per image and label (softmax over the labels, per image)")
    return fig


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]
