"""Test-time switches' cost: each switch against plain classification of the same image files.

Random-noise PNG files (256 px; the cost does not depend on what they show) and 10 classes; a
ViT-B-32 architecture with random weights (or --model local-dir:...), CPU, fp32, one process.
Plain classification = decode + preprocess + encode every file (embed_files, a fresh cache) + the
prediction. Each switch is timed as apply_switches runs it on the plain features: its wall time,
and its own seconds_switched / seconds_plain (cost_ratio, measured inside the same pass). The ratio
a person sees is (plain + switch) / plain when the plain features are not cached, cost_ratio when
they are.

    .venv/bin/python bench/bench_switches.py [--images 32] [--views 8] [--repeats 3] [--json]
    .venv/bin/python bench/bench_switches.py --quick --model local-dir:tests/assets/shapes_clip --json

--json prints one JSON document last: plain_ms_per_image, and per switch <name>_ms_per_image,
<name>_over_plain (apply_switches wall / plain classification) and <name>_cost_ratio.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from explorer.embed.model import load_model
from explorer.inputs.sources import embed_files
from explorer.science.test_time import SwitchSettings, apply_switches
from explorer.science.zeroshot import build_classifier, predict

CLASSES = ["golden retriever", "tabby cat", "red fox", "school bus", "espresso", "pizza",
           "lighthouse", "daisy", "acoustic guitar", "mountain bike"]


def write_images(folder: Path, count: int, size: int = 256) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size // 8, size // 8, 3), dtype=np.uint8)
        path = folder / f"{i:04d}.png"
        Image.fromarray(pixels).resize((size, size), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def time_plain(model, paths, classes):
    start = time.perf_counter()
    found = embed_files(model, paths)
    predict(found.embeddings, classes, CLASSES, model.scoring)
    return time.perf_counter() - start, found.embeddings


def time_switch(model, paths, features, classes, settings):
    start = time.perf_counter()
    outcome = apply_switches(model, paths, features, classes, CLASSES, settings)
    return time.perf_counter() - start, outcome


def switch_configs(views: int) -> dict[str, SwitchSettings]:
    return {"zero": SwitchSettings(views=views), "mean": SwitchSettings(views=views, combine="mean"),
            "tda": SwitchSettings(tda=True), "views_tda": SwitchSettings(views=views, tda=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="default 32; 8 with --quick")
    parser.add_argument("--views", type=int, default=None, help="default 8; 4 with --quick")
    parser.add_argument("--model", default="ViT-B-32",
                        help="an open_clip name (random weights) or local-dir:")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each; the fastest is kept "
                        "(default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="few images and views")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    args.images = args.images or (8 if args.quick else 32)
    args.views = args.views or (4 if args.quick else 8)
    args.repeats = args.repeats or (1 if args.quick else 3)

    torch.manual_seed(0)
    model = load_model(args.model, None, device="cpu")
    classes = build_classifier(model, CLASSES, ["a photo of a {}."])
    with tempfile.TemporaryDirectory() as folder:
        paths = write_images(Path(folder), args.images)
        time_plain(model, paths[:2], classes)  # warm-up
        plain, features = min((time_plain(model, paths, classes) for _ in range(args.repeats)),
                              key=lambda run: run[0])
        doc = {"model": args.model, "images": args.images, "views": args.views,
               "threads": torch.get_num_threads(), "plain_ms_per_image": round(1000 * plain / args.images, 3)}
        print(f"{args.images} images, {args.views} views, best of {args.repeats}, "
              f"{torch.get_num_threads()} torch threads; plain classification "
              f"{1000 * plain / args.images:.1f} ms/image")
        for name, settings in switch_configs(args.views).items():
            wall, outcome = min((time_switch(model, paths, features, classes, settings)
                                 for _ in range(args.repeats)), key=lambda run: run[0])
            doc.update({f"{name}_ms_per_image": round(1000 * wall / args.images, 3),
                        f"{name}_over_plain": round(wall / plain, 3),
                        f"{name}_cost_ratio": round(outcome.cost_ratio, 3)})
            print(f"  {settings.describe():70s} {1000 * wall / args.images:8.1f} ms/image, "
                  f"x{wall / plain:.2f} plain classification; cost_ratio x{outcome.cost_ratio:.2f}")
    if args.json:
        print(json.dumps(doc))


if __name__ == "__main__":
    main()
