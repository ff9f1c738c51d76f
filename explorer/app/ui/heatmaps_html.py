"""HTML pieces of the Heatmaps tab: summaries, the colour-scale notes and the patch-map legend.
Formatting only: cosines, probabilities and patch maps come from science/heatmaps.py."""
from __future__ import annotations

import html

from explorer.science.heatmaps import PatchMap, SimilarityMatrix, SimilarityRun

from .common import failures_html

# Anchors of the inferno map the core colours patch maps with (science/heatmaps.py), for the legend.
_INFERNO_CSS = "#000004, #1f0c48, #550f6d, #88226a, #ba3655, #e35933, #f98c0a, #f9c932, #fcffa4"


def matrix_summary(run: SimilarityRun) -> str:
    """How many images and texts the matrix has, what reading the texts did, and the files skipped."""
    matrix, notes, from_index = run.matrix, run.notes, run.sampled
    parts = [
        f'<p class="explorer-muted">{len(matrix.names)} image(s) × {len(matrix.texts)} text(s)' +
        (f", {from_index} of them sampled from a search index (stored embeddings)" if from_index else "") +
        ".</p>"
    ]
    if notes:
        parts.append(f'<p class="explorer-note">Texts: {html.escape("; ".join(notes))}.</p>')
    return "".join(parts) + failures_html(run.all_failures)


def scale_note(view: str, matrix: SimilarityMatrix) -> str:
    cosines, logit_scale = matrix.cosines, matrix.logit_scale
    if view == "cosine":
        text = (f"Colour: image–text cosine, spanning this matrix's own range {float(cosines.min()):.3f} "
                f"to {float(cosines.max()):.3f} (image–text only, never mixed with image–image or "
                "text–text similarities). Hover a cell for the exact value and its probability.")
    elif matrix.rule.sums_to_one:
        text = (
            f"Colour: probability from 0% to 100%, a softmax over the texts for each image (row) with "
            f"the model's learned scale ×{logit_scale:.1f}; each row sums to 100% even when no text fits, "
            f"so check the cosine on hover. {matrix.rule.explain()}")
    else:
        text = (
            f"Colour: probability from 0% to 100%, a sigmoid for each image–text cell on its own (rows need "
            f"not sum to 100%: a row can be all dark when no text fits). {matrix.rule.explain()}")
    return f'<p class="explorer-muted" id="hm-scale-text">{html.escape(text)}</p>'


METHOD_HELP = {
    "tokens": "tokens: the last block's patch tokens, through the model's own final norm and projection.",
    "maskclip": "maskclip: MaskCLIP (Zhou et al., ECCV 2022) as its authors compute it: in the last block "
                "each patch attends only to itself (its value, out_proj(v(ln_1(x)))), the block's residual "
                "and MLP are kept, then the final norm and projection. Often cleaner on large CLIPs whose "
                "last layer spreads global information over every patch.",
    "value-only": "value-only: the last block's value path alone, out_proj(v(ln_1(x))), WITHOUT the residual "
                  "and the MLP, then the final norm and projection (neither MaskCLIP nor ClearCLIP exactly).",
}
SCALE_CHOICES = {"relative to the map's mean": "relative", "min to max": "minmax"}


def map_summary(pmap: PatchMap, scale: str) -> str:
    grid = pmap.grid
    gh, gw = grid.shape
    legend = ("dark = below the map's mean, bright = above (symmetric around the mean)" if scale == "relative"
              else "dark = the map's lowest patch, bright = its highest")
    return (f'<div class="hm-legend" style="display:flex;align-items:center;gap:6px;font-size:0.85rem">'
            f'<span>low</span><span style="display:inline-block;width:180px;height:12px;border-radius:3px;'
            f'background:linear-gradient(to right, {_INFERNO_CSS})"></span><span>high</span></div>'
            f'<p class="explorer-muted" id="hm-map-numbers">“{html.escape(pmap.text)}” · method '
            f"{html.escape(pmap.method)} · {gh}×{gw} patches. Raw patch–text cosines from "
            f"{float(grid.min()):.4f} to {float(grid.max()):.4f} (mean {float(grid.mean()):.4f}); "
            f"the whole image's cosine with the text is {pmap.image_cosine:.4f}. Colour: inferno, "
            f"{legend}. Patch cosines are small and share an offset, so read the map by its contrast, "
            "not its absolute values. Parts of the image the model did not see (cropped off) are dimmed.</p>")
