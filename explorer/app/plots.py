"""Plotly figure builders: arrays in, go.Figure out. Layout only; every number comes from the core."""
from __future__ import annotations

import textwrap
from collections import Counter

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.inputs.sources import unique_names

MAX_BAR_PANELS = 12
# Plotly never wraps a title: at 1280 px a results column draws a plot about 650 px wide, room for ~60
# characters of a title and ~90 of its smaller sub-lines. Longer lines are wrapped at words (`titled`).
TITLE_CHARS, SUBTITLE_CHARS = 60, 88
# The title starts TITLE_PAD_PX down: gradio floats the gr.Plot's label over the figure's top-left corner
# (its bottom 35 px down; plotly draws a title's first line some 15 px above its pad).
TITLE_LINE_PX, SUBTITLE_LINE_PX, TITLE_PAD_PX = 24, 17, 54
SUBPLOT_TITLE_PX = 28  # room under the title for the first row's subplot titles
BAR_GAP_PX = 64        # between two rows of bar panels: the upper row's tick labels, then the lower title


def titled(fig: go.Figure, title: str, details=(), room_below: int = 0, narrow: bool = False) -> go.Figure:
    """Give `fig` the title `title` with one smaller line per detail, each wrapped to fit the plot
    (TITLE_CHARS, SUBTITLE_CHARS; `narrow`: a plot in a page's narrower left column, two thirds of
    that), hung from the top of the figure, with a top margin (and a height) grown to hold every line
    and `room_below` pixels under them (subplot titles)."""
    share = 2 / 3 if narrow else 1
    lines = textwrap.wrap(title, int(TITLE_CHARS * share)) or [""]
    subs = [line for detail in details if detail
            for line in textwrap.wrap(detail, int(SUBTITLE_CHARS * share))]
    text = "<br>".join(lines + [f"<sub>{line}</sub>" for line in subs])
    top = TITLE_PAD_PX - 12 + TITLE_LINE_PX * len(lines) + SUBTITLE_LINE_PX * len(subs) + room_below + 8
    grown = top - (fig.layout.margin.t if fig.layout.margin.t is not None else 0)
    fig.update_layout(title_text=text, title_x=0.02, title_xanchor="left", title_yref="container", title_y=1,
                      title_yanchor="top", title_pad_t=TITLE_PAD_PX, margin_t=top)
    if fig.layout.height is not None and grown > 0:
        fig.update_layout(height=fig.layout.height + grown)
    return fig


