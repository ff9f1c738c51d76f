"""Indexing on Ray against the local engine, on the same folder and model: what one model actor does.

    .venv/bin/python bench/bench_ray.py            # 256 photo-like 1024x768 JPEGs, ViT-B-32 (random weights)
    .venv/bin/python bench/bench_ray.py --quick    # 64 JPEGs
    .venv/bin/python bench/bench_ray.py --images 16 --batch-size 8 --model local-dir:tests/assets/shapes_clip
    \
        --json                                     # seconds: a smoke run (the test suite's)

The local engine runs first (decoding in --workers processes, the model in this one), then
`build_index(engine="ray")` on a local Ray instance started for the run: decoding in Ray tasks,
the model in --ray-actors actor(s) of --ray-actor-cpus CPUs each. Printed for each: wall time
(for Ray this includes starting Ray and the actor loading its model) and the steady rate, measured
between the first and the last committed batch, which is what a long run on a cluster sees per
actor. These steady per-actor figures are the ones the README's 100M-image estimate is built on.

--json prints one JSON document last: local_img_s, ray_img_s (steady), ray_per_actor_img_s,
ray_over_local (steady rates), ray_wall_s, local_wall_s, ray_startup_s (start to first commit), ...
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from bench_index import make_photos

from explorer.embed.model import load_model
from explorer.index.build import build_index
from explorer.index.build_ray import RayOptions


class Clock:
    """A progress callback that notes when each batch was committed."""

    def __init__(self):
        self.started, self.commits = time.perf_counter(), []

    def __call__(self, done: int, total: int) -> None:
        if done:
            self.commits.append((time.perf_counter(), done))

    def steady_rate(self) -> float:
        """img/s from the first committed batch to the last (start-up and the first batch left out)."""
        (t0, n0), (t1, n1) = self.commits[0], self.commits[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")


def run(model, folder: Path, index: Path, args, engine: str) -> dict:
    clock = Clock()
    options = RayOptions(actors=args.ray_actors, actor_cpus=args.ray_actor_cpus) if engine == "ray" else None
    report = build_index(model, folder, index, batch_size=args.batch_size, workers=args.workers,
                         engine=engine, ray=options, progress=clock)
    assert report.added == args.images, report
    steady, first = clock.steady_rate(), clock.commits[0][0] - clock.started
    print(f"{engine:>5}: {report.seconds:6.1f} s wall ({args.images / report.seconds:6.2f} img/s), "
          f"first batch after {first:5.1f} s, steady {steady:6.2f} img/s")
    return {"wall_s": round(report.seconds, 3), "img_s": round(steady, 3), "startup_s": round(first, 3),
            "wall_img_s": round(args.images / report.seconds, 3), "placement": report.placement}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 JPEGs")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="the local engine's decoding processes")
    parser.add_argument("--ray-actors", type=int, default=None)
    parser.add_argument("--ray-actor-cpus", type=int, default=None)
    parser.add_argument("--model", default="ViT-B-32",
                        help="an open_clip name (random weights) or local-dir:")
    parser.add_argument("--photos", type=Path,
                        default=Path(tempfile.gettempdir()) / "clip_explorer_bench_photos")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    args.images = args.images or (64 if args.quick else 256)
    args.batch_size = min(args.batch_size, args.images // 2)
    paths = make_photos(args.photos, args.images)
    folder = Path(tempfile.mkdtemp(prefix="clip_explorer_bench_ray_"))
    try:
        (folder / "photos").mkdir()
        for path in paths:  # a folder of exactly these images (the cache may hold more)
            shutil.copyfile(path, folder / "photos" / path.name)  # a link leading out would be refused
        torch.manual_seed(0)
        model = load_model(args.model, None, device="cpu")
        local = run(model, folder / "photos", folder / "local", args, "local")
        on_ray = run(model, folder / "photos", folder / "ray", args, "ray")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    actors, cpus = on_ray["placement"]["actors"], on_ray["placement"]["actor_cpus"]
    ratio = on_ray["img_s"] / local["img_s"]
    print(f"RATIO ray / local (steady) = {ratio:.2f} with {actors} actor(s) of {cpus} CPU(s); "
          f"per actor {on_ray['img_s'] / actors:.2f} img/s")
    if args.json:
        print(json.dumps({"model": args.model, "images": args.images, "batch_size": args.batch_size,
                          "local_img_s": local["img_s"], "local_wall_s": local["wall_s"],
                          "ray_img_s": on_ray["img_s"], "ray_wall_s": on_ray["wall_s"],
                          "ray_startup_s": on_ray["startup_s"], "ray_actors": actors, "ray_actor_cpus": cpus,
                          "ray_per_actor_img_s": round(on_ray["img_s"] / actors, 3),
                          "ray_over_local": round(ratio, 4)}))


if __name__ == "__main__":
    main()
