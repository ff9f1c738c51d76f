"""Folder maps: every image of an index a point in 2-D, cached beside the index and extended as it grows.

Methods (LAYOUT_METHODS):
- "umap": UMAP (McInnes, Healy and Melville 2018) as umap-learn computes it, cosine metric, seeded
  (random_state) so the same inputs give the same map. umap-learn then runs its optimisation on one
  thread; seed=None lets it use every core and gives a different map each time.
- "pca": the first two principal axes, exact (a float32 Gram matrix and an eigendecomposition of it;
  about 0.3 s for 100,000 x 512 on two cores): the instant map while UMAP runs. Each axis is signed so
  that its largest component is positive, as in gap.py. UMAP of fewer than four points is also PCA.

The cache (`map_of_index`): `<index folder>/maps/<method>-<key>.npz`, where the key is a digest of the
index's model identity and weights fingerprint, the method and its settings (not the names: a grown
index finds its old map). It holds the names, the coordinates, which rows were placed rather than fitted,
a fingerprint of each row's embedding (four fixed random projections: a file embedded again with other
pixels counts as new) and PCA's centre and axes. Written atomically (a temp file in the same folder,
fsync, rename), by the app's process only: a cancelled or failed job leaves the old file or none.

When the index has grown, the names already in the map keep their coordinates, removed names are
dropped and new (or changed) names are PLACED without refitting:
- PCA: projected on the stored axes, which is exactly where a fit of the old points puts them.
- UMAP: the first step of umap-learn's own `UMAP.transform`: each new point's k nearest placed points
  by cosine (exact, blocked matrix products), their membership strengths as transform computes them
  (`smooth_knn_dist` with local connectivity 1 - 1 = 0, then `compute_membership_strengths`,
  bipartite), and the strength-weighted mean of their coordinates (`init_graph_transform`).
  transform then optimises the new points for some epochs; this stops at the initialisation, which
  needs no fitted model on disk (a fitted UMAP holds its training data and graph, and a pickle in an
  index folder is code that runs when loaded), stays deterministic and takes a second for 1,000 new
  points: each lands among the points it resembles most.
When more than `REFIT_SHARE` (20%) of the map's points would be placed rather than fitted, the map is
fitted again.

`LayoutJob` runs `map_of_index` on a thread of the app and UMAP's fit in a worker process
(`python -m explorer.science.map_layout --worker`, a plain subprocess: multiprocessing's spawn and
forkserver re-import the app's main module, which imports torch and gradio). Cancel kills the worker,
so even the neighbour search of 100,000 points stops at once; progress comes from umap-learn's epoch
counter (its tqdm bar, written to a hook instead of a terminal).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explorer.embed.vectors import normalize

log = logging.getLogger(__name__)

LAYOUT_METHODS = ("umap", "pca")
REFIT_SHARE = 0.2          # refit when more than this share of the map would be placed, not fitted
MAP_FOLDER = "maps"
FORMAT_VERSION = 1
MIN_UMAP_POINTS = 4        # umap-learn's spectral start needs more points than this minus one
FINGERPRINT_TOLERANCE = 1e-4
_FINGERPRINT_SEED = 26_2026
_BLOCK_BYTES = 64 << 20    # one block of query x anchor cosines while placing

Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]
Stage = Callable[[str], None]


class LayoutCancelled(Exception):
    """The layout was cancelled (should_stop said so, or LayoutJob.cancel)."""


class LayoutError(ValueError):
    """A layout cannot be made (unknown method, bad input, UMAP not installed, the worker failed)."""


@dataclass
class Layout:
    """A 2-D map of named points; rows of `xy` follow `names`. `fitted`: the points the layout's fit saw;
    `placed`: points among these added later without refitting; `seconds`: what this call took;
    `source`: "fitted", "placed" (new points placed into a stored map), or "cache" (the stored map as is,
    removed names dropped); `note`: one sentence for the page."""
    names: list[str]
    xy: np.ndarray
    method: str
    settings: dict
    fitted: int
    placed: int
    seconds: float
    source: str = "fitted"
    note: str = ""
    fit_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "names": list(self.names), "xy": np.round(self.xy.astype(np.float64), 4).tolist(),
            "method": self.method, "settings": dict(self.settings), "fitted": int(self.fitted),
            "placed": int(self.placed), "seconds": round(float(self.seconds), 4), "source": self.source,
            "note": self.note, "fit_seconds": round(float(self.fit_seconds), 4),
        }


@dataclass
class _Stored:
    """What a map file holds."""
    names: list[str]
    xy: np.ndarray             # [N, 2] float32
    fingerprint: np.ndarray    # [N, 4] float32
    placed_rows: np.ndarray    # [N] bool
    meta: dict
    pca: tuple[np.ndarray, np.ndarray] | None = None   # centre [D], axes [D, 2]
    extras: dict = field(default_factory=dict)


def _check(embeddings) -> np.ndarray:
    if np.ndim(embeddings) != 2:
        raise LayoutError(f"expected a 2-D array of embeddings, got shape {np.shape(embeddings)}")
    x = normalize(embeddings)
    if not np.isfinite(x).all():
        raise LayoutError("the embeddings hold NaN or infinite values")
    return x


def _check_method(method: str) -> None:
    if method not in LAYOUT_METHODS:
        raise LayoutError(f"unknown layout method {method!r}: use one of {', '.join(LAYOUT_METHODS)}")


def layout_settings(method: str, *, seed=0, n_neighbors: int = 15, min_dist: float = 0.1) -> dict:
    """The settings a map depends on (PCA depends on none)."""
    _check_method(method)
    if method == "pca":
        return {}
    return {"seed": None if seed is None else int(seed), "n_neighbors": int(n_neighbors),
            "min_dist": float(min_dist)}


# ---- fitting ---------------------------------------------------------------------------------------

def _pca(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xy [N, 2], centre [D], axes [D, 2]) of the rows of x: the two leading eigenvectors of the
    covariance, each signed so that its largest component is positive."""
    if len(x) == 0:
        d = x.shape[1]
        return np.zeros((0, 2), np.float32), np.zeros(d, np.float32), np.eye(d, 2, dtype=np.float32)
    centre = x.mean(0, dtype=np.float64).astype(np.float32)
    if len(x) < 2:
        axes = np.eye(x.shape[1], 2, dtype=np.float32)
    else:
        centred = x - centre
        gram = (centred.T @ centred).astype(np.float64) / (len(x) - 1)
        values, vectors = np.linalg.eigh(gram)
        axes = vectors[:, np.argsort(values)[::-1][:2]]
        axes = axes * np.where(axes[np.abs(axes).argmax(0), np.arange(axes.shape[1])] < 0, -1.0, 1.0)
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1]))).astype(np.float32)
    return _project(x, centre, axes), centre, axes


