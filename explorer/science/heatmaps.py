"""Similarity matrices (images x texts) and patch-level maps (where in an image a text matches).

`run_similarity` makes the image x text matrix of the Heatmaps tab and of `clip-explorer similarity`
alike: given files embedded (through the embedding cache), an index's stored embeddings sampled, the
texts encoded, and the matrix with the probabilities by the model's own rule.

Patch map methods (open_clip VisionTransformer towers only). The image runs through the tower
exactly as `encode_image` runs it (conv1 -> class + positional embeddings -> ln_pre -> transformer),
and patch tokens are taken into the joint space through the tower's own final LayerNorm (`ln_post`)
and projection (`proj`), L2-normalised and dotted with the normalised text embedding:
- "tokens" (default): the output tokens of the last block, as they are.
- "maskclip": MaskCLIP's patch features (Zhou, Loy, Dai, "Extract Free Dense Labels from CLIP", ECCV 2022),
  as the authors' code computes them (github.com/chongzhou96/MaskCLIP at 245d31f:
  mmseg/models/backbones/vit.py, TransformerEncoderLayer.forward with its qkv path, and
  VisionTransformer.forward's final norm; mmseg/models/decode_heads/maskclip_head.py for the projection. The
  fork volgachen/MaskCLIP at cd51dc5 has the same code under mseg/, its VisionTransformer renamed
  MCVisionTransformer). With x the last block's input: the query and key are dropped, so each token's
  attention output is its own value, a = out_proj(v(ln_1(x))); the block's residual is kept, y = x + a; the
  block's MLP is kept with its residual, y = y + mlp(ln_2(y)); then the tower's final norm and projection,
  ln_post(y) @ proj. (open_clip's LayerScale, identity in OpenAI-style towers, is applied where the block
  applies it.)
- "value-only": the last block's value path alone, out_proj(v(ln_1(x))) (LayerScale applied), with
  NEITHER the residual NOR the MLP, then ln_post and proj. This is not MaskCLIP (which keeps both)
  and not ClearCLIP (Lan et al., ECCV 2024, which drops both but keeps a query-query attention); it
  is MaskCLIP's value path with ClearCLIP's removals. "value", its name before "maskclip" existed,
  is accepted as an alias.
In large class-token CLIPs the last layer's attention spreads global information over every patch
token, which these papers report makes raw last-layer maps noisy; the value path keeps each
token's own content.
Whatever the method, the cosines are small and share an offset (patch tokens were never trained to be matched
against text), so the map is best read relative to its own mean (`display_values(..., "relative")`)
or min-max scaled; the raw cosines are kept for export. Towers without a per-patch path into the
joint space (ResNets, timm towers, attentional poolers) raise PatchMapUnsupported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from explorer.embed.images import DEFAULT_LIMITS, Limits
from explorer.embed.probability import Scoring, as_scoring, label_probabilities
from explorer.inputs.sources import embed_files, embed_index, join, unique_names

from .names import METHOD_ALIASES, METHODS
from .prompts import ParsedLabels

# A perceptual dark-to-bright colour map (anchors of matplotlib's "inferno"), so the core needs no plotting
# library.
_INFERNO = np.array([
    (0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
    (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164)], dtype=np.float32)


class PatchMapUnsupported(ValueError):
    """This model's image tower has no patch-level map into the joint space; the message says why."""


# ---- images x texts ---------------------------------------------------------------------------
@dataclass
class SimilarityMatrix:
    """Cosines between every image and every text, and the probabilities a zero-shot classifier over
    the texts would give, by the model's rule (`scoring`): a softmax over the texts per image
    (contrastive models), or a sigmoid per image-text pair with the learned bias (sigmoid models)."""
    cosines: np.ndarray        # [N, M]
    probabilities: np.ndarray  # [N, M]; softmax: each row sums to 1; sigmoid: each cell on its own
    logit_scale: float
    names: list[str] = field(default_factory=list)   # the images (rows), unique
    texts: list[str] = field(default_factory=list)   # the texts (columns)
    scoring: Scoring | None = None                   # the rule (None: softmax at logit_scale)

    @property
    def rule(self) -> Scoring:
        return self.scoring or as_scoring(self.logit_scale)

    def as_dict(self) -> dict:
        # "probability" has always been the matrix here; the rule that made it is under "scoring".
        return {"images": self.names, "texts": self.texts, "logit_scale": self.logit_scale,
                "scoring": self.rule.as_dict(),
                "cosine": self.cosines.tolist(), "probability": self.probabilities.tolist()}


