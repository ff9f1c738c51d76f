"""Search speed and recall at scale: exact vs the automatically chosen approximate index.

    .venv/bin/python bench/bench_search.py            # 1,000,000 x 512-d (about 2 minutes, ~8 GB RAM)
    .venv/bin/python bench/bench_search.py --n 200000 # smaller

The vectors are synthetic, normalised, and clustered (points around random centres, cosine to
their centre ~0.86), as embeddings of real photo collections are; uniformly random vectors on the
sphere have no neighbours worth finding and make every approximate index look bad. Queries are
held-out points from the same distribution. The approximate index is the one build_index picks for
this size (explorer.faiss_ops.auto_factory), trained, filled and tuned by the same code.
"""
from __future__ import annotations

import argparse
import time

import faiss
import numpy as np


from explorer import faiss_ops


def clustered(n: int, dim: int, clusters: int, rng: np.random.Generator, centres=None):
    if centres is None:
        centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in chunks, to keep the temporary arrays small
        m = min(100_000, n - start)
        chunk = centres[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal((m, dim), dtype=np.float32)
        x[start:start + m] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return x, centres


def per_query_ms(index, queries: np.ndarray, k: int, batch: int, repeats: int) -> float:
    """Mean milliseconds per query when queries are sent `batch` at a time."""
    index.search(queries[:batch], k)  # warm up
    start = time.perf_counter()
    sent = 0
    for r in range(repeats):
        chunk = queries[(r * batch) % len(queries):][:batch]
        index.search(chunk, k)
        sent += len(chunk)
    return (time.perf_counter() - start) * 1000 / sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500, help="queries for recall")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    k = 10
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, GPUs: {faiss.get_num_gpus()}")
    start = time.perf_counter()
    vectors, centres = clustered(args.n, args.dim, args.clusters, rng)
    queries, _ = clustered(args.queries, args.dim, args.clusters, rng, centres)
    ids = np.arange(args.n, dtype=np.int64)
    print(f"data: {args.n:,} x {args.dim} float32 ({vectors.nbytes / 2**30:.2f} GiB), "
          f"{args.clusters:,} clusters, made in {time.perf_counter() - start:.1f}s")

    start = time.perf_counter()
    exact = faiss.IndexIDMap2(faiss.IndexFlatIP(args.dim))
    exact.add_with_ids(vectors, ids)
    exact_build = time.perf_counter() - start
    exact_single = per_query_ms(exact, queries, k, 1, 10)
    exact_batch = per_query_ms(exact, queries, k, 64, 3)
    start = time.perf_counter()
    _, truth = exact.search(queries, k)
    print(f"exact ground truth for {args.queries} queries: {time.perf_counter() - start:.1f}s")
    exact_bytes = len(faiss.serialize_index(exact)) / args.n
    del exact

    factory = faiss_ops.auto_factory(args.n)
    start = time.perf_counter()
    approx, params = faiss_ops.build(ids, vectors, factory)
    approx_build = time.perf_counter() - start
    approx_single = per_query_ms(approx, queries, k, 1, 200)
    approx_batch = per_query_ms(approx, queries, k, 64, 8)
    _, found = approx.search(queries, k)
    approx_recall = faiss_ops.recall(found, truth)
    approx_bytes = len(faiss.serialize_index(approx)) / args.n

    print(f"\n{'index':<28}{'build s':>9}{'1 query ms':>12}{'64-batch ms/q':>15}{'bytes/vec':>11}{'recall@10':>11}")
    print(f"{'exact (Flat)':<28}{exact_build:9.1f}{exact_single:12.2f}{exact_batch:15.3f}{exact_bytes:11.0f}{1.0:11.3f}")
    label = f"{factory} {params}"
    print(f"{label:<28}{approx_build:9.1f}{approx_single:12.2f}{approx_batch:15.3f}{approx_bytes:11.0f}"
          f"{approx_recall:11.3f}")
    print(f"\nspeed-up of the approximate index: {exact_single / approx_single:.1f}x single, "
          f"{exact_batch / approx_batch:.1f}x batched; recall@10 {approx_recall:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
