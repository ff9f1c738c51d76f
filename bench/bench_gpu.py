"""Indexing on a GPU: with JPEGs decoded on the device (explorer/embed/gpu_decode.py), how close does indexing
come to what the model alone can encode?

    .venv/bin/python bench/bench_gpu.py            # 8,192 photo-like 1024x768 JPEGs, ViT-B-32, batch 256,
    fp16
    .venv/bin/python bench/bench_gpu.py --quick    # 24 JPEGs at batch 8: runs anywhere (a CPU: fp32)
    .venv/bin/python bench/bench_gpu.py --cpu-too  # also index with decode="cpu" (PIL in the workers), to
    compare

ViT-B-32 with random weights (nothing is downloaded) on the best device there is (CUDA, else the CPU).
1. Model only (the ceiling): batches already decoded and preprocessed, lying on the device, encoded
   one after the other -> img/s (each batch's embeddings come back to the host, as when indexing).
2. Decode only: gpu_decode.decode_batch on the files' bytes in memory, in this process -> img/s.
3. End to end: build_index(decode="gpu") indexes the folder into a fresh index: scan, read in worker
   processes, decode and preprocess on the device, encode, commit each batch, FAISS -> img/s over the
   whole run. A small index is built first so that start-up costs (CUDA, nvJPEG) are not counted.
The goal on an H100 is >= 8,000 img/s end to end. The last line printed is one JSON document
(`end_to_end_img_s`, `model_only_img_s`, `ratio`, `device`, ...). On a CPU the figures mean little:
the device decoder there is libjpeg-turbo in one thread.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from explorer.embed.gpu_decode import decode_batch

try:
    from bench_index import photo  # run as a script: bench/ is on sys.path
except ImportError:
    from bench.bench_index import photo
from explorer.embed.model import load_model
from explorer.index.build import build_index

GOAL_IMG_S = 8000


def _make_photo(args: tuple[int, Path]) -> None:
    i, folder = args
    photo(np.random.default_rng(1000 + i)).save(folder / f"{i:05d}.jpg", quality=90)


def make_photos(cache: Path, n: int, unique: int) -> Path:
    """A folder of `n` 1024x768 JPEGs: `unique` generated ones (kept in `cache` between runs), linked
    (or copied) under further names up to n."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [(i, cache) for i in range(unique) if not (cache / f"{i:05d}.jpg").is_file()]
    if missing:
        with multiprocessing.Pool(max(1, min(len(missing), os.cpu_count() or 1))) as pool:
            pool.map(_make_photo, missing)
    folder = cache / f"folder_{n}_{unique}"
    if folder.is_dir() and len(list(folder.iterdir())) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for i in range(n):
        source, target = cache / f"{i % unique:05d}.jpg", folder / f"{i:06d}.jpg"
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    return folder


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_only_rate(model, blobs: list[bytes], batch_size: int, images: int) -> float:
    """img/s of the model alone, on batches decoded beforehand and lying on its device."""
    ready = []
    for start in range(0, min(len(blobs), 4 * batch_size), batch_size):
        pixels, failures = decode_batch(blobs[start:start + batch_size], model.preprocess, model.device)
        assert not failures and len(pixels) == batch_size, failures
        ready.append(pixels)
    model.encode_pixels(ready[0])  # warm up
    batches = max(1, images // batch_size)
    _sync(model.device)
    start = time.perf_counter()
    for k in range(batches):
        model.encode_pixels(ready[k % len(ready)])
    return batches * batch_size / (time.perf_counter() - start)


def decode_only_rate(model, blobs: list[bytes], batch_size: int, images: int) -> float:
    """img/s of gpu_decode.decode_batch alone (header checks, decode, preprocess) on bytes in memory."""
    decode_batch(blobs[:batch_size], model.preprocess, model.device)  # warm up
    batches = max(1, images // batch_size)
    _sync(model.device)
    start = time.perf_counter()
    for k in range(batches):
        first = (k * batch_size) % max(1, len(blobs) - batch_size + 1)
        decode_batch(blobs[first:first + batch_size], model.preprocess, model.device)
    _sync(model.device)
    return batches * batch_size / (time.perf_counter() - start)


def index_rate(model, folder: Path, work: Path, batch_size: int, workers: int, decode: str) -> dict:
    """Index `folder` into a fresh index with `decode` -> img/s over the whole run and over reading,
    decoding and encoding only."""
    target = work / f"index_{decode}"
    shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    report = build_index(model, folder, target, batch_size=batch_size, workers=workers, decode=decode)
    seconds = time.perf_counter() - start
    assert not report.failed and report.added == report.todo, report.failed[:3]
    shutil.rmtree(target, ignore_errors=True)
    return {"img_s": report.added / seconds, "encode_img_s": report.added / max(report.encode_seconds, 1e-9),
            "seconds": seconds}


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="24 JPEGs at batch 8 (runs on a CPU)")
    parser.add_argument("--images", type=int, default=None, help="JPEGs to index (default 8,192; --quick 24)")
    parser.add_argument("--unique", type=int, default=512,
                        help="distinct JPEGs among them (the rest are links)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 256 (--quick 8)")
    parser.add_argument("--workers", type=int, default=2, help="reading processes (the CLI's default is 2)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto: fp16 on CUDA, fp32 on a CPU")
    parser.add_argument("--cpu-too", action="store_true",
                        help="also index with decode='cpu' (PIL in the workers)")
    parser.add_argument("--photos", type=Path,
                        default=Path(tempfile.gettempdir()) / "clip_explorer_bench_gpu",
                        help="where the generated JPEGs are kept between runs")
    args = parser.parse_args()
    images = args.images or (24 if args.quick else 8192)
    batch_size = min(images, args.batch_size or (8 if args.quick else 256))
    unique = max(1, min(args.unique, images))
    print(f"making {images} JPEGs ({unique} distinct) in {args.photos} ...", flush=True)
    folder = make_photos(args.photos, images, unique)
    blobs = [(args.photos / f"{i:05d}.jpg").read_bytes() for i in range(unique)]
    while len(blobs) < min(images, 4 * batch_size):
        blobs += blobs[:min(len(blobs), 4 * batch_size - len(blobs))]
    torch.manual_seed(0)
    model = load_model("ViT-B-32", None, device=args.device, precision=args.precision)
    print(f"ViT-B-32 (random weights) on {describe_device(model.device)}, {model.precision}, "
          f"batch {batch_size}", flush=True)
    result = _measure(model, folder, blobs, images, batch_size, args)
    print(json.dumps(result))


def _measure(model, folder: Path, blobs: list[bytes], images: int, batch_size: int, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as work:
        work = Path(work)
        warm = make_photos(args.photos, min(images, 2 * batch_size), min(images, 2 * batch_size, args.unique))
        index_rate(model, warm, work, batch_size, args.workers,
                   "gpu")  # CUDA, nvJPEG, the workers: started once
        model_only = model_only_rate(model, blobs, batch_size, images)
        print(f"model only: {model_only:,.0f} img/s", flush=True)
        decode_only = decode_only_rate(model, blobs, batch_size, min(images, 8 * batch_size))
        print(f"decode only (gpu_decode.decode_batch, bytes in memory): {decode_only:,.0f} img/s", flush=True)
        gpu = index_rate(model, folder, work, batch_size, args.workers, "gpu")
        print(
            f"end to end, decode on the device: {gpu['img_s']:,.0f} img/s ({gpu['seconds']:.1f} s; reading, "
            f"decoding and encoding alone: {gpu['encode_img_s']:,.0f} img/s)", flush=True)
        cpu = index_rate(model, folder, work, batch_size, args.workers, "cpu") if args.cpu_too else None
        if cpu:
            print(f"end to end, decode in {args.workers} worker processes (PIL): {cpu['img_s']:,.0f} img/s",
                  flush=True)
    ratio = gpu["img_s"] / model_only
    print(f"ratio end to end / model only: {ratio:.2f}; goal on an H100: >= {GOAL_IMG_S:,} img/s end to end "
          f"({'met' if gpu['img_s'] >= GOAL_IMG_S else 'not met'} here)")
    return {"end_to_end_img_s": round(gpu["img_s"], 1), "model_only_img_s": round(model_only, 1),
            "ratio": round(ratio, 3), "device": describe_device(model.device),
            "decode_only_img_s": round(decode_only, 1),
            "end_to_end_encode_phase_img_s": round(gpu["encode_img_s"], 1),
            "cpu_decode_end_to_end_img_s": round(cpu["img_s"], 1) if cpu else None, "images": images,
            "unique_images": min(images, args.unique), "batch_size": batch_size, "workers": args.workers,
            "precision": model.precision, "model": "ViT-B-32 (random weights)", "goal_img_s": GOAL_IMG_S,
            "goal_met": gpu["img_s"] >= GOAL_IMG_S, "torch_threads": torch.get_num_threads(),
            "batches": math.ceil(images / batch_size)}


if __name__ == "__main__":
    main()