def probability_bars(names: list[str], ranked: list[list[tuple[str, float, float]]],
                     rule: str | None = None) -> go.Figure:
    """One horizontal bar panel per image: top-k probabilities, each bar annotated with its cosine.
    The first MAX_BAR_PANELS images get a panel; above that the title says how many of how many.
    Rows of panels are BAR_GAP_PX apart, so a panel's title never meets the axis above it."""
    total = len(names)
    names, ranked = names[:MAX_BAR_PANELS], ranked[:MAX_BAR_PANELS]
    columns = 1 if len(names) == 1 else 2
    rows = max(1, (len(names) + columns - 1) // columns)
    panel = 40 + 28 * max(len(r) for r in ranked)
    area = rows * panel + (rows - 1) * BAR_GAP_PX
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[_short(n) for n in names],
                        horizontal_spacing=0.25, vertical_spacing=BAR_GAP_PX / area if rows > 1 else 0.0)
    for i, entries in enumerate(ranked):
        labels = [label for label, _, _ in entries][::-1]
        probs = [p for _, p, _ in entries][::-1]
        cosines = [c for _, _, c in entries][::-1]
        fig.add_trace(
            go.Bar(x=probs, y=labels, orientation="h", marker_color="#4f6bed",
                   text=[f"{p:.1%} · cos {c:.3f}"
                         for p, c in zip(probs, cosines)], textposition="auto", customdata=cosines,
                   hovertemplate="%{y}<br>probability %{x:.2%}<br>cosine %{customdata:.4f}<extra></extra>",
                   showlegend=False), row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_layout(height=max(260, area + 40), margin=dict(l=10, r=10, t=0, b=30))
    details = []
    if rule:  # which probabilities these are (explorer/probability.py)
        details.append("probability: " + PROBABILITY_RULES.get(rule, rule).format("label"))
    if total > len(names):  # a cap is never silent
        details.append(cap_note(len(names), total, "images", "every image is in the table and the heatmap"))
    return titled(fig, "Top labels per image (probability · raw cosine)", details,
                  room_below=SUBPLOT_TITLE_PX)


def cap_note(shown: int, total: int, what: str, how: str = "") -> str:
    """'showing 12 of 20 images (the first 12; ...)': what a capped view says about itself."""
    return f"showing {shown:,} of {total:,} {what} (the first {shown:,}{'; ' + how if how else ''})"


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def axis_labels(names: list[str], limit: int = 28) -> list[str]:
    """Names shortened for an axis without ever making two equal: plotly draws equal category
    labels as one row (the last one's values). Names that would collide once shortened keep their
    full text; names equal to begin with are numbered (0.png, 0.png (2))."""
    short = [_short(n, limit) for n in names]
    counts = Counter(short)
    return unique_names([n if counts[s] > 1 else s for n, s in zip(names, short)])


MAX_CELL_TEXT = 20  # a heatmap up to this many rows and columns shows its numbers in the cells


def cell_text(view: str, rows: int, columns: int) -> str | None:
    """Plotly texttemplate for a heatmap's cells where they fit: cosines to 2 decimals,
    probabilities as whole percents; None (hover only) for bigger matrices."""
    if rows > MAX_CELL_TEXT or columns > MAX_CELL_TEXT:
        return None
    return "%{z:.2f}" if view == "cosine" else "%{z:.0%}"


# ---- similarity heatmaps and the modality gap (explorer/heatmaps.py, explorer/gap.py) ----------
# How the probabilities were made (explorer/probability.py), for titles; {} is "text" or "label".
PROBABILITY_RULES = {"softmax": "softmax over the {}s, per image", "sigmoid": "sigmoid per image and {}, "
                     "the model's own bias: each judged on its own"}


def similarity_heatmap(names: list[str], texts: list[str], cosines: np.ndarray, probabilities: np.ndarray,
                       view: str = "cosine", column: str = "text", title: str | None = None,
                       rule: str = "softmax", subtitle: str | None = None) -> go.Figure:
    """Images x texts (or labels: `column` names them), as raw cosines or probabilities by the
    model's `rule` ("softmax" over the texts per image, or "sigmoid" per pair); hover shows both.
    `title` and `subtitle` replace the default title and its smaller line (how the colour is made).

    Each view has its own stated colour scale: cosines span this matrix's own min..max (image-text
    cosines only, never mixed with image-image ones); probabilities span 0..1.
    """
    if view == "cosine":
        z, custom = cosines, probabilities
        lo, hi = float(np.min(cosines)), float(np.max(cosines))
        colorbar = dict(title="image–text<br>cosine")
        default_title = ("Image × text cosine", f"colour spans this view's range {lo:.3f} to {hi:.3f}")
        zrange = dict(zmin=lo, zmax=hi)
        hover = ("image %{y}<br>" + column
                 + " %{x}<br>cosine %{z:.4f}<br>probability %{customdata:.2%}<extra></extra>")
    else:
        z, custom = probabilities, cosines
        colorbar = dict(title="probability", tickformat=".0%")
        default_title = ("Image × text probability",
                         PROBABILITY_RULES.get(rule, rule).format(column) + "; colour spans 0 to 100%")
        zrange = dict(zmin=0, zmax=1)
        hover = ("image %{y}<br>" + column
                 + " %{x}<br>probability %{z:.2%}<br>cosine %{customdata:.4f}<extra></extra>")
    fig = go.Figure(
        go.Heatmap(z=z, x=axis_labels(texts, 40), y=axis_labels(names), customdata=custom,
                   colorscale="Viridis", colorbar=colorbar, hovertemplate=hover,
                   texttemplate=cell_text(view, len(names), len(texts)), **zrange))
    fig.update_xaxes(type="category")  # never a number or date axis that would merge '1' and '01'
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(height=max(300, 140 + 28 * len(names)), margin=dict(l=10, r=10, t=50, b=10))
    return titled(fig, title or default_title[0], [subtitle if title else default_title[1]])


_GAP_COLOURS = {
    "image-image": "#4f6bed", "text-text": "#f08a24", "matched": "#2ca02c", "unmatched": "#9a9a9a"
}


def gap_histograms(histograms: dict) -> go.Figure:
    """Overlaid histograms of cosines (image-image, text-text, matched, unmatched pairs), each as the
    share of its own pairs, over shared bin edges; the legend gives how many pairs each counts."""
    fig = go.Figure()
    for name, hist in histograms.items():
        edges, counts = np.asarray(hist.edges), np.asarray(hist.counts)
        fig.add_trace(
            go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts / max(hist.n, 1), width=np.diff(edges),
                   name=f"{name} ({hist.n:,} pairs)", marker_color=_GAP_COLOURS.get(name), opacity=0.6,
                   hovertemplate="cosine %{x:.3f}<br>share %{y:.2%}<extra>" + name + "</extra>"))
    fig.update_layout(barmode="overlay", xaxis_title="cosine", yaxis_title="share of pairs",
                      yaxis_tickformat=".0%", margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", y=-0.2))
    return titled(fig, "Cosine similarity within and across modalities")


def gap_projection(projection, image_names: list[str], texts: list[str], pair_lines=None,
                   thumbnails: list | None = None) -> go.Figure:
    """Images and texts in one 2-D map, coloured by modality, centroids marked, matched pairs joined.

    `image_names` / `texts` are indexed like the full arrays; `projection.image_indices` picks the
    drawn ones. `pair_lines` is `projection.pair_lines(matches)`. `thumbnails` (data: URIs, indexed like
    image_names) ride along as the image points' customdata for the page's hover preview. Each point's
    id is "i<index>" or "t<index>" into the full arrays: assets/gap_select.js sends the ids of a box or
    lasso selection back to the tab.
    """
    fig = go.Figure()
    if pair_lines is not None and len(pair_lines[0]):
        a, b = pair_lines
        xs = np.column_stack([a[:, 0], b[:, 0], np.full(len(a), np.nan)]).ravel()
        ys = np.column_stack([a[:, 1], b[:, 1], np.full(len(a), np.nan)]).ravel()
        fig.add_trace(
            go.Scattergl(x=xs, y=ys, mode="lines", line=dict(color="rgba(120,120,120,0.25)", width=1),
                         name="matched pairs", hoverinfo="skip"))
    for label, xy, idx, names, colour in (("images", projection.xy_image, projection.image_indices,
                                           image_names, _GAP_COLOURS["image-image"]),
                                          ("texts", projection.xy_text, projection.text_indices, texts,
                                           _GAP_COLOURS["text-text"])):
        ids = [f"{label[0]}{int(i)}" for i in idx]
        previews = None
        if label == "images" and thumbnails:
            previews = [(thumbnails[i] if i < len(thumbnails) else None) or "" for i in idx]
        fig.add_trace(
            go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", name=f"{label} ({len(idx):,})",
                         marker=dict(color=colour, size=6, opacity=0.7), customdata=previews, ids=ids,
                         text=[names[i] for i in idx], hovertemplate="%{text}<extra>" + label + "</extra>"))
    for label, centre, colour in (("image centroid", projection.centroid_image, _GAP_COLOURS["image-image"]),
                                  ("text centroid", projection.centroid_text, _GAP_COLOURS["text-text"])):
        fig.add_trace(
            go.Scatter(x=[centre[0]], y=[centre[1]], mode="markers", name=label,
                       marker=dict(symbol="x", size=16, color=colour, line=dict(width=2, color="black"))))
    _projection_layout(fig, projection)
    fig.update_layout(modebar_add=["select2d",
                                   "lasso2d"])  # box and lasso select list the points under the map
    return fig


