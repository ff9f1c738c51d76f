"""Prompt lab speed: compare the 80- and 7-template sets, mean and ZPE weighting, on embedded images.

1,000 random normalised image embeddings (standing in for an already-embedded folder) and 10
classes; ViT-B-32 architecture with random weights (the cost does not depend on the weights), CPU,
fp32. The comparison is timed twice: cold (empty text cache: every prompt is encoded) and warm
(what changing the weighting or re-running costs). Each run is split into text encoding
(`prompt_set`, through the model's cache and length-cut path), scoring (`compare`: ZPE, ensembling,
accuracy tables) and the rest. Images are never encoded: `encode_pixels` is made to raise.

    .venv/bin/python bench/bench_prompts.py [--images 1000] [--classes 10] [--repeats 3] [--json]
    .venv/bin/python bench/bench_prompts.py --quick --model local-dir:tests/assets/shapes_clip --json

--json prints one JSON document last: cold_ms and warm_ms (the whole comparison), cold_text_ms,
warm_text_ms, warm_scoring_ms, cold_texts_encoded, warm_texts_encoded (0: all from the cache), ...
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from explorer.embed.model import load_model
from explorer.science.descriptions import prompt_set
from explorer.science.evaluate import compare
from explorer.science.prompts import load_template_set

CLASSES = ["golden retriever", "tabby cat", "red fox", "school bus", "espresso", "pizza",
           "lighthouse", "daisy", "acoustic guitar", "mountain bike", "hot-air balloon", "goldfish"]


def run_once(model, labels, sets, images, true):
    start = time.perf_counter()
    encoded_before = model.text_encodes
    prompt_sets = {name: prompt_set(model, labels, templates) for name, templates in sets.items()}
    text_done = time.perf_counter()
    rows = compare(images, true, labels, prompt_sets, model.logit_scale, ("mean", "zpe"))
    score_done = time.perf_counter()
    table = [(r.prompt_set, r.weighting, r.top1) for r in rows]
    end = time.perf_counter()
    return {"text": text_done - start, "scoring": score_done - text_done, "rest": end - score_done,
            "total": end - start, "texts_encoded": model.text_encodes - encoded_before, "table": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="default 1000; 200 with --quick")
    parser.add_argument("--classes", type=int, default=None, help="default 10; 3 with --quick")
    parser.add_argument("--repeats", type=int, default=None,
                        help="warm runs; the best is reported (default 3)")
    parser.add_argument("--model", default="ViT-B-32",
                        help="an open_clip name (random weights) or local-dir:")
    parser.add_argument("--quick", action="store_true", help="few images and classes, one warm run")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    args.images = args.images or (200 if args.quick else 1000)
    args.classes = args.classes or (3 if args.quick else 10)
    args.repeats = args.repeats or (1 if args.quick else 3)

    torch.manual_seed(0)
    model = load_model(args.model, None, device="cpu")

    def no_images(*_a, **_k):
        raise AssertionError("an image was encoded during the comparison")
    model.encode_pixels = no_images

    labels = CLASSES[:args.classes] if args.classes <= len(CLASSES) else [
        f"class {i}" for i in range(args.classes)
    ]
    rng = np.random.default_rng(0)
    images = rng.normal(size=(args.images, model.embed_dim)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    true = rng.integers(0, len(labels), size=args.images)
    sets = {"openai (80)": load_template_set("openai"), "simple (7)": load_template_set("simple")}

    cold = run_once(model, labels, sets, images, true)
    warm = min((run_once(model, labels, sets, images, true) for _ in range(args.repeats)),
               key=lambda r: r["total"])
    print(f"{args.images} embedded images, {len(labels)} classes, {torch.get_num_threads()} torch threads, "
          f"template sets {', '.join(sets)} x weightings mean, zpe")
    for name, r in (("cold", cold), ("warm", warm)):
        print(f"  {name}: total {r['total'] * 1000:8.1f} ms = text encoding {r['text'] * 1000:8.1f} ms "
              f"({r['texts_encoded']} texts encoded) + scoring {r['scoring'] * 1000:6.1f} ms "
              f"+ rest {r['rest'] * 1000:5.1f} ms")
    print("  (random weights and random embeddings: accuracies are chance level, shown only as a check)")
    for name, weighting, top1 in warm["table"]:
        print(f"    {name:12s} {weighting:5s} top-1 {top1:.3f}")
    if args.json:
        doc = {
            "model": args.model, "images": args.images, "classes": len(labels),
            "threads": torch.get_num_threads()
        }
        for name, r in (("cold", cold), ("warm", warm)):
            doc.update({
                f"{name}_ms": round(r["total"] * 1000, 3), f"{name}_text_ms": round(r["text"] * 1000, 3),
                f"{name}_scoring_ms": round(r["scoring"] * 1000,
                                            3), f"{name}_texts_encoded": r["texts_encoded"]
            })
        print(json.dumps(doc))


if __name__ == "__main__":
    main()
