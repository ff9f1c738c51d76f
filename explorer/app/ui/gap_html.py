"""HTML pieces of the Modality gap tab. Formatting only: the numbers come from explorer.science.gap."""
from __future__ import annotations

import html

from .common import failures_html


def _num(v, fmt: str = "{:+.3f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _headline(m) -> str:
    """One sentence that says what the numbers mean for these data."""
    if m.mean_cos_matched is None or m.mean_cos_image_image is None:
        return (
            f"The image and text centroids are {m.gap_length:.2f} apart (0 would mean the two clouds share "
            "a centre).")
    within = f"images average {m.mean_cos_image_image:.2f} with each other"
    if m.mean_cos_text_text is not None:
        within += f" and texts {m.mean_cos_text_text:.2f}"
    if m.mean_cos_matched < min(m.mean_cos_image_image, m.mean_cos_text_text or 1.0):
        return (f"Matched pairs average {m.mean_cos_matched:.2f} while {within}: an image is closer to other "
                "images than to its own text. That is the modality gap: each modality sits in its own cone.")
    unmatched = "" if m.mean_cos_unmatched is None else (
        f", far above unmatched pairs ({m.mean_cos_unmatched:.2f})")
    return (
        f"Matched pairs average {m.mean_cos_matched:.2f}{unmatched}, and {within}; yet the mean image and "
        f"the mean text are still {m.gap_length:.2f} apart: that offset is the gap.")


def measures(run, shifted=None) -> str:
    """The measures table with a plain-English line for each, plus where the data came from. With
    `shifted` (gap_run.Shifted at λ > 0) the numbers are those of the shifted embeddings."""
    m = run.measures if shifted is None else shifted.measures
    text_kind = "class texts" if run.texts.kind == "labels" else "captions"
    rows = [
        ("gap length", _num(m.gap_length, "{:.3f}"),
         "distance between the mean image and the mean text embedding (0 = same centre; at most 2)"),
        ("mean cosine, image–image", _num(m.mean_cos_image_image),
         "how alike the model finds two different images, on average"),
        ("mean cosine, text–text", _num(m.mean_cos_text_text), f"the same for two different {text_kind}"),
        ("mean cosine, matched pairs", _num(m.mean_cos_matched),
         "each image with its own " + ("label's class text" if run.texts.kind == "labels" else "caption")),
        ("mean cosine, unmatched pairs", _num(m.mean_cos_unmatched), "each image with every other text"),
        ("alignment", _num(m.alignment, "{:.3f}"),
         "Wang & Isola: mean squared distance of matched pairs (lower = better aligned; "
         "2 − 2 × matched cosine)"),
        ("uniformity, images", _num(m.uniformity_image, "{:.3f}"),
         "Wang & Isola: log mean exp(−2‖u−v‖²); more negative = images spread more evenly over the sphere"),
        ("uniformity, texts", _num(m.uniformity_text, "{:.3f}"), "the same for the texts"),
    ]
    body = "".join(
        f'<tr data-measure="{html.escape(name)}"><td>{html.escape(name)}</td>'
        f'<td class="gap-value">{value}</td><td class="explorer-muted">{html.escape(why)}</td></tr>'
        for name, value, why in rows)
    parts = [f'<p class="gap-headline"><b>{html.escape(_headline(m))}</b></p>']
    if shifted is not None and shifted.lam != 0:
        parts.append(
            f'<p class="explorer-note" id="gap-measures-shift">Measures at λ = {shifted.lam:.2f}: the '
            "embeddings moved along the gap and renormalised (as trained, the gap length is "
            f"{run.measures.gap_length:.3f}).</p>")
    parts.append(
        '<table class="explorer-table"><thead><tr><th>measure</th><th>value</th><th>what it says</th>'
        f"</tr></thead><tbody>{body}</tbody></table>")
    sample = m.pair_sample
    about = (
        f"{m.n_images:,} images from {run.images.source}, {m.n_texts:,} {text_kind}, {m.n_matched:,} "
        "matched pairs. Means are exact over all pairs")
    if sample and (sample.get("images", m.n_images) < m.n_images or
                   sample.get("texts", m.n_texts) < m.n_texts):
        about += (f"; histograms and uniformity use a sample of {sample['images']:,} images and "
                  f"{sample['texts']:,} texts")
    parts.append(f'<p class="explorer-muted">{html.escape(about)}.</p>')
    for note in run.notes:
        parts.append(f'<p class="explorer-note">{html.escape(note)}</p>')
    parts.append(failures_html(run.images.failures))
    return "".join(parts)


def readout(run, point) -> str:
    """What the current shift does, next to the unshifted model."""
    base = run.curve[0]
    line = (f"λ = {point.lam:.2f}: gap length <b class='gap-shift-length'>{point.gap_length:.3f}</b> "
            f"(as trained {base.gap_length:.3f})")
    if point.recall_at_1 is not None:
        line += (f"; {run.metric} <b class='gap-shift-metric'>{point.recall_at_1:.1%}</b> "
                 f"(as trained {base.recall_at_1:.1%}); mean rank of the matching text "
                 f"{point.mean_rank:.2f} (as trained {base.mean_rank:.2f}), over {point.queries:,} images")
    else:
        line += "; no image has a matching text, so there is no accuracy to show"
    return f'<div class="explorer-note" id="gap-readout-text">{line}</div>'


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def selection(n_images: int, n_texts: int, images: list, texts: list[str]) -> str:
    """What a box or lasso selection on the map holds: the count, then the first images (name, preview
    data: URI or None) as thumbnails and the first texts as a list (`images`/`texts` may be cut short)."""
    head = f"{_count(n_images, 'image')} and {_count(n_texts, 'text')} selected"
    cut = [
        f"the first {len(shown):,} {what}"
        for shown, n, what in ((images, n_images, "images"), (texts, n_texts, "texts")) if len(shown) < n
    ]
    if cut:
        head += " (showing " + " and ".join(cut) + ")"
    tiles = "".join(
        '<figure style="margin:0;width:120px;text-align:center">' +
        (f'<img src="{html.escape(uri)}" alt="{html.escape(name)}" style="width:84px;height:84px;'
         'object-fit:contain;border-radius:4px">' if uri else
         '<div style="width:84px;height:84px;margin:auto;border:1px dashed #bbb;border-radius:4px"></div>') +
        f'<figcaption style="font-size:11px;overflow-wrap:anywhere">{html.escape(name)}</figcaption></figure>'
        for name, uri in images)
    parts = [f'<p id="gap-selection-count"><b>{html.escape(head)}</b></p>']
    if tiles:
        parts.append(
            f'<div class="gap-selection-images" style="display:flex;flex-wrap:wrap;gap:8px">{tiles}</div>')
    if texts:
        items = "".join(f"<li>{html.escape(t)}</li>" for t in texts)
        parts.append(f'<ol class="gap-selection-texts" style="margin-top:8px">{items}</ol>')
    return "".join(parts)