def _project(x: np.ndarray, centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray((x - centre) @ axes, dtype=np.float32)


class _Stop(Exception):
    """Raised from inside umap-learn's epoch loop to stop it."""


class _EpochHook:
    """A file for umap-learn's tqdm bar ("{n}/{total}"): reports epochs and stops the loop on request."""
    _COUNT = re.compile(r"(\d+)/(\d+)")

    def __init__(self, progress: Progress | None, should_stop: ShouldStop | None, on_stage: Stage | None):
        self.progress, self.should_stop, self.on_stage = progress, should_stop, on_stage
        self.started = False
        self.stopped = False

    def write(self, text: str) -> int:
        found = self._COUNT.findall(text)
        if found and not self.stopped:
            done, total = (int(v) for v in found[-1])
            if not self.started:
                self.started = True
                if self.on_stage:
                    self.on_stage("laying out")
            if self.progress:
                self.progress(done, total)
            if self.should_stop and self.should_stop():
                self.stopped = True
                raise _Stop
        return len(text)

    def flush(self) -> None:
        pass


def _umap(x: np.ndarray, seed, n_neighbors: int, min_dist: float, progress, should_stop, on_stage):
    try:
        import umap  # umap-learn
    except ImportError:
        raise LayoutError("UMAP needs the package umap-learn (pip install umap-learn); PCA works without it"
                          ) from None
    hook = _EpochHook(progress, should_stop, on_stage)
    model = umap.UMAP(
        n_components=2, n_neighbors=max(2, min(int(n_neighbors), len(x) - 1)), min_dist=float(min_dist),
        metric="cosine", random_state=None if seed is None else int(seed),
        tqdm_kwds={"disable": False, "file": hook, "bar_format": "{n}/{total}", "mininterval": 0.25})
    if on_stage:
        on_stage("finding neighbours")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", numba's notes
            xy = model.fit_transform(x)
    except _Stop:
        raise LayoutCancelled("the layout was cancelled") from None
    if hook.stopped:
        raise LayoutCancelled("the layout was cancelled")
    return np.ascontiguousarray(xy, dtype=np.float32)


def fit_layout(embeddings, method: str = "umap", *, seed=0, n_neighbors: int = 15, min_dist: float = 0.1,
               progress: Progress | None = None, should_stop: ShouldStop | None = None,
               on_stage: Stage | None = None) -> np.ndarray:
    """[N, 2] float32 coordinates of the rows of `embeddings` (normalised first). PCA: exact and instant.
    UMAP: umap-learn, cosine metric; `progress(epoch, epochs)` as it optimises; `should_stop` is asked
    at each progress report (every quarter second at most) and before starting: True raises
    LayoutCancelled (the neighbour search before the epochs cannot be interrupted in-process: LayoutJob
    kills its worker instead). `on_stage("finding neighbours" | "laying out")` names the stage."""
    _check_method(method)
    x = _check(embeddings)
    if should_stop and should_stop():
        raise LayoutCancelled("the layout was cancelled")
    if method == "pca" or len(x) < MIN_UMAP_POINTS:
        xy = _pca(x)[0]
        if progress:
            progress(1, 1)
        return xy
    return _umap(x, seed, n_neighbors, min_dist, progress, should_stop, on_stage)


# ---- placing new points ----------------------------------------------------------------------------

def _nearest(anchors: np.ndarray, queries: np.ndarray, k: int,
             should_stop: ShouldStop | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices [M, k], cosine distances [M, k], nearest first) of each query among the anchors, exact."""
    k = min(k, len(anchors))
    rows = max(1, _BLOCK_BYTES // (4 * max(len(anchors), 1)))
    idx = np.empty((len(queries), k), np.int64)
    dist = np.empty((len(queries), k), np.float32)
    for start in range(0, len(queries), rows):
        if should_stop and should_stop():
            raise LayoutCancelled("the layout was cancelled")
        sims = queries[start:start + rows] @ anchors.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(anchors) else \
            np.broadcast_to(np.arange(len(anchors)), (len(sims), k)).copy()
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        idx[start:start + rows] = np.take_along_axis(top, order, axis=1)
        dist[start:start + rows] = np.maximum(1.0 - np.take_along_axis(top_sims, order, axis=1), 0.0)
    return idx, dist


def umap_weights(dists: np.ndarray, k: int) -> np.ndarray:
    """Each new point's membership strengths to its k nearest anchors [M, k] (nearest first), as
    umap-learn's UMAP.transform computes them: smooth_knn_dist over the whole batch with local
    connectivity 1 - 1 = 0, then compute_membership_strengths (bipartite)."""
    from umap.umap_ import compute_membership_strengths, smooth_knn_dist
    dists = np.ascontiguousarray(dists, dtype=np.float32)
    idx = np.tile(np.arange(dists.shape[1], dtype=np.int64), (len(dists), 1))
    sigmas, rhos = smooth_knn_dist(dists, float(k), local_connectivity=0.0)
    _, _, vals, _ = compute_membership_strengths(idx, dists, sigmas, rhos, bipartite=True)
    return vals.reshape(dists.shape).astype(np.float64)


def _graph_mean(idx: np.ndarray, strengths: np.ndarray, anchor_xy: np.ndarray) -> np.ndarray:
    """umap-learn's init_graph_transform: a point with strength exactly 1 to an anchor (its duplicate)
    sits on the first such anchor (by anchor order, as its CSR row is ordered); otherwise the
    strength-weighted mean of its anchors. A row whose strengths all underflowed to 0 (NaN there) takes
    the plain mean."""
    anchor_xy = np.asarray(anchor_xy, np.float64)
    sums = strengths.sum(1, keepdims=True)
    weights = np.where(sums > 0, strengths / np.where(sums > 0, sums, 1.0), 1.0 / strengths.shape[1])
    xy = np.einsum("mk,mkd->md", weights, anchor_xy[idx])
    ones = strengths == 1.0
    for row in np.flatnonzero(ones.any(1)):
        xy[row] = anchor_xy[idx[row][ones[row]].min()]
    return xy.astype(np.float32)


def place_points(anchor_embeddings: np.ndarray, anchor_xy: np.ndarray, new_embeddings: np.ndarray,
                 k: int = 15, should_stop: ShouldStop | None = None) -> np.ndarray:
    """[M, 2] coordinates for new points in a UMAP map: UMAP.transform's initialisation from their k
    nearest anchors by cosine (module docstring)."""
    new = normalize(new_embeddings)
    if len(new) == 0:
        return np.zeros((0, 2), np.float32)
    if len(anchor_embeddings) == 0:
        raise LayoutError("there are no placed points to place new ones among")
    k = max(1, min(int(k), len(anchor_embeddings)))
    idx, dist = _nearest(normalize(anchor_embeddings), new, k, should_stop)
    return _graph_mean(idx, umap_weights(dist, k), anchor_xy)


# ---- the cache on disk -----------------------------------------------------------------------------

def _fingerprint(x: np.ndarray) -> np.ndarray:
    r = np.random.default_rng(_FINGERPRINT_SEED).standard_normal((x.shape[1], 4)).astype(np.float32)
    return np.ascontiguousarray(x @ r, dtype=np.float32)


def map_key(index, method: str, settings: dict) -> str:
    """The digest a map is stored under: the index's model identity and weights, method, settings."""
    doc = {"identity": index.identity, "weights": index.weights_digest, "method": method,
           "settings": settings, "version": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def map_path(index, method: str, settings: dict) -> Path:
    return Path(index.folder) / MAP_FOLDER / f"{method}-{map_key(index, method, settings)[:20]}.npz"


def _pack_names(names: list[str]) -> np.ndarray:
    blob = "\0".join(names).encode("utf-8", "surrogatepass")
    return np.frombuffer(blob, dtype=np.uint8)


def _unpack_names(blob: np.ndarray, count: int) -> list[str]:
    if count == 0:
        return []
    names = bytes(blob).decode("utf-8", "surrogatepass").split("\0")
    if len(names) != count:
        raise ValueError("the names do not match the coordinates")
    return names


def _write_atomic(path: Path, data) -> None:
    """A temp file in the same folder (unique per thread and process), fsync, rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _save(path: Path, stored: _Stored) -> bool:
    """Write a map file; False (and a log line) when the folder cannot be written (read-only index)."""
    arrays = {"names": _pack_names(stored.names), "xy": stored.xy, "fingerprint": stored.fingerprint,
              "placed_rows": stored.placed_rows,
              "meta": np.frombuffer(json.dumps(stored.meta).encode(), dtype=np.uint8)}
    if stored.pca is not None:
        arrays["pca_centre"], arrays["pca_axes"] = stored.pca
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, buffer.getbuffer())
        return True
    except OSError as exc:
        log.warning("could not save the map %s: %s", path, exc)
        return False


def _load(path: Path, key: str) -> _Stored | None:
    """The map stored at `path`, or None when there is none or it is damaged or made for another key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            xy = np.asarray(data["xy"], np.float32)
            stored = _Stored(_unpack_names(data["names"], len(xy)), xy,
                             np.asarray(data["fingerprint"], np.float32),
                             np.asarray(data["placed_rows"], bool), meta)
            if "pca_centre" in data.files:
                stored.pca = (np.asarray(data["pca_centre"], np.float32),
                              np.asarray(data["pca_axes"], np.float32))
        ok = (meta.get("key") == key and xy.shape == (len(stored.names), 2) and np.isfinite(xy).all()
              and stored.fingerprint.shape == (len(xy), 4) and stored.placed_rows.shape == (len(xy),))
        return stored if ok else None
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        log.warning("ignoring a damaged map file %s: %s", path, exc)
        return None


def _layout(stored: _Stored, method: str, settings: dict, source: str, note: str, start: float) -> Layout:
    return Layout(list(stored.names), stored.xy, method, dict(settings), int(stored.meta.get("fitted", 0)),
                  int(stored.placed_rows.sum()), time.perf_counter() - start, source, note,
                  float(stored.meta.get("fit_seconds", 0.0)))


def cached_layout(index, method: str = "umap", *, names=None, seed=0, n_neighbors: int = 15,
                  min_dist: float = 0.1) -> Layout | None:
    """The stored map for these settings as it was saved, computing nothing (None when there is none);
    with `names`, only the rows among them (in the map's order)."""
    start = time.perf_counter()
    settings = layout_settings(method, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
    key = map_key(index, method, settings)
    stored = _load(map_path(index, method, settings), key)
    if stored is None:
        return None
    if names is not None:
        wanted = set(names)
        keep = np.array([n in wanted for n in stored.names], bool)
        stored = _Stored([n for n, k in zip(stored.names, keep) if k], stored.xy[keep],
                         stored.fingerprint[keep], stored.placed_rows[keep], stored.meta, stored.pca)
    return _layout(stored, method, settings, "cache", "the stored map", start)


# ---- map_of_index ----------------------------------------------------------------------------------

def _extend(stored: _Stored, names: list[str], x: np.ndarray, fingerprint: np.ndarray, method: str,
            k: int, refit_share: float, should_stop, on_stage) -> tuple[_Stored, int, int] | None:
    """The stored map brought up to `names`: kept rows keep their coordinates, new or changed ones are
    placed. None when a refit is due. Returns (map, new points placed, rows dropped)."""
    position = {n: i for i, n in enumerate(stored.names)}
    rows = np.array([position.get(n, -1) for n in names], np.int64)
    same = rows >= 0
    same[same] = np.abs(stored.fingerprint[rows[same]] - fingerprint[same]).max(1) <= FINGERPRINT_TOLERANCE
    new = ~same
    placed_rows = np.zeros(len(names), bool)
    placed_rows[same] = stored.placed_rows[rows[same]]
    placed_rows[new] = True
    if len(names) and placed_rows.sum() / len(names) > refit_share:
        return None
    if new.any() and same.sum() < MIN_UMAP_POINTS:
        return None
    xy = np.zeros((len(names), 2), np.float32)
    xy[same] = stored.xy[rows[same]]
    if new.any():
        if on_stage:
            on_stage(f"placing {int(new.sum()):,} new points among {int(same.sum()):,}")
        if stored.pca is not None:
            xy[new] = _project(x[new], *stored.pca)
        else:
            xy[new] = place_points(x[same], xy[same], x[new], k=k, should_stop=should_stop)
    dropped = len(stored.names) - int(same.sum())
    grown = _Stored(list(names), xy, fingerprint, placed_rows, dict(stored.meta), stored.pca)
    return grown, int(new.sum()), dropped


def _fit(x: np.ndarray, method: str, settings: dict, key: str, names: list[str], fitter, progress,
         should_stop, on_stage) -> _Stored:
    start = time.perf_counter()
    pca = None
    if method == "pca" or len(x) < MIN_UMAP_POINTS:
        if should_stop and should_stop():
            raise LayoutCancelled("the layout was cancelled")
        xy, centre, axes = _pca(x)
        pca = (centre, axes) if method == "pca" else None
    else:
        if on_stage:
            on_stage(f"fitting UMAP to {len(x):,} points")
        xy = (fitter or fit_layout)(x, method, seed=settings["seed"], n_neighbors=settings["n_neighbors"],
                                    min_dist=settings["min_dist"], progress=progress,
                                    should_stop=should_stop, on_stage=on_stage)
        xy = np.asarray(xy, np.float32)
        if xy.shape != (len(x), 2) or not np.isfinite(xy).all():
            raise LayoutError(f"the layout came back with shape {xy.shape} or non-finite values")
    meta = {"key": key, "method": method, "settings": settings, "fitted": len(x),
            "fit_seconds": round(time.perf_counter() - start, 4), "version": FORMAT_VERSION}
    return _Stored(list(names), xy, _fingerprint(x), np.zeros(len(x), bool), meta, pca)


def map_of_index(index, names, embeddings, method: str = "umap", *, seed=0, n_neighbors: int = 15,
                 min_dist: float = 0.1, progress: Progress | None = None,
                 should_stop: ShouldStop | None = None, on_stage: Stage | None = None,
                 refit_share: float = REFIT_SHARE, fitter=None) -> Layout:
    """The map of an index's images (`names`, `embeddings` [N, D]: e.g. index.all_embeddings()), rows in
    the order of `names`. Stored on disk in the index folder per model, weights, method and settings
    (module docstring): the same inputs give the same coordinates without fitting again; a grown index
    has its new points placed into the stored map until more than `refit_share` of it is placed, then it
    is fitted again. `fitter`: what fits (default fit_layout, in this process; LayoutJob fits in a
    worker). Raises LayoutCancelled when `should_stop` says so (nothing is written then)."""
    start = time.perf_counter()
    names = [str(n) for n in names]
    x = _check(embeddings)
    if len(names) != len(x):
        raise LayoutError(f"got {len(names)} names for {len(x)} embeddings")
    settings = layout_settings(method, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
    key = map_key(index, method, settings)
    path = map_path(index, method, settings)
    fingerprint = _fingerprint(x)
    stored = _load(path, key)
    if stored is not None and len(stored.names) and (stored.pca is None or len(stored.pca[0]) == x.shape[1]):
        extended = _extend(stored, names, x, fingerprint, method, settings.get("n_neighbors", 15),
                           refit_share, should_stop, on_stage)
        if extended is not None:
            grown, added, dropped = extended
            if added or dropped or grown.names != stored.names:
                _save(path, grown)
            source = "placed" if added else "cache"
            note = (f"{added:,} new points placed into the stored map" if added else "the stored map") + (
                f", {dropped:,} removed" if dropped else "")
            return _layout(grown, method, settings, source, note, start)
    fresh = _fit(x, method, settings, key, names, fitter, progress, should_stop, on_stage)
    _save(path, fresh)
    note = f"fitted to {len(x):,} points" + (" (PCA: UMAP needs four or more)" if
                                              method == "umap" and len(x) < MIN_UMAP_POINTS else "")
    return _layout(fresh, method, settings, "fitted", note, start)


# ---- the background job ----------------------------------------------------------------------------

WORKER_START_SECONDS = 120.0   # importing numpy and umap-learn on a busy machine
_LIVE_WORKERS: set = set()
_LIVE_LOCK = threading.Lock()


def _end_workers() -> None:
    with _LIVE_LOCK:
        for process in list(_LIVE_WORKERS):
            process.kill()


class _WorkerFit:
    """A fitter (fit_layout's signature) that fits in a worker process and can be killed."""

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.killed = False
        self._lock = threading.Lock()

    def kill(self) -> None:
        with self._lock:
            self.killed = True
            if self.process is not None and self.process.poll() is None:
                self.process.kill()

    def _start(self) -> subprocess.Popen:
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, PYTHONPATH=path)
        with self._lock:
            if self.killed:
                raise LayoutCancelled("the layout was cancelled")
            self.process = subprocess.Popen(
                [sys.executable, "-m", "explorer.science.map_layout", "--worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=root, start_new_session=True)
            with _LIVE_LOCK:
                if not _LIVE_WORKERS:
                    import atexit
                    atexit.register(_end_workers)
                _LIVE_WORKERS.add(self.process)
        return self.process

    def __call__(self, x, method, *, seed=0, n_neighbors=15, min_dist=0.1, progress=None, should_stop=None,
                 on_stage=None) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if on_stage:
            on_stage("starting the layout worker")
        process = self._start()
        try:
            header = {"shape": list(x.shape), "method": method, "seed": seed, "n_neighbors": n_neighbors,
                      "min_dist": min_dist}
            try:
                process.stdin.write(json.dumps(header).encode() + b"\n")
                process.stdin.write(memoryview(x).cast("B"))
                process.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass  # the worker is gone: the reply says why
            return self._replies(process, len(x), progress, on_stage)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()
            with _LIVE_LOCK:
                _LIVE_WORKERS.discard(process)

    def _replies(self, process, n: int, progress, on_stage) -> np.ndarray:
        for line in iter(process.stdout.readline, b""):
            kind, _, rest = line.decode("utf-8", "replace").rstrip("\n").partition(" ")
            if kind == "P" and progress:
                done, total = (int(v) for v in rest.split())
                progress(done, total)
            elif kind == "S" and on_stage:
                on_stage(rest)
            elif kind == "E":
                raise LayoutError(f"the layout failed: {rest}")
            elif kind == "R":
                data = process.stdout.read(int(rest))
                if len(data) != n * 2 * 4:
                    break
                return np.frombuffer(data, dtype=np.float32).reshape(n, 2).copy()
        if self.killed:
            raise LayoutCancelled("the layout was cancelled")
        code = process.wait()
        raise LayoutError(f"the layout worker ended without a result (exit status {code}"
                          + (", out of memory?" if code == -9 else "") + ")")


class LayoutJob:
    """map_of_index in the background: a thread of this process, with UMAP's fit in a worker process
    (`worker=False`: on the thread too, where cancel waits for the next epoch). `start()`, then poll
    `status()` -> (fraction 0..1, text), `done`, `result` (a Layout) or `error` (a sentence);
    `cancel()` kills the worker, so the fit stops within a second, and nothing is written."""

    def __init__(self, index, names, embeddings, method: str = "umap", *, seed=0, n_neighbors: int = 15,
                 min_dist: float = 0.1, refit_share: float = REFIT_SHARE, worker: bool = True):
        _check_method(method)
        self._args = (index, list(names), embeddings, method)
        self._kwargs = {"seed": seed, "n_neighbors": n_neighbors, "min_dist": min_dist,
                        "refit_share": refit_share}
        self._fitter = _WorkerFit() if worker else None
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stage, self._epochs, self._started = "waiting to start", (0, 0), time.monotonic()
        self.result: Layout | None = None
        self.error: str | None = None
        self.cancelled = False

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def start(self) -> LayoutJob:
        if self._thread is None:
            self._started = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="layout-job", daemon=True)
            self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def cancel(self) -> None:
        self._cancel.set()
        if self._fitter is not None:
            self._fitter.kill()

    def _on_stage(self, text: str) -> None:
        with self._lock:
            self._stage = text

    def _on_progress(self, done: int, total: int) -> None:
        with self._lock:
            self._epochs = (done, total)

    def _run(self) -> None:
        try:
            self.result = map_of_index(*self._args, **self._kwargs, progress=self._on_progress,
                                       should_stop=self._cancel.is_set, on_stage=self._on_stage,
                                       fitter=self._fitter)
        except LayoutCancelled:
            self.cancelled = True
            self.error = "cancelled"
        except Exception as exc:  # the job's outcome is shown on the page, never raised into it
            log.exception("layout job failed")
            self.error = str(exc) or type(exc).__name__
        finally:
            self._args = None  # the embeddings are not kept
            self._finished.set()

    def status(self) -> tuple[float, str]:
        """(fraction done, a line for the page)."""
        with self._lock:
            stage, (done, total) = self._stage, self._epochs
        seconds = time.monotonic() - self._started
        if self.done:
            if self.result is not None:
                return 1.0, f"done: {self.result.note} ({self.result.seconds:.1f} s)"
            return (0.0, "cancelled") if self.cancelled else (0.0, f"failed: {self.error}")
        if total:
            return 0.3 + 0.7 * done / total, f"UMAP: epoch {done} of {total} ({seconds:.0f} s)"
        if stage == "finding neighbours":
            return 0.1, f"UMAP: finding each point's neighbours ({seconds:.0f} s)"
        return 0.05, f"{stage} ({seconds:.0f} s)"


def _worker_main() -> int:
    """The worker: a header line and float32 rows on stdin; progress lines and the result on stdout."""
    reply = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the replies
    parent = os.getppid()

    def watch() -> None:  # the app died: stop too
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()

    def send(text: str, payload: bytes = b"") -> None:
        reply.write(text.replace("\n", " ").encode() + b"\n" + payload)
        reply.flush()

    try:
        header = json.loads(sys.stdin.buffer.readline())
        n, d = (int(v) for v in header["shape"])
        data = sys.stdin.buffer.read(n * d * 4)
        x = np.frombuffer(data, dtype=np.float32).reshape(n, d)
        xy = fit_layout(x, header["method"], seed=header["seed"], n_neighbors=header["n_neighbors"],
                        min_dist=header["min_dist"], progress=lambda a, b: send(f"P {a} {b}"),
                        on_stage=lambda s: send(f"S {s}"))
    except Exception as exc:
        send(f"E {exc or type(exc).__name__}")
        return 1
    xy = np.ascontiguousarray(xy, dtype=np.float32)
    send(f"R {xy.nbytes}", xy.tobytes())
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    sys.exit(_worker_main())
