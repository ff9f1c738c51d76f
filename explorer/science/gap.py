"""Modality-gap statistics, the shift along the gap, and joint 2-D projections.

Inputs are L2-normalised embeddings: images [N, D] and texts [M, D], and optionally `matches`
([N] ints): the index of each image's matching text, or -1 where an image has none. With labels,
texts are the class embeddings and matches are the class indices; with captions, text i is the
caption of image i and matches is arange(N).

References:
- Liang, Zhang, Kwon, Yeung, Zou. "Mind the Gap: Understanding the Modality Gap in Multi-modal
  Contrastive Representation Learning", NeurIPS 2022 (gap vector, shift experiment).
- Wang and Isola. "Understanding Contrastive Representation Learning through Alignment and
  Uniformity on the Hypersphere", ICML 2020 (alignment with alpha=2, uniformity with t=2).

Means over all pairs are computed exactly from sums (O(N D)), so they are cheap at any size;
histograms and uniformity need the pairs themselves and use a seeded sample of at most
`max_pair_points` embeddings per modality, whose size is reported.

Joint maps (`project_2d`): "gap" (the default) puts axis 1 along the unit gap vector and axis 2 along
the first principal component of what remains (this app's construction: PCA's first two axes need not
contain the gap, so a PCA map can draw the two centroids on top of each other); "pca"; "umap". The
linear maps keep their axes (`LinearMap`) so shifted embeddings can be drawn in the same frame.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from explorer.embed.cache import LRU
from explorer.embed.vectors import normalize

DEFAULT_PAIR_POINTS = 2000
DEFAULT_MAX_POINTS = 10_000
HIST_BINS = 50


class ProjectionError(ValueError):
    """A projection cannot be made (e.g. UMAP asked for but not installed)."""


def _normalize(x: np.ndarray) -> np.ndarray:
    if np.ndim(x) != 2:
        raise ValueError(f"expected a 2-D array of embeddings, got shape {np.shape(x)}")
    return normalize(x)


def _check(image_emb: np.ndarray, text_emb: np.ndarray,
           matches) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    img, txt = _normalize(image_emb), _normalize(text_emb)
    if len(img) == 0 or len(txt) == 0:
        raise ValueError(f"need at least one image and one text (got {len(img)} images, {len(txt)} texts)")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"image and text embeddings differ in size ({img.shape[1]} vs {txt.shape[1]})")
    if matches is not None:
        matches = np.asarray(matches, dtype=np.int64).reshape(-1)
        if len(matches) != len(img):
            raise ValueError(f"matches has {len(matches)} entries for {len(img)} images")
        if matches.max(initial=-1) >= len(txt) or matches.min(initial=-1) < -1:
            raise ValueError("matches must hold text indices (0..M-1) or -1 for 'no matching text'")
        if not (matches >= 0).any():
            matches = None
    return img, txt, matches


def gap_vector(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Mean normalised image embedding minus mean normalised text embedding [D] (Liang et al.)."""
    return (_normalize(image_emb).astype(np.float64).mean(0)
            - _normalize(text_emb).astype(np.float64).mean(0))


@dataclass
class Histogram:
    """Counts of cosine values over shared bin edges; `n` values were counted."""
    edges: np.ndarray
    counts: np.ndarray
    n: int

    def as_dict(self) -> dict:
        return {
            "edges": [round(float(e), 5) for e in self.edges], "counts": self.counts.tolist(), "n": self.n
        }


