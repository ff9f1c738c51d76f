"""Time the folder map's layout on synthetic embeddings: PCA vs UMAP, placing new points vs refitting,
and how fast a cancelled background job stops.

    .venv/bin/python bench/bench_map.py [--sizes 10000,100000] [--dim 512] [--new 0.1] [--refit-up-to 20000]
                                        [--cancel-size 10000] [--quick] [--json]

The embeddings: unit vectors around 100 random centres (as bench_search.py makes them). For each size N:
  - PCA of N points (exact; the instant map), UMAP of N points (umap-learn, cosine, seed 0), run
    after a warm-up so numba's compilation is not counted (printed apart: 300 points fitted and 50
    placed, and 5,000 fitted where a size reaches 4,096, above which umap-learn finds neighbours with
    pynndescent, compiled apart); PCA is the best of three;
  - N x --new more points placed into the stored UMAP map by map_of_index (their neighbours by exact
    cosine, or through the index's FAISS search above SEARCH_ABOVE pairs, here a FAISS index of the
    app's automatic choice; then as UMAP.transform does) vs refitting UMAP on all N + new
    points (measured up to --refit-up-to points; above it the ratio is against the fit of N, which a
    refit of more points only exceeds; umap-learn runs 500 epochs up to 10,000 points, 200 above);
  - how well each puts the new points: the share whose nearest old point on the map comes from the
    same centre (placed vs refitted, where refitted).
Then two LayoutJobs (UMAP in a worker process) on --cancel-size points: the first in a new worker (until
it is up, its first epoch, done), the second reusing that worker (until its first epoch), cancelled 0.1 s
into its epochs: the seconds from cancel() to the job being done, whether the worker process
is gone, and the files left in the index folder.

Then what the Map tab sends and how fast it recolours (the page; --page-sizes, default 10,000 and
100,000 points, the text side through --model: an open_clip name with random weights, or local-dir:, its
embedding size for these embeddings). For each size, a map_tab.MapState of synthetic embeddings laid out
(PCA) and coloured by zero-shot over four labels, then:
  - the page payload: the bytes of the figure the tab sends for a new map (map_tab.figure_of, as JSON, as
    gr.Plot sends it: plotly's base64 typed arrays; `sent`: as that JSON string travels inside gradio's
    message) and of a recolour's patch (map_tab.colour_patch, the hidden text box's value: category
    numbers, or a query's scores), and the seconds to make the figure (figure_of + to_json);
  - the recolour latency after a prompt edit (map_tab.recolour, the live handler's work: a new fourth
    label each time, so one new prompt is encoded, the others from the model's text cache), the same
    labels again (every prompt from the cache) and a new query text, as medians of --repeats; as
    ratios: the recolour vs drawing a new figure (what a recolour without the in-place patch would
    send), and the payload per point at the largest size vs the smallest.

--quick: PCA only (no UMAP, no job: numba's compiling alone takes 20-30 s), the page at 1,000 and 10,000
points with the shapes model (tests/assets): about 10 s. --json prints one JSON document last.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from explorer.science.map_layout import Layout, LayoutJob, fit_layout, map_of_index, place_points

CENTRES = 100
ROOT = Path(__file__).resolve().parents[1]
SHAPES = f"local-dir:{ROOT / 'tests' / 'assets' / 'shapes_clip'}"
LABELS = ["a red circle", "a blue square", "a green triangle"]


def clustered(n: int, dim: int, rng: np.random.Generator,
              centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(centres), n)
    x = centres[labels] + 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def same_centre_share(old_xy: np.ndarray, old_labels: np.ndarray, new_xy: np.ndarray,
                      new_labels: np.ndarray) -> float:
    """The share of new points whose nearest old point on the map shares their centre."""
    hits = 0
    for start in range(0, len(new_xy), 1024):
        block = new_xy[start:start + 1024]
        d = (block ** 2).sum(1)[:, None] - 2 * block @ old_xy.T + (old_xy ** 2).sum(1)[None]
        hits += int((old_labels[d.argmin(1)] == new_labels[start:start + 1024]).sum())
    return hits / max(len(new_xy), 1)


class BenchIndex(SimpleNamespace):
    """What map_of_index uses of an ImageIndex: folder, identity, weights digest, and (with `vectors`)
    search through a FAISS index of the automatic choice (faiss_ops, as `clip-explorer index` builds it)."""

    def with_search(self, names: list[str], vectors: np.ndarray) -> BenchIndex:
        from explorer.index import faiss_ops
        self.paths = names
        self.faiss, _ = faiss_ops.build(np.arange(len(names), dtype=np.int64), vectors,
                                        faiss_ops.auto_factory(len(names), vectors.shape[1]))
        return self

    def search(self, queries: np.ndarray, k: int) -> list[list[SimpleNamespace]]:
        from explorer.index import faiss_ops
        scores, ids = faiss_ops.search(self.faiss, np.ascontiguousarray(queries, np.float32), k)
        return [[SimpleNamespace(path=self.paths[i], score=float(v)) for v, i in zip(row_s, row_i) if i >= 0]
                for row_s, row_i in zip(scores, ids)]


def index_in(folder: Path) -> BenchIndex:
    return BenchIndex(folder=folder, identity={"bench": "map"}, weights_digest="bench")


def one_size(n: int, dim: int, new_share: float, refit_up_to: int, rng, centres) -> dict:
    x, labels = clustered(n, dim, rng, centres)
    m = max(1, int(n * new_share))
    extra, extra_labels = clustered(m, dim, rng, centres)
    names = [f"{i}.jpg" for i in range(n)]
    pca_s = min(timed(fit_layout, x, "pca")[1] for _ in range(3))
    all_names, both = names + [f"new{i}.jpg" for i in range(m)], np.concatenate([x, extra])
    with tempfile.TemporaryDirectory() as folder:
        index = index_in(Path(folder))
        base, umap_s = timed(map_of_index, index, names, x, "umap")
        index.with_search(all_names, both)  # the grown index, as it would be after `index` ran again
        grown, place_s = timed(map_of_index, index, all_names, both, "umap",
                               refit_share=max(0.2, new_share * 1.01))
    assert grown.source == "placed", grown.note
    run = {"n": n, "new": m, "pca_s": round(pca_s, 4), "umap_s": round(umap_s, 3),
           "place_s": round(place_s, 3),
           "umap_over_pca": round(umap_s / pca_s, 1),
           "placed_same_centre": round(same_centre_share(base.xy, labels, grown.xy[n:], extra_labels), 4)}
    if n + m <= refit_up_to:
        refit, refit_s = timed(fit_layout, np.concatenate([x, extra]), "umap")
        run.update(refit_s=round(refit_s, 3), place_over_refit=round(place_s / refit_s, 4),
                   refit_same_centre=round(same_centre_share(refit[:n], labels, refit[n:], extra_labels), 4))
    else:
        run.update(refit_s=None, place_over_refit=None, place_over_fit_of_n=round(place_s / umap_s, 4))
    return run


def _first_epoch(job: LayoutJob, start: float) -> tuple[float, float]:
    """(seconds until the job's worker is up, seconds until its first epoch)."""
    while not job.done and "UMAP" not in job.status()[1]:
        time.sleep(0.05)
    up = time.monotonic() - start
    while not job.done and "epoch" not in job.status()[1] and time.monotonic() - start < 600:
        time.sleep(0.05)
    return up, time.monotonic() - start


def cancel_run(n: int, dim: int, rng, centres) -> dict:
    """A LayoutJob in a new worker, run to the end; then a second one on other points, which reuses that
    worker, cancelled 0.1 s into UMAP's epochs. Seconds until each worker is up (imports) and
    until each job's first epoch (numba compiles in a new worker, then the neighbour search), and how
    long the cancelled one took to stop."""
    x, _ = clustered(n, dim, rng, centres)
    names = [f"{i}.jpg" for i in range(n)]
    with tempfile.TemporaryDirectory() as folder:
        start = time.monotonic()
        job = LayoutJob(index_in(Path(folder) / "a"), names, x, "umap").start()
        new_up_s, new_first_s = _first_epoch(job, start)
        job.wait()
        full_s = time.monotonic() - start
        start = time.monotonic()
        other = clustered(n, dim, rng, centres)[0]
        job = LayoutJob(index_in(Path(folder) / "b"), names, other, "umap").start()
        warm_up_s, warm_first_s = _first_epoch(job, start)
        time.sleep(0.1)  # into the epochs (a reused worker runs 500 points' epochs in under a second)
        stage = job.status()[1]
        process = job.worker_process
        cancelled_at = time.monotonic()
        job.cancel()
        job.wait(60)
        stop_s = time.monotonic() - cancelled_at
        left = list((Path(folder) / "b").rglob("*"))
    return {"cancel_n": n, "new_worker_up_s": round(new_up_s, 2),
            "new_worker_first_epoch_s": round(new_first_s, 2),
            "new_worker_job_s": round(full_s, 2), "reused_worker_first_epoch_s": round(warm_first_s, 2),
            "cancelled_during": stage, "cancel_stop_s": round(stop_s, 3),
            "worker_gone": process is not None and process.poll() is not None,
            "files_left": len(left), "job_cancelled": job.cancelled}


# ---- the page: payload and recolour -------------------------------------------------------------------
def median_ms(fn, repeats: int) -> float:
    """Median milliseconds of `repeats` calls of fn(i)."""
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def page_state(n: int, model, rng):
    """(a bench context, the tab's MapState of n synthetic points: PCA layout, zero-shot colours over
    LABELS + one more, its embeddings where the tab's live recolours read them)."""
    from explorer.app.ui import map_tab
    from explorer.inputs.settings import load_settings

    centres = rng.standard_normal((CENTRES, model.embed_dim), dtype=np.float32)
    x, labels = clustered(n, model.embed_dim, rng, centres)
    names = [f"class_{c:02d}/IMG_{i:06d}.jpg" for i, c in enumerate(labels % 20)]
    layout = Layout(names, fit_layout(x, "pca"), "umap", {}, n, 0, 0.0)
    state = map_tab.MapState(index=f"/bench/index-{n}", root="/bench/photos", names=names,
                             seq=map_tab.map_seq(f"/bench/index-{n}", names), method="umap", layout=layout,
                             token=-n)  # negative: never a token of a map the tab drew
    map_tab._EMBEDDINGS.put(state.token, x)  # as open_map keeps them
    ctx = SimpleNamespace(model=lambda: model, settings=load_settings(env={}), embeddings=None)
    state, _ = map_tab.recolour(ctx, state, map_tab.ColourChoice("zeroshot", ", ".join(LABELS + ["a cat"])))
    return ctx, state


def page_run(n: int, model, rng, repeats: int) -> dict:
    """The payload of a new map and of a recolour patch, and the recolour's latency, at n points."""
    from explorer.app.ui import map_tab

    ctx, state = page_state(n, model, rng)
    figure = map_tab.figure_of(state).to_json()
    redraw_ms = median_ms(lambda i: map_tab.figure_of(state).to_json(), max(3, repeats // 3))
    patch = map_tab.colour_patch(state)
    _, query_patch = map_tab.recolour(ctx, state, map_tab.ColourChoice("query", query="a photo of a dog"))

    def edited(i):  # a fourth label typed: one new prompt, the others from the text cache
        return map_tab.recolour(ctx, state, map_tab.ColourChoice("zeroshot", ", ".join(
            LABELS + [f"a yellow cross {n} {i}"])))

    again = map_tab.ColourChoice("zeroshot", ", ".join(LABELS + ["a cat"]))
    recolour_ms = median_ms(edited, repeats)
    cached_ms = median_ms(lambda i: map_tab.recolour(ctx, state, again), repeats)
    query_ms = median_ms(lambda i: map_tab.recolour(ctx, state, map_tab.ColourChoice(
        "query", query=f"a purple square {n} {i}")), repeats)
    encode_ms = median_ms(lambda i: model.encode_texts([f"a photo of a green cross {n} {i}."]), repeats)
    return {"n": n, "figure_bytes": len(figure.encode()), "figure_sent_bytes": len(json.dumps(figure)),
            "figure_bytes_per_point": round(len(figure.encode()) / n, 2),
            "patch_bytes": len(patch.encode()), "patch_sent_bytes": len(json.dumps(patch)),
            "query_patch_bytes": len(query_patch.encode()),
            "patch_over_figure": round(len(patch.encode()) / len(figure.encode()), 4),
            "redraw_ms": round(redraw_ms, 2), "recolour_ms": round(recolour_ms, 2),
            "recolour_cached_ms": round(cached_ms, 2), "recolour_query_ms": round(query_ms, 2),
            "one_prompt_encode_ms": round(encode_ms, 2),
            "recolour_over_redraw": round(recolour_ms / redraw_ms, 3)}


def page_runs(sizes: list[int], model_name: str, repeats: int, rng) -> dict:
    from explorer.embed.model import load_model

    model = load_model(model_name, None, device="cpu")
    runs = []
    for n in sizes:
        run = page_run(n, model, rng, repeats)
        runs.append(run)
        print(f"page, N={n:,} ({model_name.rsplit('/', 1)[-1]}, {model.embed_dim}-d): new map's figure "
              f"{run['figure_bytes'] / 1e3:,.0f} kB ({run['figure_bytes_per_point']:.1f} B/point; "
              f"{run['redraw_ms']:.0f} ms to make), recolour patch {run['patch_bytes'] / 1e3:,.0f} kB "
              f"({run['patch_over_figure']:.2f} of the figure; a query's "
              f"{run['query_patch_bytes'] / 1e3:,.0f} kB); recolour after a label edit "
              f"{run['recolour_ms']:.1f} ms (same labels "
              f"{run['recolour_cached_ms']:.1f} ms, a new query {run['recolour_query_ms']:.1f} ms, one "
              f"prompt encoded {run['one_prompt_encode_ms']:.1f} ms) = {run['recolour_over_redraw']:.2f}x "
              "making a new figure")
    first, last = runs[0], runs[-1]
    per_point = round(last["figure_bytes_per_point"] / first["figure_bytes_per_point"], 3)
    if len(runs) > 1:
        print(f"payload per point, {last['n']:,} vs {first['n']:,} points: {per_point:.2f}x")
    return {"page_model": model_name, "page": runs, "payload_per_point_ratio": per_point,
            "patch_over_figure": last["patch_over_figure"], "recolour_ms": last["recolour_ms"],
            "recolour_over_redraw": last["recolour_over_redraw"]}


def layout_runs(args, sizes: list[int], dim: int, rng, centres) -> dict:
    """The layout section (PCA vs UMAP, placing vs refitting; PCA alone with --no-umap)."""
    if args.no_umap:
        runs = [{"n": n, "pca_s": round(min(timed(fit_layout, clustered(n, dim, rng, centres)[0], "pca")[1]
                                            for _ in range(3)), 4)} for n in sizes]
        for run in runs:
            print(f"N={run['n']:,}, {dim}-d: PCA {run['pca_s']:.3f} s (UMAP not run)")
        return {"dim": dim, "runs": runs, "umap_over_pca": None, "place_over_refit": None}
    warm = 5000 if max(sizes) >= 4096 else 300
    small = clustered(300, dim, rng, centres)[0]
    small_xy, warm_s = timed(fit_layout, small, "umap")
    warm_s += timed(place_points, small[:250], small_xy[:250], small[250:])[1]  # transform's functions
    if warm > 300:
        warm_s += timed(fit_layout, clustered(warm, dim, rng, centres)[0], "umap")[1]
    also = f" and {warm:,}" if warm > 300 else ""
    print(f"UMAP warm-up (numba compiles umap-learn's functions), 300{also} points: {warm_s:.1f} s")
    runs = []
    for n in sizes:
        run = one_size(n, dim, args.new, args.refit_up_to, rng, centres)
        runs.append(run)
        print_layout(run, dim)
    return {"dim": dim, "warmup_s": round(warm_s, 2), "runs": runs, "umap_over_pca": runs[0]["umap_over_pca"],
            "place_over_refit": runs[0].get("place_over_refit")}


def print_layout(run: dict, dim: int) -> None:
    n = run["n"]
    print(f"N={n:,}, {dim}-d: PCA {run['pca_s']:.3f} s, UMAP {run['umap_s']:.1f} s "
          f"(UMAP/PCA {run['umap_over_pca']:,.0f}x)")
    if run["refit_s"] is not None:
        print(f"  place {run['new']:,} new: {run['place_s']:.2f} s vs refit of {n + run['new']:,}: "
              f"{run['refit_s']:.1f} s (place/refit {run['place_over_refit']:.4f}); nearest old point "
              f"from the same centre: placed {run['placed_same_centre']:.3f}, "
              f"refitted {run['refit_same_centre']:.3f}")
    else:
        print(f"  place {run['new']:,} new: {run['place_s']:.2f} s (place / fit of N "
              f"{run['place_over_fit_of_n']:.4f}; refit not measured); nearest old point from the same "
              f"centre: {run['placed_same_centre']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help="points per layout run; default 10000,100000")
    parser.add_argument("--dim", type=int, default=None, help="embedding size (default 512; --quick 64)")
    parser.add_argument("--new", type=float, default=0.1, help="new points to place, as a share of N")
    parser.add_argument("--refit-up-to", type=int, default=20_000,
                        help="measure refits up to this many points")
    parser.add_argument("--cancel-size", type=int, default=None, help="points in the cancelled job (0: skip)")
    parser.add_argument("--no-umap", action="store_true", help="layouts: PCA only (no UMAP, no job)")
    parser.add_argument("--page-sizes", default=None,
                        help="points for the payload and recolour runs; default 10000,100000 (0: skip)")
    parser.add_argument("--model", default=None,
                        help="the text side of the recolours: an open_clip name (random weights) or "
                             "local-dir: (default ViT-B-32; --quick the shapes model)")
    parser.add_argument("--repeats", type=int, default=None, help="timed recolours (default 15; --quick 3)")
    parser.add_argument("--quick", action="store_true",
                        help="layouts of 1,000 points, 64-d, PCA only; the page at 1,000 and 10,000")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each run's lines as it ends, also into a file
    args.no_umap = args.no_umap or args.quick
    sizes = [int(s) for s in (args.sizes or ("1000" if args.quick else "10000,100000")).split(",")]
    page_sizes = [int(s) for s in (args.page_sizes or ("1000,10000" if args.quick else "10000,100000"))
                  .split(",") if int(s) > 0]
    dim = args.dim or (64 if args.quick else 512)
    cancel_size = args.cancel_size if args.cancel_size is not None else (0 if args.no_umap else 10_000)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CENTRES, dim), dtype=np.float32)
    doc = layout_runs(args, sizes, dim, rng, centres)
    if cancel_size:
        cancel = cancel_run(cancel_size, dim, rng, centres)
        doc.update(cancel)
        c = cancel
        print(f"worker jobs of {cancel_size:,} points: a new worker is up in {c['new_worker_up_s']:.1f} s, "
              f"first epoch at {c['new_worker_first_epoch_s']:.1f} s, done at {c['new_worker_job_s']:.1f} s; "
              f"the next job in the same worker: first epoch at {c['reused_worker_first_epoch_s']:.1f} s; "
              f"cancelled in '{cancel['cancelled_during']}': stopped in {cancel['cancel_stop_s']:.2f} s, "
              f"worker gone: {cancel['worker_gone']}, files left: {cancel['files_left']}")
    if page_sizes:
        model = args.model or (SHAPES if args.quick else "ViT-B-32")
        doc.update(page_runs(page_sizes, model, args.repeats or (3 if args.quick else 15), rng))
    if args.json:
        print(json.dumps(doc))


if __name__ == "__main__":
    main()
