"""Time the modality-gap measures, the shift readout and the PCA projection on synthetic embeddings.

    .venv/bin/python bench/bench_gap.py [--dim 512] [--sizes 10000,50000] [--quick] [--json]

For each size N: N images and N captions (pair i <-> i) in two offset cones, like CLIP's. The
projection samples above 10,000 points in total, and the pairwise statistics above 2,000 points
per modality; the printed sample sizes show it. --quick: one size, 2,000.

--json prints one JSON document last: {"dim": ..., "runs": [one per size: images, texts, measures_s,
pca_s, shift_s, total_s, gap_length, recall_at_1, ...]}, plus total_s of the largest size.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from explorer.science.gap import evaluate_shift, gap_measures, project_2d


def synthetic(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(n, dim)).astype(np.float32)
    img = content + 4.0 * rng.normal(size=(n, dim)).astype(np.float32) + 6 * rng.normal(size=dim).astype(
        np.float32) / np.sqrt(dim) * 4
    txt = content + 6 * rng.normal(size=dim).astype(np.float32) / np.sqrt(dim) * 4
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    return img, txt


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--sizes", default=None,
                        help="images per run (as many captions); default 10000,50000")
    parser.add_argument("--quick", action="store_true", help="one small size (2,000)")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    sizes = args.sizes or ("2000" if args.quick else "10000,50000")
    runs = []
    for n in (int(s) for s in sizes.split(",")):
        img, txt = synthetic(n, args.dim)
        matches = np.arange(n)
        measures, t_measures = timed(gap_measures, img, txt, matches)
        projection, t_pca = timed(project_2d, img, txt, "pca", matches=matches)
        shift, t_shift = timed(evaluate_shift, img, txt, [0.5], matches)
        print(f"N={n:,} images + {n:,} texts, {args.dim}-d:")
        print(f"  measures   {t_measures:6.2f} s  (gap {measures.gap_length:.3f}; pairwise stats on "
              f"{measures.pair_sample['images']:,}+{measures.pair_sample['texts']:,} sampled points)")
        print(
            f"  PCA map    {t_pca:6.2f} s  ({projection.sample_size:,} of {projection.total_points:,} "
            "points drawn"
            f"{', sampled' if projection.sampled else ''})")
        print(
            f"  shift λ=.5 {t_shift:6.2f} s  (R@1 {shift[0].recall_at_1:.3f} on {shift[0].queries:,} queries "
            f"ranked against all {n:,} texts)")
        print(f"  total      {t_measures + t_pca + t_shift:6.2f} s")
        runs.append({"images": n, "texts": n, "measures_s": round(t_measures, 4), "pca_s": round(t_pca, 4),
                     "shift_s": round(t_shift, 4), "total_s": round(t_measures + t_pca + t_shift, 4),
                     "gap_length": float(measures.gap_length), "map_points": int(projection.sample_size),
                     "recall_at_1": float(shift[0].recall_at_1)})
    if args.json:
        largest = max(runs, key=lambda run: run["images"])
        print(json.dumps({"dim": args.dim, "runs": runs, "total_s": largest["total_s"]}))


if __name__ == "__main__":
    main()
