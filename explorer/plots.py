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


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


# ---- similarity heatmaps and the modality gap (explorer/heatmaps.py, explorer/gap.py) ----------
def similarity_heatmap(names: list[str], texts: list[str], cosines: np.ndarray, probabilities: np.ndarray,
                       view: str = "cosine", column: str = "text", title: str | None = None) -> go.Figure:
    """Images x texts (or labels: `column` names them), as raw cosines or per-image softmax
    probabilities; hover shows both.

    Each view has its own stated colour scale: cosines span this matrix's own min..max (image-text
    cosines only, never mixed with image-image ones); probabilities span 0..1.
    """
    if view == "cosine":
        z, custom = cosines, probabilities
        lo, hi = float(np.min(cosines)), float(np.max(cosines))
        colorbar = dict(title="image–text<br>cosine")
        default_title = f"Image × text cosine (colour spans this view's range {lo:.3f} to {hi:.3f})"
        zrange = dict(zmin=lo, zmax=hi)
        hover = "image %{y}<br>" + column + " %{x}<br>cosine %{z:.4f}<br>probability %{customdata:.2%}<extra></extra>"
    else:
        z, custom = probabilities, cosines
        colorbar = dict(title="probability", tickformat=".0%")
        default_title = "Image × text probability (softmax over the texts, per image; colour spans 0 to 100%)"
        zrange = dict(zmin=0, zmax=1)
        hover = "image %{y}<br>" + column + " %{x}<br>probability %{z:.2%}<br>cosine %{customdata:.4f}<extra></extra>"
    fig = go.Figure(go.Heatmap(z=z, x=[_short(t, 40) for t in texts], y=[_short(n) for n in names],
                               customdata=custom, colorscale="Viridis", colorbar=colorbar, hovertemplate=hover,
                               **zrange))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=max(300, 140 + 28 * len(names)), margin=dict(l=10, r=10, t=50, b=10),
                      title_text=title or default_title)
    return fig


_GAP_COLOURS = {"image-image": "#4f6bed", "text-text": "#f08a24", "matched": "#2ca02c", "unmatched": "#9a9a9a"}


def gap_histograms(histograms: dict) -> go.Figure:
    """Overlaid histograms of cosines (image-image, text-text, matched, unmatched pairs), each as the
    share of its own pairs, over shared bin edges; the legend gives how many pairs each counts."""
    fig = go.Figure()
    for name, hist in histograms.items():
        edges, counts = np.asarray(hist.edges), np.asarray(hist.counts)
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts / max(hist.n, 1), width=np.diff(edges),
                             name=f"{name} ({hist.n:,} pairs)", marker_color=_GAP_COLOURS.get(name), opacity=0.6,
                             hovertemplate="cosine %{x:.3f}<br>share %{y:.2%}<extra>" + name + "</extra>"))
    fig.update_layout(barmode="overlay", xaxis_title="cosine", yaxis_title="share of pairs", yaxis_tickformat=".0%",
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.2),
                      title_text="Cosine similarity within and across modalities")
    return fig