@dataclass
class GapMeasures:
    """What the gap explorer reports for one set of image and text embeddings."""
    n_images: int
    n_texts: int
    n_matched: int                      # images with a matching text
    gap_vector: np.ndarray              # [D] mean image - mean text
    gap_length: float
    mean_cos_image_image: float | None  # over all pairs i != j (None with fewer than 2 images)
    mean_cos_text_text: float | None
    mean_cos_matched: float | None      # over matched (image, text) pairs
    mean_cos_unmatched: float | None    # over all other (image, text) pairs
    alignment: float | None             # E ||x - y||^2 over matched pairs (Wang & Isola, alpha=2)
    uniformity_image: float | None      # log E exp(-2 ||u - v||^2) within images (t=2)
    uniformity_text: float | None
    pair_sample: dict = field(default_factory=dict)       # points per modality used for pairwise stats
    histograms: dict[str, Histogram] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-friendly numbers (no embedding-sized arrays)."""
        def num(v):
            return None if v is None else round(float(v), 6)
        return {
            "n_images": self.n_images, "n_texts": self.n_texts, "n_matched": self.n_matched,
            "gap_length": num(self.gap_length),
            "mean_cos_image_image": num(self.mean_cos_image_image),
            "mean_cos_text_text": num(self.mean_cos_text_text),
            "mean_cos_matched": num(self.mean_cos_matched),
            "mean_cos_unmatched": num(self.mean_cos_unmatched),
            "alignment": num(self.alignment),
            "uniformity_image": num(self.uniformity_image),
            "uniformity_text": num(self.uniformity_text),
            "pair_sample": dict(self.pair_sample),
            "histograms": {k: h.as_dict() for k, h in self.histograms.items()},
        }


def _sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= k else np.sort(rng.choice(n, size=k, replace=False))


def _upper(sim: np.ndarray) -> np.ndarray:
    return sim[np.triu_indices(len(sim), k=1)]


def _uniformity(cos_pairs: np.ndarray) -> float | None:
    # ||u - v||^2 = 2 - 2 cos for unit vectors; logsumexp keeps it finite for tight clusters.
    if len(cos_pairs) == 0:
        return None
    z = -2.0 * (2.0 - 2.0 * cos_pairs.astype(np.float64))
    top = z.max()
    return float(top + np.log(np.mean(np.exp(z - top))))


def _mean_offdiagonal(x64: np.ndarray) -> float | None:
    n = len(x64)
    if n < 2:
        return None
    total = x64.sum(0)
    return float((total @ total - np.einsum("ij,ij->", x64, x64)) / (n * (n - 1)))


def gap_measures(image_emb: np.ndarray, text_emb: np.ndarray, matches=None, *,
                 max_pair_points: int = DEFAULT_PAIR_POINTS, bins: int = HIST_BINS,
                 seed: int = 0) -> GapMeasures:
    """Gap vector and length, mean cosines within and across modalities, alignment, uniformity,
    and histograms of the cosines (images sampled to `max_pair_points` per modality for those)."""
    img, txt, matches = _check(image_emb, text_emb, matches)
    img64, txt64 = img.astype(np.float64), txt.astype(np.float64)
    gap = img64.mean(0) - txt64.mean(0)
    n, m = len(img), len(txt)

    matched_cos = None
    if matches is not None:
        has = matches >= 0
        matched_cos = np.einsum("ij,ij->i", img64[has], txt64[matches[has]])
    n_matched = 0 if matched_cos is None else len(matched_cos)
    cross_total = float(img64.sum(0) @ txt64.sum(0))
    n_unmatched = n * m - n_matched
    unmatched_mean = None
    if n_unmatched > 0:
        unmatched_mean = (cross_total - (matched_cos.sum() if n_matched else 0.0)) / n_unmatched

    rng = np.random.default_rng(seed)
    si, st = _sample(n, max_pair_points, rng), _sample(m, max_pair_points, rng)
    ii = _upper(img[si] @ img[si].T)
    tt = _upper(txt[st] @ txt[st].T)
    cross = img[si] @ txt[st].T
    unmatched_mask = np.ones_like(cross, dtype=bool)
    if matches is not None:
        position = np.full(m, -1)
        position[st] = np.arange(len(st))
        rows = np.nonzero(matches[si] >= 0)[0]
        cols = position[matches[si][rows]]
        keep = cols >= 0
        unmatched_mask[rows[keep], cols[keep]] = False
    values = {"image-image": ii, "text-text": tt, "unmatched": cross[unmatched_mask]}
    if matched_cos is not None:
        values["matched"] = matched_cos.astype(np.float32)
    nonempty = [v for v in values.values() if len(v)]
    lo = min(float(v.min()) for v in nonempty)
    hi = max(float(v.max()) for v in nonempty)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.01, hi + 0.01
    edges = np.linspace(lo, hi, bins + 1)
    histograms = {name: Histogram(edges, np.histogram(v, bins=edges)[0], int(len(v)))
                  for name, v in values.items() if len(v)}

    return GapMeasures(
        n_images=n, n_texts=m, n_matched=n_matched, gap_vector=gap.astype(np.float32),
        gap_length=float(np.linalg.norm(gap)),
        mean_cos_image_image=_mean_offdiagonal(img64), mean_cos_text_text=_mean_offdiagonal(txt64),
        mean_cos_matched=None if not n_matched else float(matched_cos.mean()),
        mean_cos_unmatched=unmatched_mean,
        alignment=None if not n_matched else float(np.mean(2.0 - 2.0 * matched_cos)),
        uniformity_image=_uniformity(ii), uniformity_text=_uniformity(tt),
        pair_sample={"images": int(len(si)), "texts": int(len(st))},
        histograms=histograms)


# ---- shifting along the gap ---------------------------------------------------------------------
def shift_along_gap(image_emb: np.ndarray, text_emb: np.ndarray, lam: float,
                    gap: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move images by -lam/2 * gap and texts by +lam/2 * gap, then renormalise.

    Liang et al.'s shift experiment (their `move_features`) moves image embeddings by -delta/2 and
    text embeddings by +delta/2 along the unit gap direction; here lam = delta / |gap|, so lam=0 is
    the model as trained and lam=1 makes the two centroids meet before renormalisation (their
    distance is |1 - lam| * |gap| then). `gap` defaults to `gap_vector(image_emb, text_emb)`.
    """
    img, txt = _normalize(image_emb), _normalize(text_emb)
    gap = gap_vector(img, txt) if gap is None else np.asarray(gap, dtype=np.float64)
    half = (0.5 * lam * gap).astype(np.float32)
    return _normalize(img - half), _normalize(txt + half)


