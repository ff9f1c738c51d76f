"""Indexing speed: is decoding hidden behind encoding, and how cheap is re-indexing an unchanged folder?

    .venv/bin/python bench/bench_index.py           # 500 photo-like 1024x768 JPEGs (a few minutes on 2 CPU
    cores)
    .venv/bin/python bench/bench_index.py --quick   # 128 JPEGs, smaller re-index folder
    .venv/bin/python bench/bench_index.py --images 16 --batch-size 8 --rescan-files 200 \
        --model local-dir:tests/assets/shapes_clip --json   # seconds: a smoke run (the test suite's)

1. Pipeline vs model: ViT-B-32 (random weights, so nothing is downloaded) encodes already
   decoded and preprocessed tensors -> model-only img/s. Then build_index indexes the JPEG folder
   (decoding in worker processes) with the same model and batch size -> indexing img/s, measured
   end to end (scan, decode, encode, commit, FAISS build). The ratio should be >= 0.8.
2. Re-indexing: a folder of 10,000 small PNGs is indexed with the project's tiny shapes model
   (tests/assets/shapes_clip; ViT-B-32 would need ~15 minutes here), then indexed again unchanged.
   Printed: the re-run as a fraction of that full run, and as a fraction of what the full run
   would take with ViT-B-32 at the throughput measured in part 1 (the re-run does no model work,
   so its time does not depend on the model).

--json prints one JSON document last: pipeline_ratio (indexing img/s / model-only img/s),
reindex_fraction (unchanged re-run / full run, tiny model; null when the shapes model is missing),
model_only_img_s, indexing_img_s, reindex_fraction_estimated_at_part1_rate, full_index_s, reindex_s, ...
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]

from explorer.embed.images import load_image
from explorer.embed.model import load_model
from explorer.index.build import auto_workers, build_index
from explorer.inputs.folders import walk_folder

SHAPES_MODEL = REPO / "tests" / "assets" / "shapes_clip"


def photo(rng: np.random.Generator, width: int = 1024, height: int = 768) -> Image.Image:
    """A photo-like picture: smooth colour fields, a few objects, sensor noise (JPEG-hard enough)."""
    low = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
    img = low.resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(3, 8)):
        x, y = rng.integers(0, width), rng.integers(0, height)
        r = rng.integers(30, 250)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 6, (height, width, 3)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def make_photos(folder: Path, n: int) -> list[Path]:
    existing = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if len(existing) >= n:
        return existing[:n]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        photo(rng).save(folder / f"{i:05d}.jpg", quality=90)
    return sorted(folder.glob("*.jpg"))[:n]


def model_only_rate(model, paths: list[Path], batch_size: int, batches: int) -> float:
    pixels = [
        torch.stack([model.preprocess(load_image(p)) for p in paths[i * batch_size:(i + 1) * batch_size]])
        for i in range(batches)
    ]
    model.encode_pixels(pixels[0][:2])  # warm up
    start = time.perf_counter()
    for batch in pixels:
        model.encode_pixels(batch)
    return batches * batch_size / (time.perf_counter() - start)


def pipeline_part(args, paths: list[Path], work: Path) -> dict:
    """Part 1: indexing img/s end to end against the model alone on decoded tensors (measured before
    and after indexing: the machine is shared, the mean of both is used)."""
    torch.manual_seed(0)
    model = load_model(args.model, None, device="cpu")
    args.workers = auto_workers(model.device, "cpu") if args.workers is None else args.workers
    batches = max(1, min(4, len(paths) // args.batch_size))
    model_rate = model_only_rate(model, paths, args.batch_size, batches)
    print(f"model only (decoded tensors):  {model_rate:6.2f} img/s")
    report = build_index(model, args.photos, work / "photos_idx", batch_size=args.batch_size,
                         workers=args.workers)
    index_rate = report.added / report.seconds
    print(f"indexing (decode in workers): {index_rate:6.2f} img/s  "
          f"({report.added} images in {report.seconds:.1f}s)")
    after = model_only_rate(model, paths, args.batch_size, batches)
    print(f"model only, measured again:    {after:6.2f} img/s")
    runs, model_rate = [round(model_rate, 3), round(after, 3)], (model_rate + after) / 2
    print(f"RATIO indexing / model-only = {index_rate / model_rate:.2f}  (target >= 0.8)")
    return {
        "model": args.model, "images": report.added, "batch_size": args.batch_size, "workers": args.workers,
        "model_only_img_s": round(model_rate, 3), "model_only_img_s_runs": runs,
        "indexing_img_s": round(index_rate, 3), "pipeline_ratio": round(index_rate / model_rate, 4)
    }


def reindex_part(n_rescan: int, workers: int, index_rate: float, work: Path) -> dict:
    """Part 2: an unchanged re-run of a folder of small PNGs against its full run (tiny shapes model)."""
    folder = work / "many"
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    for i in range(n_rescan):
        sub = folder / f"{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "RGB").save(sub / f"{i:05d}.png")
    print(f"\n{n_rescan:,} small PNGs written in {time.perf_counter() - start:.1f}s")
    tiny = load_model(f"local-dir:{SHAPES_MODEL}", device="cpu")
    full = build_index(tiny, folder, work / "many_idx", batch_size=256, workers=workers)
    again = build_index(tiny, folder, work / "many_idx", batch_size=256, workers=workers)
    assert again.unchanged == n_rescan and again.added == again.updated == 0
    vit_estimate = n_rescan / index_rate
    print(
        f"full index with the tiny shapes model: {full.seconds:.2f}s; unchanged re-run: {again.seconds:.3f}s")
    print(f"RATIO re-run / full run (tiny model, measured) = {again.seconds / full.seconds:.3f}  "
          "(target < 0.05)")
    print(f"RATIO re-run / full run at the indexing rate of part 1 (estimated {vit_estimate:.0f}s at "
          f"{index_rate:.1f} img/s) = {again.seconds / vit_estimate:.5f}")
    start = time.perf_counter()
    walk_folder(folder)
    scan_s = time.perf_counter() - start
    print(f"(of which scanning the folder alone: {scan_s:.3f}s)")
    return {
        "rescan_files": n_rescan, "full_index_s": round(full.seconds, 4),
        "reindex_s": round(again.seconds, 4), "reindex_fraction": round(again.seconds / full.seconds, 5),
        "reindex_fraction_estimated_at_part1_rate": round(again.seconds / vit_estimate,
                                                          6), "scan_s": round(scan_s, 4)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="128 JPEGs and 2,000 files to re-index")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--workers", type=int, default=None, help="decoding processes (default: the indexer's "
        "automatic choice, index_build.auto_workers)")
    parser.add_argument("--rescan-files", type=int, default=None)
    parser.add_argument("--model", default="ViT-B-32",
                        help="part 1's model: an open_clip name (random weights) "
                        "or local-dir:")
    parser.add_argument("--photos", type=Path,
                        default=Path(tempfile.gettempdir()) / "clip_explorer_bench_photos",
                        help="where the generated JPEGs are kept between runs")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    n_images = args.images or (128 if args.quick else 500)
    n_rescan = args.rescan_files or (2_000 if args.quick else 10_000)
    args.batch_size = min(args.batch_size, n_images)
    workers = "auto" if args.workers is None else args.workers
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, workers {workers}")

    start = time.perf_counter()
    paths = make_photos(args.photos, n_images)
    print(f"{len(paths)} JPEGs 1024x768 in {args.photos} ({time.perf_counter() - start:.1f}s to prepare)")
    work = Path(tempfile.mkdtemp(prefix="clip_explorer_bench_"))
    try:
        doc = pipeline_part(args, paths, work)
        if any(SHAPES_MODEL.glob("*.safetensors")):
            doc.update(reindex_part(n_rescan, args.workers, doc["indexing_img_s"], work))
        else:
            print("re-index part skipped: the shapes model is missing (python -m tests.train_shapes_clip)")
            doc["reindex_fraction"] = None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(doc))


if __name__ == "__main__":
    main()
