"""Hosted decoding through the decode pool (explorer/embed/decode_pool.py: worker processes with time and
memory budgets) against decoding in the app's own process, in one process, interleaved. Two threads
decode at once, as two visitors' requests would; the images are read as bytes and decoded for a
ViT-B-32-sized input (Fit 224, the model's own preprocessing geometry), so the pool's cost is the
pipe both ways plus the workers' own start.

    .venv/bin/python bench/bench_decode_pool.py [--quick] [--json]

Photo-like 1024x768 and 4000x3000 JPEGs and PNGs (bench_index.photo). Prints images/s each way and
the ratio pool / in-process (above 1: the pool is faster, its two workers decode in parallel without
the in-process decodes' shared warnings lock).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_index import photo  # noqa: E402
from explorer.embed import decode_pool, images
from explorer.embed.images import Fit, Limits

FIT = Fit((224, 224), "shortest", (224, 224))
LIMITS = Limits(64 << 20, 100_000_000, 1 << 30)


def make_files(per_kind: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for w, h in ((1024, 768), (4000, 3000)):
        for fmt in ("JPEG", "PNG"):
            for _ in range(per_kind):
                buffer = io.BytesIO()
                photo(rng, w, h).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
                out.append(buffer.getvalue())
    return out


def rate(files: list[bytes]) -> float:
    """Images per second, two threads decoding at once."""
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as threads:
        list(threads.map(lambda data: images.load_image(data, LIMITS, fit=FIT), files))
    return len(files) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few images, two rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    files = make_files(2 if args.quick else 6)
    pool = decode_pool.DecodePool(2, 30.0, (1 << 30) + decode_pool.MEMORY_SLACK)
    rounds = {"in-process": [], "pool": []}
    try:
        images.use_decoder(pool.decode)
        rate(files[:2])  # start the workers: their start-up is paid once per app, not per image
        for _ in range(2 if args.quick else 3):
            images.use_decoder(None)
            rounds["in-process"].append(rate(files))
            images.use_decoder(pool.decode)
            rounds["pool"].append(rate(files))
    finally:
        images.use_decoder(None)
        pool.shutdown()
    best = {k: max(v) for k, v in rounds.items()}
    ratio = best["pool"] / best["in-process"]
    print(f"{len(files)} images (1024x768 and 4000x3000, JPEG and PNG), 2 threads: in-process "
          f"{best['in-process']:.1f} img/s, decode pool {best['pool']:.1f} img/s: ratio {ratio:.2f}")
    if args.json:
        print(json.dumps({"images": len(files), "in_process_per_s": best["in-process"],
                          "pool_per_s": best["pool"], "pool_ratio": ratio}))


if __name__ == "__main__":
    main()