@dataclass
class ShiftPoint:
    """What one shift does: the gap left after renormalising and the effect on matching."""
    lam: float
    gap_length: float
    recall_at_1: float | None   # = zero-shot top-1 accuracy when texts are class embeddings
    mean_rank: float | None     # mean rank (1 = best) of each image's matching text among all texts
    queries: int                # images the readout was measured on

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def matched_ranks(image_emb: np.ndarray, text_emb: np.ndarray, matches: np.ndarray,
                  chunk: int = 1024) -> np.ndarray:
    """Rank (1 = best) of each image's matching text among all texts, for images with a match.
    Ties count in the image's favour (rank = 1 + number of texts scoring strictly higher)."""
    rows = np.nonzero(matches >= 0)[0]
    ranks = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), chunk):  # bounds memory to chunk x M scores
        part = rows[start:start + chunk]
        sims = image_emb[part] @ text_emb.T
        own = sims[np.arange(len(part)), matches[part]]
        ranks[start:start + len(part)] = 1 + (sims > own[:, None]).sum(axis=1)
    return ranks


def evaluate_shift(image_emb: np.ndarray, text_emb: np.ndarray, lams, matches=None, *,
                   max_queries: int = 2000, seed: int = 0) -> list[ShiftPoint]:
    """For each lam: the gap length after `shift_along_gap`, and with `matches` the matching
    text's retrieval rank and recall@1 (zero-shot accuracy for class texts), as in Liang et al.

    The gap vector is fixed from the unshifted data; up to `max_queries` images (seeded sample)
    are ranked against all texts.
    """
    img, txt, matches = _check(image_emb, text_emb, matches)
    gap = gap_vector(img, txt)
    queries = np.arange(len(img))
    if matches is not None:
        queries = np.nonzero(matches >= 0)[0]
        if len(queries) > max_queries:
            queries = np.sort(np.random.default_rng(seed).choice(queries, size=max_queries, replace=False))
    out = []
    for lam in np.atleast_1d(np.asarray(lams, dtype=np.float64)):
        img_s, txt_s = shift_along_gap(img, txt, float(lam), gap)
        length = float(np.linalg.norm(gap_vector(img_s, txt_s)))
        recall = rank = None
        if matches is not None:
            ranks = matched_ranks(img_s[queries], txt_s, matches[queries])
            recall, rank = float(np.mean(ranks == 1)), float(np.mean(ranks))
        out.append(
            ShiftPoint(float(lam), length, recall, rank,
                       int(len(queries)) if matches is not None else 0))
    return out


# ---- joint 2-D projection -----------------------------------------------------------------------
PROJECTION_METHODS = ("gap", "pca", "umap")
DEFAULT_PROJECTION = "gap"
PROJECTION_NAMES = {"gap": "gap-aligned", "pca": "PCA", "umap": "UMAP"}


@dataclass
class LinearMap:
    """x -> (x - centre) @ axes: fixed 2-D axes, so other points (the same data shifted along the
    gap) are drawn in the same frame. `explained`: the share of the fitted points' variance along
    each axis; `note`: anything the picture should say about how the axes were chosen."""
    kind: str                 # "gap" or "pca"
    centre: np.ndarray        # [D]
    axes: np.ndarray          # [D, 2], orthonormal columns
    explained: list[float]
    note: str = ""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.centre) @ self.axes).astype(np.float32)