def gap_projection(projection, image_names: list[str], texts: list[str], pair_lines=None,
                   thumbnails: list | None = None) -> go.Figure:
    """Images and texts in one 2-D map, coloured by modality, centroids marked, matched pairs joined.

    `image_names` / `texts` are indexed like the full arrays; `projection.image_indices` picks the
    drawn ones. `pair_lines` is `projection.pair_lines(matches)`. `thumbnails` (data: URIs, indexed like
    image_names) ride along as the image points' customdata for the page's hover preview.
    """
    fig = go.Figure()
    if pair_lines is not None and len(pair_lines[0]):
        a, b = pair_lines
        xs = np.column_stack([a[:, 0], b[:, 0], np.full(len(a), np.nan)]).ravel()
        ys = np.column_stack([a[:, 1], b[:, 1], np.full(len(a), np.nan)]).ravel()
        fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line=dict(color="rgba(120,120,120,0.25)", width=1),
                                   name="matched pairs", hoverinfo="skip"))
    for label, xy, idx, names, colour in (
            ("images", projection.xy_image, projection.image_indices, image_names, _GAP_COLOURS["image-image"]),
            ("texts", projection.xy_text, projection.text_indices, texts, _GAP_COLOURS["text-text"])):
        previews = None
        if label == "images" and thumbnails:
            previews = [(thumbnails[i] if i < len(thumbnails) else None) or "" for i in idx]
        fig.add_trace(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", name=f"{label} ({len(idx):,})",
                                   marker=dict(color=colour, size=6, opacity=0.7), customdata=previews,
                                   text=[names[i] for i in idx], hovertemplate="%{text}<extra>" + label + "</extra>"))
    for label, centre, colour in (("image centroid", projection.centroid_image, _GAP_COLOURS["image-image"]),
                                  ("text centroid", projection.centroid_text, _GAP_COLOURS["text-text"])):
        fig.add_trace(go.Scatter(x=[centre[0]], y=[centre[1]], mode="markers", name=label,
                                 marker=dict(symbol="x", size=16, color=colour, line=dict(width=2, color="black"))))
    title = f"Joint {projection.method.upper()} map of image and text embeddings"
    if projection.explained_variance:
        title += " (axes explain " + ", ".join(f"{v:.0%}" for v in projection.explained_variance) + " of variance)"
    if projection.sampled:
        title += f"<br>showing a sample of {projection.sample_size:,} of {projection.total_points:,} points"
    fig.update_layout(title_text=title, margin=dict(l=10, r=10, t=70, b=10), legend=dict(orientation="h", y=-0.15))
    fig.update_yaxes(scaleanchor="x")
    return fig


def shift_curve(points: list, current: float | None = None, metric: str = "accuracy") -> go.Figure:
    """What shifting along the gap does: recall@1 (zero-shot accuracy with class texts, or
    matched-text retrieval) and the remaining gap length, against the shift lam."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    lams = [p.lam for p in points]
    if any(p.recall_at_1 is not None for p in points):
        fig.add_trace(go.Scatter(x=lams, y=[p.recall_at_1 for p in points], mode="lines+markers", name=metric,
                                 hovertemplate="λ %{x:.2f}<br>" + metric + " %{y:.2%}<extra></extra>"),
                      secondary_y=False)
    fig.add_trace(go.Scatter(x=lams, y=[p.gap_length for p in points], mode="lines", name="gap length",
                             line=dict(dash="dash"), hovertemplate="λ %{x:.2f}<br>gap %{y:.3f}<extra></extra>"),
                  secondary_y=True)
    if current is not None:
        fig.add_vline(x=current, line_color="black", line_width=1)
    fig.update_xaxes(title_text="shift λ (0 = as trained, 1 = centroids meet before renormalising)")
    fig.update_yaxes(title_text=metric, tickformat=".0%", range=[0, 1.02], secondary_y=False)
    fig.update_yaxes(title_text="gap length", rangemode="tozero", secondary_y=True)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), title_text="Shifting along the gap (Liang et al. 2022)")
    return fig


# ---- prompt lab (explorer/evaluate.py) -----------------------------------------------------------
def confusion_heatmap(class_names: list[str], confusion: np.ndarray) -> go.Figure:
    """True class (rows) x predicted class (columns). Colour is the share of each true class's images
    (so classes of different sizes compare); the cell text and hover give the raw counts."""
    counts = np.asarray(confusion)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    names = [_short(n, 24) for n in class_names]
    text = [[str(int(v)) if v else "" for v in row] for row in counts]
    fig = go.Figure(go.Heatmap(
        z=share, x=names, y=names, text=text, texttemplate="%{text}" if len(names) <= 30 else None,
        customdata=counts, colorscale="Blues", zmin=0, zmax=1, colorbar=dict(title="share of<br>true class",
                                                                              tickformat=".0%"),
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} image(s), %{z:.0%} of the class<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text="true class")
    fig.update_xaxes(title_text="predicted class", tickangle=-45)
    side = max(360, 160 + 22 * len(names))
    fig.update_layout(height=side, margin=dict(l=10, r=10, t=40, b=10),
                      title_text="Confusion matrix (rows: true class; colour: share of the row)")
    return fig