_AXIS_NAMES = {"gap": ("along the gap (image − text centroid)", "main direction of the rest"),
               "pca": ("PC 1", "PC 2"), "umap": ("UMAP 1", "UMAP 2")}


def _projection_layout(fig: go.Figure, projection) -> None:
    """Title (what the map is, its sample, its shift) and axis titles (with each axis' share of variance)."""
    name = {"gap": "gap-aligned", "pca": "PCA"}.get(projection.method, projection.method.upper())
    title = f"Joint {name} map of image and text embeddings"
    explained = projection.explained_variance or [None, None]
    lines = []
    if projection.method == "gap":
        lines.append(f"centroids {projection.centroid_offset[0]:.3f} apart along the gap axis")
    elif projection.explained_variance:
        title += " (axes explain " + ", ".join(f"{v:.0%}"
                                               for v in projection.explained_variance) + " of variance)"
    if projection.lam:
        lines.append(f"shifted by λ = {projection.lam:.2f}" + (" on the axes of the unshifted embeddings"
                                                             if projection.fixed_axes else ""))
    if projection.sampled:
        lines.append(f"showing a sample of {projection.sample_size:,} of {projection.total_points:,} points")
    fig.update_layout(margin=dict(l=10, r=10, b=10), legend=dict(orientation="h", y=-0.15))
    # Room for all three sub-lines whichever are shown: the plot keeps its size (and a fixed frame its
    # ranges, through scaleanchor) as the shift slider adds or drops one.
    titled(fig, title, lines, room_below=SUBTITLE_LINE_PX * max(0, 3 - len(lines)))
    for axis, label, share in zip((fig.update_xaxes, fig.update_yaxes), _AXIS_NAMES[projection.method],
                                  explained):
        axis(title_text=label + ("" if share is None else f" · {share:.0%} of variance"))
    frame = getattr(projection, "frame", None)
    if frame is not None:  # fixed across the shift slider, so the points are seen to move
        fig.update_xaxes(range=list(frame[0]), autorange=False)
        fig.update_yaxes(range=list(frame[1]), autorange=False)
    fig.update_yaxes(scaleanchor="x")