def similarity_matrix(image_emb: np.ndarray, text_emb: np.ndarray, logit_scale: float | Scoring,
                      names: list[str] = (), texts: list[str] = ()) -> SimilarityMatrix:
    """Image x text cosines from normalised embeddings, and probabilities by the model's rule
    (`logit_scale`: its Scoring; a bare number means softmax(logit_scale * cosine) per image)."""
    if image_emb.shape[-1] != text_emb.shape[-1]:
        raise ValueError(
            f"image and text embeddings differ in size ({image_emb.shape[-1]} vs {text_emb.shape[-1]})")
    cosines = np.asarray(image_emb, np.float32) @ np.asarray(text_emb, np.float32).T
    scoring = as_scoring(logit_scale)
    return SimilarityMatrix(cosines, label_probabilities(scoring, cosines), scoring.scale, list(names),
                            list(texts), scoring)


def image_text_matrix(model, images, texts: list[str]) -> SimilarityMatrix:
    """The matrix for embedded images (sources.Embedded) and texts (encoded through the model's cache)."""
    if not texts:
        raise ValueError("give at least one text")
    if len(images) == 0:
        raise ValueError("none of the images could be read")
    return similarity_matrix(images.embeddings, model.encode_texts(texts), model.scoring, images.names, texts)


class NoImagesRead(ValueError):
    """No row for a matrix: no image was given, or none could be read (`failures` says why each not)."""

    def __init__(self, failures=()):
        super().__init__("none of the images could be read")
        self.failures = list(failures)


@dataclass
class SimilarityRun:
    """One image x text matrix as the Heatmaps tab and `clip-explorer similarity` make it: the matrix
    (cosines, probabilities by the model's rule, row names, texts), then where each row came from."""
    matrix: SimilarityMatrix
    paths: list[Path]                # each row's file (for index rows: where it was indexed)
    roots: list[Path | None]         # each row's indexed folder; None for a file given as it is
    failures: list = field(default_factory=list)        # ImageFailure of the given files not read
    index_failures: list = field(default_factory=list)  # those the sampled index could not read
    notes: list[str] = field(default_factory=list)      # what reading the texts dropped or cut
    sampled: int = 0                 # rows sampled from the index (the last ones)

    @property
    def all_failures(self) -> list:
        return [*self.failures, *self.index_failures]


def run_similarity(model, files: list, texts: ParsedLabels, *, names: list[str] | None = None,
                   index=None, sample: int = 12, cache=None, limits: Limits = DEFAULT_LIMITS,
                   progress=None) -> SimilarityRun:
    """The matrix of image `files` (and a seeded sample of `sample` images of the open `index`, by
    their stored embeddings: nothing is decoded or encoded again) against `texts` (prompts.parse_texts:
    its notes are kept). Rows are named by `names` (None: the files as given), then by the index's
    relative paths, repeats numbered. Unreadable files become failures; NoImagesRead when no row is
    left. `cache`, `limits`, `progress` as for sources.embed_files; ValueError from an index another
    model made (IndexMismatchError)."""
    if not texts.labels:
        raise ValueError("give at least one text")
    files = [str(f) for f in files]
    parts = [embed_files(model, files, names=list(names) if names is not None else unique_names(files),
                         cache=cache, limits=limits, progress=progress)]
    if index is not None:
        parts.append(embed_index(model, index, sample=int(sample)))
    images = join(parts)
    if not len(images):
        raise NoImagesRead(images.failures)
    given = len(parts[0])
    roots = [None] * given + [p.root for p in parts[1:] for _ in p.names]
    return SimilarityRun(image_text_matrix(model, images, texts.labels), list(images.paths), roots,
                         list(parts[0].failures), [f for p in parts[1:] for f in p.failures],
                         list(texts.notes), len(images) - given)