@dataclass
class Projection:
    """Image and text points in one shared 2-D map. Indices refer to the caller's arrays."""
    method: str
    xy_image: np.ndarray          # [n, 2]
    xy_text: np.ndarray           # [m, 2]
    image_indices: np.ndarray     # which images were drawn (all, or a sample)
    text_indices: np.ndarray
    centroid_image: np.ndarray    # [2]; linear maps: the mean of all images mapped, sampled or not
    centroid_text: np.ndarray     # [2]
    total_points: int             # images + texts before sampling
    explained_variance: list[float] | None = None  # linear maps: share of variance along each axis
    fit: LinearMap | None = None  # the axes (gap, pca), to draw shifted points in the same frame
    lam: float = 0.0              # the shift along the gap of the points drawn
    fixed_axes: bool = False      # the axes were fitted on other points (the unshifted data)
    frame: tuple | None = None    # ((x0, x1), (y0, y1)) to draw in, kept the same across shifts

    @property
    def sample_size(self) -> int:
        return len(self.image_indices) + len(self.text_indices)

    @property
    def sampled(self) -> bool:
        return self.sample_size < self.total_points

    def extent(self, *others: Projection, pad: float = 0.05) -> tuple:
        """((x0, x1), (y0, y1)) holding every point and centroid of this map and of `others`, padded."""
        xy = np.concatenate([np.concatenate([p.xy_image, p.xy_text, [p.centroid_image, p.centroid_text]])
                             for p in (self, *others)]).astype(np.float64)
        lo, hi = xy.min(0), xy.max(0)
        margin = pad * np.maximum(hi - lo, 1e-6)
        return tuple((float(a), float(b)) for a, b in zip(lo - margin, hi + margin))

    @property
    def centroid_offset(self) -> np.ndarray:
        """Image centroid minus text centroid in the map [2]; for the gap-aligned map [|gap|, 0]."""
        return np.asarray(self.centroid_image, np.float64) - np.asarray(self.centroid_text, np.float64)

    def pair_lines(self, matches) -> tuple[np.ndarray, np.ndarray]:
        """End points ([k, 2] image side, [k, 2] text side) of the matched pairs whose image and
        text are both drawn."""
        if matches is None:
            return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
        matches = np.asarray(matches, dtype=np.int64)
        position = {int(t): j for j, t in enumerate(self.text_indices)}
        rows, cols = [], []
        for i, image in enumerate(self.image_indices):
            j = position.get(int(matches[image]), -1) if matches[image] >= 0 else -1
            if j >= 0:
                rows.append(i)
                cols.append(j)
        return self.xy_image[rows].reshape(-1, 2), self.xy_text[cols].reshape(-1, 2)


def _sample_for_projection(n: int, m: int, max_points: int, matches, rng) -> tuple[np.ndarray, np.ndarray]:
    if n + m <= max_points:
        return np.arange(n), np.arange(m)
    # A modality that fits in half the budget is kept whole (e.g. a few class texts); otherwise halves.
    half = max_points // 2
    if m <= half:
        k_txt, k_img = m, max_points - m
    elif n <= half:
        k_img, k_txt = n, max_points - n
    else:
        k_txt, k_img = half, max_points - half
    img_idx = _sample(n, k_img, rng)
    if k_txt >= m:
        return img_idx, np.arange(m)
    # Prefer the texts that match sampled images, so pair lines survive sampling.
    preferred = np.array([], dtype=np.int64)
    if matches is not None:
        preferred = np.unique(matches[img_idx][matches[img_idx] >= 0])[:k_txt]
    rest = np.setdiff1d(np.arange(m), preferred)
    extra = rng.choice(rest, size=k_txt - len(preferred), replace=False) if k_txt > len(preferred) else []
    return img_idx, np.sort(np.concatenate([preferred, np.asarray(extra, dtype=np.int64)]))