def shift_curve(points: list, current: float | None = None, metric: str = "accuracy") -> go.Figure:
    """What shifting along the gap does: recall@1 (zero-shot accuracy with class texts, or
    matched-text retrieval) and the remaining gap length, against the shift lam."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    lams = [p.lam for p in points]
    if any(p.recall_at_1 is not None for p in points):
        fig.add_trace(go.Scatter(x=lams, y=[p.recall_at_1 for p in points], mode="lines+markers", name=metric,
                                 hovertemplate="λ %{x:.2f}<br>" + metric + " %{y:.2%}<extra></extra>"),
                      secondary_y=False)
    fig.add_trace(
        go.Scatter(x=lams, y=[p.gap_length for p in points], mode="lines", name="gap length",
                   line=dict(dash="dash"), hovertemplate="λ %{x:.2f}<br>gap %{y:.3f}<extra></extra>"),
        secondary_y=True)
    if current is not None:
        fig.add_vline(x=current, line_color="black", line_width=1)
    fig.update_xaxes(title_text="shift λ (0 = as trained, 1 = centroids meet before renormalising)")
    fig.update_yaxes(title_text=metric, tickformat=".0%", range=[0, 1.02], secondary_y=False)
    fig.update_yaxes(title_text="gap length", rangemode="tozero", secondary_y=True)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    return titled(fig, "Shifting along the gap (Liang et al. 2022)")


# ---- prompt lab (explorer/evaluate.py) -----------------------------------------------------------
def confusion_heatmap(class_names: list[str], confusion: np.ndarray) -> go.Figure:
    """True class (rows) x predicted class (columns). Colour is the share of each true class's images
    (so classes of different sizes compare); the cell text and hover give the raw counts."""
    counts = np.asarray(confusion)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    names = [_short(n, 24) for n in class_names]
    text = [[str(int(v)) if v else "" for v in row] for row in counts]
    fig = go.Figure(
        go.Heatmap(
            z=share, x=names, y=names, text=text, texttemplate="%{text}" if len(names) <= 30 else None,
            customdata=counts, colorscale="Blues", zmin=0, zmax=1,
            colorbar=dict(title=dict(text="share of<br>true class", side="right"), tickformat=".0%"),
            hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} image(s), %{z:.0%} of the class"
            "<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text="true class")
    fig.update_xaxes(title_text="predicted class", tickangle=-45)
    side = max(360, 160 + 22 * len(names))
    fig.update_layout(height=side, margin=dict(l=10, r=10, t=40, b=10))
    return titled(fig, "Confusion matrix", ["rows: true class; colour: share of the row"], narrow=True)


# ---- calibration (explorer/calibration.py) -------------------------------------------------------
def reliability_diagram(panels: list[tuple[str, object]], confidence_label: str = "confidence") -> go.Figure:
    """Reliability diagrams side by side, one per (title, calibration.Reliability): per equal-width
    confidence bin, a bar of the share of correct top labels, its image count written on it, a
    marker at the bin's mean confidence, and the diagonal a calibrated model would follow."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels],
                        horizontal_spacing=0.08)
    for i, (_, rel) in enumerate(panels, start=1):
        edges = np.asarray(rel.edges)
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        filled = np.asarray(rel.counts) > 0
        fig.add_trace(
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#9a9a9a", dash="dash"),
                       name="calibrated (accuracy = confidence)", showlegend=i == 1, hoverinfo="skip"), row=1,
            col=i)
        fig.add_trace(
            go.Bar(
                x=centres[filled], y=np.asarray(rel.accuracy)[filled], width=width[filled] * 0.95,
                marker_color="#4f6bed", name="accuracy in the bin", showlegend=i == 1,
                text=[f"n={int(c)}" for c in np.asarray(rel.counts)[filled]], textposition="outside",
                textangle=-90, cliponaxis=False, constraintext="none",  # upright: never over a neighbour's
                customdata=np.stack([np.asarray(rel.counts)[filled],
                                     np.asarray(rel.confidence)[filled]], axis=-1),
                hovertemplate="confidence bin around %{x:.0%}<br>accuracy %{y:.1%}<br>mean confidence "
                "%{customdata[1]:.1%}<br>%{customdata[0]} image(s)<extra></extra>"), row=1, col=i)
        fig.add_trace(go.Scatter(x=np.asarray(rel.confidence)[filled], y=np.asarray(rel.confidence)[filled],
                                 mode="markers", marker=dict(color="#f08a24", size=7, symbol="diamond"),
                                 name="mean confidence in the bin", showlegend=i == 1, hoverinfo="skip"),
                      row=1, col=i)
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title_text=confidence_label)
    ticks = dict(range=[0, 1.25], tickformat=".0%", tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0])  # room for counts
    fig.update_yaxes(title_text="accuracy", col=1, **ticks)
    fig.update_yaxes(**ticks)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10), bargap=0,
                      legend=dict(orientation="h", y=-0.22))
    return titled(fig, "Reliability diagram", room_below=SUBPLOT_TITLE_PX)