# ---- patch maps -------------------------------------------------------------------------------
@dataclass
class PatchMap:
    """Raw patch-text cosines on the model's patch grid, and where that grid lies on the image."""
    text: str
    grid: np.ndarray              # [gh, gw] cosine of each patch token with the text
    image_cosine: float           # the ordinary (pooled) image-text cosine, for reference
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) in image pixels the grid covers
    image_size: tuple[int, int]   # (width, height) of the original image
    method: str = "tokens"        # one of METHODS (see the module docstring)

    def upsampled(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The raw map in image pixel coordinates [H, W] (bilinear); NaN outside the model's view."""
        width, height = size or self.image_size
        sx, sy = width / self.image_size[0], height / self.image_size[1]
        x0, y0, x1, y1 = self.box
        gh, gw = self.grid.shape
        # Pixel centres -> fractional grid coordinates, then bilinear interpolation with edge clamping.
        gx = ((np.arange(width) + 0.5) / sx - x0) / (x1 - x0) * gw - 0.5
        gy = ((np.arange(height) + 0.5) / sy - y0) / (y1 - y0) * gh - 0.5
        out = _bilinear(self.grid.astype(np.float64), gy, gx)
        outside = ((gy < -0.5) | (gy > gh - 0.5))[:, None] | ((gx < -0.5) | (gx > gw - 0.5))[None, :]
        out[outside] = np.nan
        return out.astype(np.float32)

    def as_dict(self) -> dict:
        return {"text": self.text, "method": self.method, "grid_size": list(self.grid.shape),
                "grid": [[round(float(v), 6) for v in row] for row in self.grid],
                "min": float(self.grid.min()), "max": float(self.grid.max()), "mean": float(self.grid.mean()),
                "image_cosine": self.image_cosine, "box": [round(v, 2) for v in self.box],
                "image_size": list(self.image_size)}


def _bilinear(grid: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """`grid` sampled at rows `gy` and columns `gx` (fractional, clamped to the edges), bilinearly. It is
    separable: the rows are interpolated on the small grid first, then the columns at full size."""
    y0, y1, wy = _neighbours(gy, grid.shape[0])
    x0, x1, wx = _neighbours(gx, grid.shape[1])
    rows = grid[y0] * (1 - wy)[:, None] + grid[y1] * wy[:, None]   # [H, gw]
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


def _neighbours(coords: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two cells each coordinate lies between (clamped to 0..n-1) and its weight on the second."""
    c = np.clip(coords, 0, n - 1)
    low = np.floor(c).astype(int)
    return low, np.minimum(low + 1, n - 1), c - low


def method_name(method: str) -> str:
    """The canonical name of a patch-map method (an alias such as "value" -> "value-only")."""
    name = METHOD_ALIASES.get(method, method)
    if name not in METHODS:
        raise ValueError(f"unknown patch-map method {method!r}: use {', '.join(METHODS)}")
    return name


def check_patch_support(model, method: str = "tokens") -> None:
    """Raise PatchMapUnsupported unless `model` (a ClipModel) has an open_clip ViT image tower
    whose patch tokens reach the joint space through the same norm and projection as the pooled one
    (and, for "maskclip" and "value-only", whose last block is open_clip's standard
    ResidualAttentionBlock)."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    method = method_name(method)
    visual = model.model.visual
    if not isinstance(visual, VisionTransformer):
        raise PatchMapUnsupported(
            f"{model.identifier}: the image tower is a {type(visual).__name__}, not an open_clip ViT; "
            "a patch map is only defined here for ViT towers (patch tokens projected into the joint space)")
    if getattr(visual, "attn_pool", None) is not None:
        raise PatchMapUnsupported(
            f"{model.identifier}: the image tower pools with an attentional pooler, which mixes all tokens "
            "before the projection, so single patches have no place in the joint space")
    if not hasattr(visual, "_pool"):  # open_clip's pooling step, which the map reuses (present since 2.24)
        raise PatchMapUnsupported(
            f"{model.identifier}: this open_clip version's ViT has no _pool step to reuse")
    if getattr(visual, "pool_type", "tok") not in ("tok", "avg"):
        raise PatchMapUnsupported(
            f"{model.identifier}: pool type {visual.pool_type!r} is not supported for patch maps")
    last = visual.transformer.resblocks[-1]
    if method != "tokens" and not (isinstance(last, ResidualAttentionBlock)
                                  and isinstance(last.attn, torch.nn.MultiheadAttention)
                                  and not hasattr(last, "ln_1_kv")):
        raise PatchMapUnsupported(
            f"{model.identifier}: the last block is a {type(last).__name__}, whose value path is not "
            f"supported for the {method!r} method; use the 'tokens' method")


def view_box(image_size: tuple[int, int], resize_mode: str | None) -> tuple[float, float, float, float]:
    """The region of the original image (x0, y0, x1, y1) that open_clip's preprocessing shows the model:
    'shortest' (the default) resizes and centre-crops a square, 'longest' pads to a square around
    the image, 'squash' stretches the whole image."""
    w, h = image_size
    if resize_mode == "squash":
        return (0.0, 0.0, float(w), float(h))
    side = max(w, h) if resize_mode == "longest" else min(w, h)
    x0, y0 = (w - side) / 2, (h - side) / 2
    return (x0, y0, x0 + side, y0 + side)


def _value_path(block, x: torch.Tensor) -> torch.Tensor:
    """The block's attention with every token attending only to itself (query and key dropped):
    out_proj(v(ln_1(x))), scaled by the block's LayerScale; no residual, no MLP ("value-only")."""
    width = x.shape[-1]
    attn = block.attn
    bias = None if attn.in_proj_bias is None else attn.in_proj_bias[2 * width:]
    values = F.linear(block.ln_1(x), attn.in_proj_weight[2 * width:], bias)
    return block.ls_1(attn.out_proj(values))


def _maskclip_path(block, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's last block (chongzhou96/MaskCLIP 245d31f, mmseg/models/backbones/vit.py): the value path
    plus the block's input as residual, then the block's own MLP with its residual."""
    y = x + _value_path(block, x)
    return y + block.ls_2(block.mlp(block.ln_2(y)))


_LAST_BLOCK = {"maskclip": _maskclip_path, "value-only": _value_path}


def patch_tokens(model, pixels: torch.Tensor, method: str = "tokens") -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of the image tower -> (normalised patch tokens [B, gh, gw, D], normalised pooled
    image embeddings [B, D], the same as `encode_image` gives)."""
    check_patch_support(model, method)
    method = method_name(method)
    visual = model.model.visual
    last = visual.transformer.resblocks[-1]
    captured = {}
    # The last block's input, taken in passing, so the tower runs once and exactly as open_clip runs it.
    hook = last.register_forward_pre_hook(lambda module, args: captured.__setitem__("x", args[0]))
    try:
        # ClipModel's lock and autocast keep this consistent with encode_pixels (same precision, one caller at
        # a time).
        with model.inference():
            x = visual.conv1(pixels.to(model.device))                # [B, width, gh, gw]
            batch, width, gh, gw = x.shape
            x = x.reshape(batch, width, gh * gw).permute(0, 2, 1)
            cls = visual.class_embedding.to(x.dtype).expand(batch, 1, -1)
            x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
            x = visual.patch_dropout(x)                              # identity in eval mode
            x = visual.ln_pre(x)
            x = visual.transformer(x)
            pooled, _ = visual._pool(x)                              # the tower's own pooling
            if method != "tokens":                                  # the last block, recomputed
                before = captured["x"]
                if not visual.transformer.batch_first:
                    before = before.transpose(0, 1)
                x = _LAST_BLOCK[method](last, before)
            tokens = visual.ln_post(x[:, 1:])                        # skip the class token
            if visual.proj is not None:
                tokens, pooled = tokens @ visual.proj, pooled @ visual.proj
            tokens = F.normalize(tokens.float(), dim=-1)
            pooled = F.normalize(pooled.float(), dim=-1)
            model.image_encodes += batch   # a pass through the image tower, counted as encode_pixels counts
    finally:
        hook.remove()
    return tokens.reshape(batch, gh, gw, -1).cpu(), pooled.cpu()


@dataclass
class PatchTokens:
    """One image's pass through the tower for one method: its normalised patch tokens, its pooled
    embedding and where its grid lies on the image. A map for any text is then a dot product
    (`map_for`): the image is neither decoded nor encoded again."""
    tokens: np.ndarray                      # [gh, gw, D] normalised patch tokens
    pooled: np.ndarray                      # [D] normalised pooled embedding (encode_image's)
    box: tuple[float, float, float, float]  # see PatchMap.box
    image_size: tuple[int, int]             # (width, height) of the original image
    method: str = "tokens"


def image_tokens(model, images: list[Image.Image], method: str = "tokens",
                 batch_size: int = 16) -> list[PatchTokens]:
    """The PatchTokens of each PIL image for `method` (one of METHODS), in batches."""
    check_patch_support(model, method)
    method = method_name(method)
    cfg = getattr(model.model.visual, "preprocess_cfg", {}) or {}
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        pixels = torch.stack([model.preprocess(im) for im in chunk])
        tokens, pooled = patch_tokens(model, pixels, method)
        out += [PatchTokens(t.numpy(), p.numpy(), view_box(im.size, cfg.get("resize_mode")), im.size, method)
                for im, t, p in zip(chunk, tokens, pooled)]
    return out


def map_for(model, tokens: PatchTokens, text: str) -> PatchMap:
    """Where `text` matches on the image `tokens` were taken from: only the text is encoded (and the
    model caches texts)."""
    return _map_of(tokens, text, model.encode_texts([text])[0])


def _map_of(tokens: PatchTokens, text: str, text_emb: np.ndarray) -> PatchMap:
    text_emb = np.asarray(text_emb, np.float32)
    return PatchMap(text, (tokens.tokens @ text_emb).astype(np.float32), float(tokens.pooled @ text_emb),
                    tokens.box, tokens.image_size, tokens.method)


def patch_maps(model, images: list[Image.Image], text: str, method: str = "tokens",
               batch_size: int = 16) -> list[PatchMap]:
    """One PatchMap per PIL image for `text`; `method` is one of METHODS, "tokens" by default (see the
    module docstring)."""
    check_patch_support(model, method)
    text_emb = model.encode_texts([text])[0]
    return [_map_of(t, text, text_emb) for t in image_tokens(model, images, method, batch_size)]


def patch_map(model, image: Image.Image, text: str, method: str = "tokens") -> PatchMap:
    """Where in `image` `text` matches: patch-text cosines on the model's patch grid."""
    return patch_maps(model, [image], text, method)[0]


def display_values(values: np.ndarray, scale: str = "relative") -> np.ndarray:
    """Map raw cosines to 0..1 for colouring. 'relative': centred on the map's mean (0.5 = mean),
    symmetric by the largest deviation; 'minmax': min -> 0, max -> 1. NaN stays NaN."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return v
    if scale == "relative":
        centred = v - finite.mean()
        spread = np.abs(finite - finite.mean()).max()
        return 0.5 + 0.5 * centred / spread if spread > 0 else np.full_like(v, 0.5)
    if scale == "minmax":
        lo, hi = finite.min(), finite.max()
        return (v - lo) / (hi - lo) if hi > lo else np.full_like(v, 0.5)
    raise ValueError(f"unknown scale {scale!r}: use relative or minmax")


def _interpolated(values01: np.ndarray) -> np.ndarray:
    """The inferno anchors interpolated linearly at 0..1 values -> uint8 RGB."""
    v = values01 * (len(_INFERNO) - 1)
    low = np.floor(v).astype(int)
    high = np.minimum(low + 1, len(_INFERNO) - 1)
    t = (v - low)[..., None]
    return np.rint(_INFERNO[low] * (1 - t) + _INFERNO[high] * t).astype(np.uint8)


# The colour map at LUT_STEPS + 1 evenly spaced values: colouring a map is then one table look-up per
# pixel (a 640-pixel map is coloured in a millisecond, not tens), within one level of the exact blend.
LUT_STEPS = 4096
_INFERNO_LUT = _interpolated(np.linspace(0.0, 1.0, LUT_STEPS + 1))


def colorize(values01: np.ndarray) -> np.ndarray:
    """0..1 values [H, W] -> uint8 RGB [H, W, 3] with the inferno colour map (NaN -> black)."""
    v = np.nan_to_num(np.clip(np.asarray(values01, np.float32), 0, 1), nan=0.0)
    return _INFERNO_LUT[np.rint(v * LUT_STEPS).astype(np.intp)]


def overlay(image: Image.Image, pmap: PatchMap, opacity: float = 0.5, scale: str = "relative") -> Image.Image:
    """The image with the colour-mapped patch map blended on top at `opacity` (0..1); parts of the
    image the model did not see (cropped off by preprocessing) are left uncoloured and dimmed."""
    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    values = pmap.upsampled(image.size)
    outside = np.isnan(values)
    base = image.convert("RGB")
    heat = Image.fromarray(colorize(display_values(values, scale)), "RGB")
    blended = Image.blend(base, heat, float(opacity))  # in C: base * (1 - opacity) + heat * opacity
    if outside.any():
        dimmed = base.point(lambda v: round(v * 0.5))
        blended.paste(dimmed, mask=Image.fromarray(outside.astype(np.uint8) * 255))
    return blended
