"""Decoding for the model: a JPEG decoded at the smallest DCT scale that covers the model's input
(images.DRAFT_GAP = 1, the default) against a full decode (no draft) and against the former rule
(GAP = 3 x the input), in one process, interleaved. Prints per-image decode-and-preprocess time and
the cosine between each image's embedding from the draft decode and from the full decode.

    .venv/bin/python bench/bench_decode.py [--quick] [--model ViT-B-32] [--json]

Photo-like 1024x768 and 4000x3000 JPEGs (bench_index.photo) and the example photos in assets/examples.
The default model is ViT-B-32 with random weights (no download); a trained model's embeddings may be
more or less sensitive to the few pixels that change: pass --model/--pretrained to measure one.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_index import photo  # noqa: E402
from explorer.embed import images
from explorer.embed.model import load_model

RULES = {"full": None, "gap3": images.GAP, "draft": 1}


def make_jpegs(folder: Path, sizes: list[tuple[int, int]], per_size: int) -> list[Path]:
    rng = np.random.default_rng(0)
    out = []
    for w, h in sizes:
        for i in range(per_size):
            path = folder / f"{w}x{h}-{i}.jpg"
            photo(rng, w, h).save(path, quality=90)
            out.append(path)
    return out


def timed_tensors(paths: list[Path], preprocess, rounds: int) -> tuple[dict, dict]:
    """({rule: median ms per image}, {rule: [tensor per image]}), the rules interleaved per round."""
    times = {rule: [] for rule in RULES}
    tensors = {}
    for _ in range(rounds):
        for rule, value in RULES.items():
            images.DRAFT_GAP = value
            start = time.perf_counter()
            tensors[rule] = [images.prepare(p, preprocess) for p in paths]
            times[rule].append((time.perf_counter() - start) * 1000 / len(paths))
    images.DRAFT_GAP = RULES["draft"]
    return {rule: statistics.median(t) for rule, t in times.items()}, tensors


def cosines(model, tensors: dict, against: str = "full") -> dict:
    import torch
    emb = {rule: model.encode_pixels(torch.stack(ts)) for rule, ts in tensors.items()}
    return {rule: (emb[rule] * emb[against]).sum(axis=1) for rule in emb if rule != against}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few images, one round")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    model = load_model(args.model, args.pretrained, device="cpu")
    per_size, rounds = (2, 1) if args.quick else (12, 3)
    doc = {"model": model.identifier, "groups": {}}
    with tempfile.TemporaryDirectory() as tmp:
        groups = {"1024x768": make_jpegs(Path(tmp), [(1024, 768)], per_size),
                  "4000x3000": make_jpegs(Path(tmp), [(4000, 3000)], max(1, per_size // 4)),
                  "examples (<= 640 px)": sorted((ROOT / "assets" / "examples").glob("*.jpg"))}
        for name, paths in groups.items():
            ms, tensors = timed_tensors(paths, model.preprocess, rounds)
            cos = cosines(model, tensors)
            doc["groups"][name] = {
                "images": len(paths), "ms_per_image": {k: round(v, 2)
                                                       for k, v in ms.items()},
                "speedup_vs_full": round(ms["full"] / ms["draft"],
                                         2), "speedup_vs_gap3": round(ms["gap3"] / ms["draft"], 2),
                "cosine_to_full_min": float(cos["draft"].min()),
                "cosine_to_full_mean": float(cos["draft"].mean()),
                "gap3_cosine_to_full_min": float(cos["gap3"].min())
            }
            g = doc["groups"][name]
            print(
                f"{name}: {len(paths)} images; ms/image full {ms['full']:.1f}, gap3 {ms['gap3']:.1f}, "
                f"draft {ms['draft']:.1f} ({g['speedup_vs_full']}x full, {g['speedup_vs_gap3']}x gap3); "
                f"cosine to full decode: min {g['cosine_to_full_min']:.5f}, "
                f"mean {g['cosine_to_full_mean']:.5f}"
            )
    doc["cosine_to_full_min"] = min(g["cosine_to_full_min"] for g in doc["groups"].values())
    if args.json:
        print(json.dumps(doc))


if __name__ == "__main__":
    main()