# ---- teach by example (explorer/science/fewshot_experiment.py) ---------------------------------
def fewshot_shots_curve(shots: list[int], mean: dict, std: dict, seeds: int) -> go.Figure:
    """Top-1 on the held-out images against shots per class, one line per method, error bars one
    standard deviation over the seeds (fewshot_experiment.ShotsCurve's fields)."""
    fig = go.Figure()
    for method, values in mean.items():
        dash = "dash" if method == "zero-shot" else None
        fig.add_trace(
            go.Scatter(
                x=list(shots), y=list(values), mode="lines+markers", name=method, line=dict(dash=dash),
                error_y=dict(type="data", array=list(std[method]), visible=True, thickness=1.2,
                             width=4), customdata=list(std[method]), hovertemplate=method +
                "<br>%{x} shot(s) per class<br>top-1 %{y:.1%} ± %{customdata:.1%}<extra></extra>"))
    fig.update_xaxes(type="log", tickvals=list(shots), ticktext=[str(s) for s in shots],
                     title_text="shots per class (log scale)")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title_text="top-1 on the held-out images")
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.25))
    return titled(fig, "Shots curve", [f"mean ± std over {seeds} seed(s) of the shots"])


# ---- the folder map (Map tab: explorer/app/ui/map_tab.py) ------------------------------------------------
# Category colours: plotly's Plotly (10) then Alphabet (26) sequences; more categories cycle through them.
MAP_PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880",
               "#FF97FF", "#FECB52", "#AA0DFE", "#3283FE", "#85660D", "#782AB6", "#565656", "#1C8356",
               "#16FF32", "#F7E1A0", "#E2E2E2", "#1CBE4F", "#C4451C", "#DEA0FD", "#FE00FA", "#325A9B",
               "#FEAF16", "#F8A19F", "#90AD1C", "#F6222E", "#1CFFCE", "#2ED9FF", "#B10DA1", "#C075A6")
MAP_NONE = "#BBBBBB"          # a point of no category ("none of these", HDBSCAN's noise)
MAP_DENSITY_AT = 5_000        # from this many points a density underlay is drawn and the markers shrink
MAP_HOVER_TEXT_AT = 20_000    # up to this many points each carries its name for plotly's hover label
MAP_LEGEND_MAX = 40           # categories named in the legend (the rest: "… N more")
MAP_SCORE_SCALE = "Viridis"


def map_point_colours(values, kind: str = "category", categories: int | None = None) -> dict:
    """The marker colours of the map's points, as assets/map.js sets them in place: `kind` "category"
    (values: a category number per point, -1 for none; `categories`: how many there are) -> the numbers
    (small integers: a few bytes a point) over a stepped colour scale of MAP_PALETTE, none in MAP_NONE;
    "score" (values: a number per point) -> the numbers over MAP_SCORE_SCALE, with its colour bar."""
    if kind == "score":
        scores = np.round(np.asarray(values, dtype=np.float32), 4)
        return {"color": scores, "colorscale": MAP_SCORE_SCALE, "showscale": True, "cmin": None, "cmax": None}
    numbers = np.asarray(values, dtype=np.int64)
    count = int(categories if categories is not None else (numbers.max() + 1 if numbers.size else 0))
    count = max(count, 1)
    shown = np.where(numbers < 0, count, numbers).astype(np.int16 if count < 32_000 else np.int32)
    bands = [MAP_PALETTE[i % len(MAP_PALETTE)] for i in range(count)] + [MAP_NONE]
    scale = [[edge, colour] for i, colour in enumerate(bands)
             for edge in (i / len(bands), (i + 1) / len(bands))]
    return {"color": shown, "colorscale": scale, "showscale": False, "cmin": -0.5, "cmax": count + 0.5}


def map_patch_colours(colours) -> list:
    """The points' marker colours as a recolour patch sends them (JSON): category numbers as integers,
    scores to 3 decimals (float32's full repr is about 20 bytes a point; a colour shows far less)."""
    values = np.asarray(colours)
    if values.dtype.kind == "f":
        return np.round(values.astype(np.float64), 3).tolist()
    return values.tolist()


