"""A folder map (folder_map.FolderMap) as one Parquet file, to open the map in other tools:

    embedding-atlas map.parquet --x x --y y --image image --neighbors neighbors --text name
    FiftyOne: one sample per row, `filepath` = the `path` column (docs/using.md shows the few lines)

One row per image, in the map's order: `id` (the row number, 0-based), `path` (absolute), `name`
(relative to the indexed folder), `x`, `y`, `label` (the class folder, or "(top folder)"), `colour_by`
and `colour` (what the map was coloured by and each image's colour), `predicted` and `score` (zero-shot
or taught: the best label and its probability; a query: the cosine), one `p: <label>` column per label,
`cluster` and `cluster_name`, `mistake_rank` / `outlier_rank` (the image's place in the lists, or null),
`image` (a small JPEG as {"bytes", "path"}, the binary-object form embedding-atlas and Hugging Face
datasets read; or null) and `neighbors`: embedding-atlas's pre-computed nearest neighbours,
{"ids": [row ids], "distances": [cosine distances]}, as its own projection makes them
(embedding_atlas/projection.py: umap's nearest_neighbors with the cosine metric, the image itself
first at distance 0). The map's model, index, layout and colouring rule ride in the schema's metadata
under b"clip-explorer". Written atomically: a temporary file beside the target, renamed over it.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from explorer.embed.images import DEFAULT_LIMITS, Fit, ImageError, Limits, encode_picture, load_image
from explorer.embed.vectors import normalize

DEFAULT_NEIGHBORS = 15        # as embedding-atlas's (and UMAP's) default n_neighbors
THUMB_SIZE = 128              # pixels, the longer side
IMAGE_MODES = ("thumbnail", "none")
METADATA_KEY = b"clip-explorer"


def nearest_neighbors(embeddings: np.ndarray, k: int = DEFAULT_NEIGHBORS, batch: int = 4096
                      ) -> tuple[np.ndarray, np.ndarray]:
    """[N, k'] row ids and cosine distances (1 - cosine, clipped at 0) of each row's k' = min(k, N)
    nearest rows by exact cosine (FAISS flat inner product), itself included, nearest first."""
    import faiss

    f = np.ascontiguousarray(normalize(np.asarray(embeddings, np.float32)))
    k = max(1, min(int(k), len(f)))
    flat = faiss.IndexFlatIP(f.shape[1])
    flat.add(f)
    ids, distances = [], []
    for start in range(0, len(f), batch):
        sims, found = flat.search(f[start:start + batch], k)
        ids.append(found.astype(np.int64))
        distances.append(np.clip(1.0 - sims, 0.0, 2.0).astype(np.float32))
    return np.concatenate(ids), np.concatenate(distances)


def _ranks(entries, key: str, n: int) -> list:
    out = [None] * n
    for entry in entries or []:
        row = entry.get(key)
        if row is not None and out[row] is None:
            out[row] = int(entry["rank"])
    return out


def _thumbnail(path: str, name: str, limits: Limits, size: int) -> dict | None:
    """A small JPEG of one image as {"bytes", "path"}, or None when it is gone or does not decode."""
    try:
        thumb = load_image(path, limits, fit=Fit((size, size), "cap"))
    except (ImageError, OSError):
        return None
    thumb.thumbnail((size, size))
    return {"bytes": encode_picture(thumb.convert("RGB"), "JPEG", quality=80),
            "path": Path(name).with_suffix(".jpg").name}


def _thumbnails(paths: list[str], names: list[str], limits: Limits, size: int,
                progress: Callable[[int, int], None] | None, workers: int | None = None) -> list:
    """Every image's thumbnail, in order, decoded on `workers` threads (default: up to 8, one per core)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or min(8, os.cpu_count() or 1)
    out = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, thumb in enumerate(pool.map(_thumbnail, paths, names, [limits] * len(paths),
                                              [size] * len(paths)), start=1):
            out.append(thumb)
            if progress is not None and (done % 64 == 0 or done == len(paths)):
                progress(done, len(paths))
    return out


def _colour_columns(folder_map) -> dict:
    colouring, n = folder_map.colouring, len(folder_map.names)
    columns = {"colour_by": [colouring.by] * n, "colour": colouring.labels() or [None] * n,
               "predicted": [None] * n,
               "score": [None] * n if colouring.scores is None else np.asarray(colouring.scores, np.float64)}
    if colouring.probabilities is not None:
        best = np.asarray(colouring.probabilities).argmax(axis=1)
        columns["predicted"] = [colouring.categories[j] for j in best.tolist()]
        for j, label in enumerate(colouring.categories):
            columns[f"p: {label}"] = np.asarray(colouring.probabilities[:, j], np.float64)
    return columns


def map_columns(folder_map, *, neighbors: int = DEFAULT_NEIGHBORS, images: str = "thumbnail",
                thumb_size: int = THUMB_SIZE, limits: Limits = DEFAULT_LIMITS,
                progress: Callable[[int, int], None] | None = None) -> dict:
    """The table's columns, by name (see the module docstring)."""
    if images not in IMAGE_MODES:
        raise ValueError(f"images {images!r}: use one of {', '.join(IMAGE_MODES)}")
    names, n = list(folder_map.names), len(folder_map.names)
    paths, xy, found = folder_map.paths(), np.asarray(folder_map.xy, np.float64), folder_map.clustering
    ids, distances = nearest_neighbors(folder_map.embeddings, neighbors)
    lists = folder_map.lists or {}
    columns = {"id": np.arange(n, dtype=np.int64), "path": paths, "name": names, "x": xy[:, 0], "y": xy[:, 1],
               "label": folder_map.folders, **_colour_columns(folder_map),
               "cluster": [None] * n if found is None else found.labels.astype(np.int64),
               "cluster_name": ([None] * n if found is None
                                else [found.name_of(c) for c in found.labels.tolist()]),
               "mistake_rank": _ranks(lists.get("mistakes"), "row", n),
               "outlier_rank": _ranks(lists.get("outliers"), "row", n),
               "image": (_thumbnails(paths, names, limits, thumb_size, progress) if images == "thumbnail"
                         else [None] * n),
               "neighbors": [{"ids": i, "distances": d} for i, d in zip(ids.tolist(), distances.tolist())]}
    return columns


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ValueError("writing the map as Parquet needs pyarrow: pip install pyarrow") from None
    return pyarrow, pyarrow.parquet


def map_table(folder_map, **options):
    """The map as a pyarrow Table, with the map's description in the schema metadata."""
    pa, _ = _pyarrow()

    columns = map_columns(folder_map, **options)
    types = {"image": pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
             "neighbors": pa.struct([("ids", pa.list_(pa.int64())), ("distances", pa.list_(pa.float32()))]),
             "mistake_rank": pa.int64(), "outlier_rank": pa.int64(), "cluster": pa.int64(),
             "predicted": pa.string(), "cluster_name": pa.string(), "colour": pa.string(),
             "score": pa.float64()}
    arrays = {k: pa.array(v, type=types.get(k)) for k, v in columns.items()}
    about = {"model": folder_map.model, "index": folder_map.index, "root": folder_map.root,
             "layout": {"method": folder_map.layout.method, "settings": folder_map.layout.settings},
             "colouring": folder_map.colouring.rule, "neighbors": "cosine distance, the image itself first"}
    return pa.table(arrays, metadata={METADATA_KEY: json.dumps(about, default=str).encode()})


def write_parquet(folder_map, path: str | os.PathLike, **options) -> Path:
    """Write the map to `path` (.parquet) atomically; returns the path. Options as map_columns."""
    _, pq = _pyarrow()
    target = Path(path).expanduser()
    table = map_table(folder_map, **options)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