def _centred_cov(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(centre [D], covariance [D, D], total variance) of the rows of x, in float64."""
    centre = x.mean(0, dtype=np.float64)
    centred = x.astype(np.float64) - centre
    cov = centred.T @ centred / max(len(x) - 1, 1)
    return centre, cov, float(np.trace(cov)) or 1.0


def _top_axes(cov: np.ndarray, k: int) -> np.ndarray:
    """The k leading eigenvectors of a covariance [D, k], each signed so that its largest
    component is positive (the same data always gives the same picture)."""
    values, vectors = np.linalg.eigh(cov)
    axes = vectors[:, np.argsort(values)[::-1][:k]]
    return axes * np.where(axes[np.abs(axes).argmax(0), np.arange(k)] < 0, -1.0, 1.0)


def fit_pca(x: np.ndarray) -> LinearMap:
    """The first two principal axes of the rows of x (centred on their mean)."""
    centre, cov, total = _centred_cov(x)
    axes = _top_axes(cov, 2)
    return LinearMap("pca", centre, axes, [float(a @ cov @ a / total) for a in axes.T])


def fit_gap_axes(x: np.ndarray, gap: np.ndarray) -> LinearMap:
    """Gap-aligned axes for the joint points x (images and texts, centred on their mean): axis 1 is
    the unit gap vector (mean image - mean text), axis 2 the first principal component of the points
    once their component along axis 1 is removed. Axis 1 puts the two centroids exactly |gap| apart
    and axis 2 does not separate them at all. With no gap (the centroids coincide) the axes are PCA's."""
    gap = np.asarray(gap, dtype=np.float64)
    norm = float(np.linalg.norm(gap))
    if norm < 1e-9:
        pca = fit_pca(x)
        pca.note = "the two centroids coincide, so there is no gap direction: the axes are PCA's"
        return pca
    u = gap / norm
    centre, cov, total = _centred_cov(x)
    across = np.eye(len(u)) - np.outer(u, u)             # removes the component along the gap
    v = _top_axes(across @ cov @ across, 1)[:, 0]
    v = v - (v @ u) * u                                  # exactly orthogonal despite rounding
    v /= np.linalg.norm(v) or 1.0
    axes = np.column_stack([u, v])
    return LinearMap("gap", centre, axes, [float(a @ cov @ a / total) for a in axes.T])


_UMAP_CACHE = LRU(4)  # UMAP takes seconds; a page that re-draws the same map must not pay again


def _umap_2d(x: np.ndarray, seed: int, n_neighbors: int) -> np.ndarray:
    """UMAP of the rows of x, cached under everything the map depends on: the data (its bytes, shape
    and dtype) and every setting passed to umap.UMAP (the neighbours actually used among them)."""
    settings = dict(n_components=2, n_neighbors=min(int(n_neighbors), len(x) - 1), metric="cosine",
                    random_state=int(seed))
    x = np.ascontiguousarray(x)
    key = (hashlib.sha1(x.tobytes()).hexdigest(), x.shape, x.dtype.str, tuple(sorted(settings.items())))
    cached = _UMAP_CACHE.get(key)
    if cached is not None:
        return cached
    try:
        import umap  # optional: umap-learn
    except ImportError:
        raise ProjectionError("UMAP needs the optional package umap-learn (pip install umap-learn); "
                              "the gap-aligned map and PCA work without it") from None
    xy = umap.UMAP(**settings).fit_transform(x).astype(np.float32)
    _UMAP_CACHE.put(key, xy)
    return xy


def project_2d(image_emb: np.ndarray, text_emb: np.ndarray, method: str = DEFAULT_PROJECTION, *, matches=None,
               max_points: int = DEFAULT_MAX_POINTS, seed: int = 0, n_neighbors: int = 15,
               fit: LinearMap | None = None, lam: float = 0.0) -> Projection:
    """Project images and texts together into 2-D. "gap" (default): axis 1 along the gap vector,
    axis 2 the main direction of what remains (fit_gap_axes); "pca": the first two principal axes;
    both exact and instant. "umap": needs umap-learn, cached per data. Above `max_points` in total a
    seeded sample is drawn (the axes are fitted on it; the gap vector and the centroids use all).

    `fit`: the axes of an earlier linear projection (e.g. of the unshifted embeddings) to draw these
    points in the same frame instead of fitting new ones; `lam` records the shift they were made with."""
    if method not in PROJECTION_METHODS:
        raise ProjectionError(f"unknown projection {method!r}: use gap, pca or umap")
    img, txt, matches = _check(image_emb, text_emb, matches)
    if len(img) + len(txt) < 3:
        raise ProjectionError("a 2-D map needs at least three points")
    img_idx, txt_idx = _sample_for_projection(len(img), len(txt), max_points, matches,
                                              np.random.default_rng(seed))
    joint = np.concatenate([img[img_idx], txt[txt_idx]])
    if method == "umap":
        xy = _umap_2d(joint, seed, n_neighbors)
        xy_img, xy_txt = xy[:len(img_idx)], xy[len(img_idx):]
        return Projection(method, xy_img, xy_txt, img_idx, txt_idx, xy_img.mean(0), xy_txt.mean(0),
                          len(img) + len(txt), lam=lam)
    fixed = fit is not None
    if fit is None:
        fit = fit_gap_axes(joint, gap_vector(img, txt)) if method == "gap" else fit_pca(joint)
    xy = fit(joint)
    return Projection(method, xy[:len(img_idx)], xy[len(img_idx):], img_idx, txt_idx,
                      fit(img.mean(0, dtype=np.float64)), fit(txt.mean(0, dtype=np.float64)),
                      len(img) + len(txt), list(fit.explained), fit, lam, fixed)