def map_counts(codes, categories: int) -> list[int]:
    """Points per category (codes: a category number per point, -1 for none), then the count of none."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.bincount(np.where(codes < 0, categories, codes), minlength=categories + 1).tolist()


def map_legend(categories: list[str], counts: list[int] | None = None, none: str = "none") -> list[dict]:
    """[{"name", "color"}] of the first MAP_LEGEND_MAX categories (with their counts: map_counts, whose
    last is the points of no category, named `none` when there are any), then one for the rest: the
    map's legend, drawn as empty traces after the points."""
    shown = []
    for i, name in enumerate(categories[:MAP_LEGEND_MAX]):
        count = f" ({counts[i]:,})" if counts is not None and i < len(counts) else ""
        shown.append({"name": _short(str(name), 32) + count, "color": MAP_PALETTE[i % len(MAP_PALETTE)]})
    if len(categories) > MAP_LEGEND_MAX:
        shown.append({"name": f"… {len(categories) - MAP_LEGEND_MAX:,} more", "color": MAP_NONE})
    if counts is not None and len(counts) > len(categories) and counts[len(categories)]:
        shown.append({"name": f"{none} ({counts[len(categories)]:,})", "color": MAP_NONE})
    return shown


def map_figure(xy: np.ndarray, names: list[str], colours: dict, legend: list[dict], *, method: str,
               seq: int = 0, title: str = "", details=()) -> go.Figure:
    """The folder map: one WebGL trace of every point (row i is the index's image names[i]; the page
    reads a hovered or selected point's number as its pointIndex), coloured by `colours`
    (map_point_colours), the `legend` as empty traces after it, and from MAP_DENSITY_AT points a density
    underlay (contours of point counts) with smaller markers. `seq` numbers this drawing: the page
    sends it back with a point, so an answer for a map no longer shown is told apart."""
    xy = np.asarray(xy, dtype=np.float32).reshape(-1, 2)
    many = len(xy) >= MAP_DENSITY_AT
    fig = go.Figure()
    marker = dict(size=3 if many else 7, opacity=0.6 if many else 0.85, line=dict(width=0), **colours)
    hover = dict(text=list(names), hovertemplate="%{text}<extra></extra>") \
        if len(xy) <= MAP_HOVER_TEXT_AT else dict(hoverinfo="none")
    fig.add_trace(go.Scattergl(x=np.round(xy[:, 0], 4), y=np.round(xy[:, 1], 4), mode="markers",
                               name="images", marker=marker, showlegend=False, meta="map-points",
                               unselected=dict(marker=dict(opacity=0.3)), **hover))
    if many:
        fig.add_trace(_density(xy))
    for entry in legend:
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name=entry["name"],
                                   marker=dict(color=entry["color"], size=9), meta="map-legend",
                                   hoverinfo="skip"))
    label = {"pca": "PCA", "umap": "UMAP"}.get(method, method.upper())
    fig.update_xaxes(title_text=f"{label} 1", showticklabels=False, zeroline=False)
    fig.update_yaxes(title_text=f"{label} 2", showticklabels=False, zeroline=False, scaleanchor="x")
    fig.update_layout(height=640, margin=dict(l=10, r=10, b=10), dragmode="lasso", meta={"seq": int(seq)},
                      legend=dict(orientation="v", x=1.02, y=1, itemsizing="constant"),
                      uirevision=f"map-{seq}", modebar_add=["select2d", "lasso2d"])
    return titled(fig, title or f"{label} map of {len(xy):,} images", details)


MAP_DENSITY_BINS = 64


def _density(xy: np.ndarray) -> go.Contour:
    """Contour lines of the points' counts on a MAP_DENSITY_BINS grid (a few KB, whatever the points)."""
    counts, xs, ys = np.histogram2d(xy[:, 0], xy[:, 1], bins=MAP_DENSITY_BINS)
    return go.Contour(z=counts.T, x=(xs[:-1] + xs[1:]) / 2, y=(ys[:-1] + ys[1:]) / 2, colorscale="Greys",
                      showscale=False, contours=dict(coloring="lines"), line=dict(width=1), opacity=0.55,
                      hoverinfo="skip", ncontours=12, name="density", meta="map-density", showlegend=False)


def map_rows(layout_names: list[str], xy: np.ndarray, names: list[str]) -> np.ndarray:
    """The layout's coordinates (rows following `layout_names`) in the order of `names`: [len(names), 2],
    NaN (not drawn) for a name the layout lacks."""
    xy = np.asarray(xy, dtype=np.float32).reshape(-1, 2)
    if list(layout_names) == list(names):
        return xy
    row = {name: i for i, name in enumerate(layout_names)}
    out = np.full((len(names), 2), np.nan, dtype=np.float32)
    found = [(i, row[n]) for i, n in enumerate(names) if n in row]
    if found:
        mine, theirs = map(list, zip(*found))
        out[mine] = xy[theirs]
    return out


# ---- probes (explorer/science/counting.py, binding.py, synonyms.py, loki.py) -----------------------
MAX_COUNT_LINES = 12  # unlabelled count curves: one line per image up to this many, then the mean only


def count_curves(counts: list[int], probabilities: dict, true=None, names: list[str] | None = None,
                 rule: str = "softmax") -> go.Figure:
    """The probability the model gives each count (1..10), one panel per prompt form (words, digits).
    Labelled (`true`: each image's count): one line per true count, the mean over its images, with a
    marker at the true count. Unlabelled: one line per image (the first MAX_COUNT_LINES), and their mean."""
    forms = list(probabilities)
    fig = make_subplots(rows=1, cols=len(forms), subplot_titles=[f"prompts in {f}" for f in forms],
                        shared_yaxes=True, horizontal_spacing=0.06)
    for col, form in enumerate(forms, start=1):
        p = np.asarray(probabilities[form], dtype=float).reshape(-1, len(counts))
        for k, (name, line) in enumerate(_count_lines(p, counts, true, names)):
            colour = MAP_PALETTE[k % len(MAP_PALETTE)]
            hover = name + "<br>count %{x}<br>probability %{y:.1%}<extra></extra>"
            fig.add_trace(go.Scatter(x=counts, y=line, mode="lines+markers", name=name, legendgroup=name,
                                     showlegend=col == 1, line=dict(color=colour), hovertemplate=hover),
                          row=1, col=col)
    fig.update_xaxes(title_text="count in the prompt", tickvals=list(counts))
    fig.update_yaxes(title_text="probability", tickformat=".0%", rangemode="tozero", col=1)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.25))
    how = PROBABILITY_RULES.get(rule, rule).format("count")
    detail = "lines: the mean over the images of each true count" if true is not None else \
        "lines: each image (its file name), and the mean of all"
    return titled(fig, "What count the model reads", [f"{how}; {detail}"], room_below=SUBPLOT_TITLE_PX)


def _count_lines(p: np.ndarray, counts: list[int], true, names) -> list[tuple[str, list[float]]]:
    if true is not None:
        true = np.asarray(true)
        return [(f"{c} in the image (n={int((true == c).sum())})", p[true == c].mean(axis=0).tolist())
                for c in counts if (true == c).any()]
    names = list(names or [f"image {i + 1}" for i in range(len(p))])
    lines = [(_short(n, 24), row.tolist()) for n, row in zip(names[:MAX_COUNT_LINES], p)]
    if len(p) > 1:
        lines.append((f"mean of {len(p)} images", p.mean(axis=0).tolist()))
    return lines


def attribute_heatmap(attributes: list[str], objects: list[str], probabilities, names: list[str],
                      rule: str = "softmax") -> go.Figure:
    """Attributes (rows) x objects (columns): the probability of each "a {attribute} {object}" cell by the
    model's rule over all cells, the mean over the images (one image: its own)."""
    p = np.asarray(probabilities, dtype=float).reshape(len(names), len(attributes), len(objects))
    z = p.mean(axis=0)
    fig = go.Figure(go.Heatmap(
        z=z, x=axis_labels(objects), y=axis_labels(attributes), colorscale="Viridis", zmin=0,
        zmax=max(float(z.max()), 1e-9), colorbar=dict(title="probability", tickformat=".0%"),
        texttemplate=cell_text("probability", len(attributes), len(objects)),
        hovertemplate="%{y} %{x}<br>probability %{z:.1%}<extra></extra>"))
    fig.update_xaxes(type="category", title_text="object")
    fig.update_yaxes(type="category", autorange="reversed", title_text="attribute")
    fig.update_layout(height=max(320, 160 + 30 * len(attributes)), margin=dict(l=10, r=10, t=50, b=10))
    over = f"the mean over {len(names)} images" if len(names) > 1 else names[0]
    how = PROBABILITY_RULES.get(rule, rule).format("cell")
    return titled(fig, "Attributes × objects", [f"{how}; {over}; chance {1 / z.size:.1%} a cell"])


def binding_bars(names: list[str], true_cosine, swapped_cosine, wins) -> go.Figure:
    """Per image, the cosine of its bound prompt minus that of the swapped one ("a blue circle and a red
    square" for "a red circle and a blue square"): above 0 the model told the binding apart."""
    margin = np.asarray(true_cosine, dtype=float) - np.asarray(swapped_cosine, dtype=float)
    wins = np.asarray(wins, dtype=bool)
    colours = np.where(wins, "#2a9d8f", np.where(margin == 0, "#9a9a9a", "#e76f51"))
    fig = go.Figure(go.Bar(
        x=axis_labels(names), y=margin, marker_color=colours.tolist(),
        customdata=np.stack([np.asarray(true_cosine, float), np.asarray(swapped_cosine, float)], axis=-1),
        hovertemplate="%{x}<br>bound %{customdata[0]:.4f}<br>swapped %{customdata[1]:.4f}"
        "<br>difference %{y:+.4f}<extra></extra>"))
    fig.add_hline(y=0, line_color="black", line_width=1)
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(title_text="bound − swapped cosine")
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=50, b=10))
    return titled(fig, "Binding: the bound prompt against its swap",
                  [f"green: the bound prompt wins ({int(wins.sum())} of {len(wins)}); red: the swap wins"])


def frequency_scatter(points: list[tuple[str, str, float | None, float]],
                      score: str = "accuracy") -> go.Figure:
    """Each candidate name (class, name, Zipf frequency, score) at its word frequency and the score the
    classifier reaches with the class so named; one colour per class. Names without a frequency stand
    at the left edge, marked."""
    fig = go.Figure()
    known = [z for _, _, z, _ in points if z is not None]
    floor = (min(known) if known else 0.0) - 0.5
    for k, cls in enumerate(dict.fromkeys(c for c, _, _, _ in points)):
        mine = [p for p in points if p[0] == cls]
        marks = ["circle" if z is not None else "x" for _, _, z, _ in mine]
        hover = "%{customdata}<br>Zipf %{x:.2f}<br>" + score + " %{y:.3f}<extra>" + cls + "</extra>"
        fig.add_trace(go.Scatter(
            x=[z if z is not None else floor for _, _, z, _ in mine], y=[s for _, _, _, s in mine],
            mode="markers+text", text=[_short(n, 20) for _, n, _, _ in mine],
            textposition=["top center" if i % 2 == 0 else "bottom center" for i in range(len(mine))],
            name=_short(cls, 24), marker=dict(size=9, color=MAP_PALETTE[k % len(MAP_PALETTE)],
                                              symbol=marks),
            customdata=[n for _, n, _, _ in mine], hovertemplate=hover))
    fig.update_xaxes(title_text="word frequency (Zipf, wordfreq; a proxy for pretraining frequency)")
    if score == "accuracy":
        fig.update_yaxes(range=[-0.05, 1.1], tickformat=".0%")
    fig.update_yaxes(title_text=score)
    fig.update_layout(height=400, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.25))
    return titled(fig, "Names: how common against how well they work",
                  ["x marks a name with no frequency (at the left edge)"])


def label_distance_heatmap(candidates: list[str], classes: list[str], distances, metric: str) -> go.Figure:
    """Candidates (rows: the typed classes first, then the extra ones) x scored classes: the distance
    Loki weighs each class's probability by."""
    d = np.asarray(distances, dtype=float)
    fig = go.Figure(go.Heatmap(
        z=d, x=axis_labels(classes), y=axis_labels(candidates), colorscale="Cividis_r",
        colorbar=dict(title="distance"), texttemplate="%{z:.2f}" if max(d.shape) <= MAX_CELL_TEXT else None,
        hovertemplate="candidate %{y}<br>class %{x}<br>distance %{z:.3f}<extra></extra>"))
    fig.update_xaxes(type="category", title_text="scored class")
    fig.update_yaxes(type="category", autorange="reversed", title_text="candidate label")
    fig.update_layout(height=max(320, 160 + 26 * len(candidates)), margin=dict(l=10, r=10, t=50, b=10))
    return titled(fig, "Label geometry (Loki): distances", [f"metric: {metric}"])


def accuracy_vs_time(names: list[str], ms_per_image: list[float | None], accuracy: list[float | None],
                     measured_now: list[bool]) -> go.Figure:
    """One point per model: its accuracy on the compared images against its milliseconds per image
    (read + encode); a filled circle for a time measured in this run, an open one for a time stored with
    the model's embeddings. A model without a time or an accuracy is left out, and the title says so."""
    fig = go.Figure()
    shown = [i for i in range(len(names)) if ms_per_image[i] is not None and accuracy[i] is not None]
    for i in shown:
        fig.add_trace(go.Scatter(
            x=[ms_per_image[i]], y=[accuracy[i]], mode="markers+text", text=[_short(names[i], 32)],
            textposition="top center", name=_short(names[i], 40),
            marker=dict(size=13, color=MAP_PALETTE[i % len(MAP_PALETTE)],
                        symbol="circle" if measured_now[i] else "circle-open", line=dict(width=2)),
            hovertemplate=f"{names[i]}<br>%{{x:.2f}} ms per image<br>accuracy %{{y:.1%}}<extra></extra>"))
    widest = max((ms_per_image[i] for i in shown), default=1.0) or 1.0
    # room right of the slowest point for its name (drawn centred over it)
    fig.update_xaxes(title_text="ms per image (read + encode, on this machine)", range=[0, widest * 1.3])
    fig.update_yaxes(title_text="accuracy (top-1)", range=[-0.05, 1.12], tickformat=".0%")
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10), showlegend=False)
    left = len(names) - len(shown)
    details = ["filled: timed in this run · open: timed when the embeddings were stored"]
    if left:
        details.append(f"{left} model(s) without a time left out")
    return titled(fig, "Accuracy against time per image", details)
