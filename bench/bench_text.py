"""Text encoding: the length-cut path against open_clip's stock encode_text, in one process.

The 80 OpenAI ImageNet templates for one class name, ViT-B-32 architecture (random weights: the
cost does not depend on the weights), CPU, fp32. Each path runs `--repeats` times, alternating, and
the best time of each is compared. Prints a ratio; absolute times on a shared machine mean little.
Also checks exactness: the largest 1 - cosine between a prompt's two embeddings (stock and cut).

    .venv/bin/python bench/bench_text.py [--class-name "golden retriever"] [--repeats 5] [--json]
    .venv/bin/python bench/bench_text.py --quick --model local-dir:tests/assets/shapes_clip --json

--json prints one JSON document last: speedup (stock time / cut time), cosine_error, stock_ms,
cut_ms, cached_ms, texts, tokens_min, tokens_max, context, threads, model.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from explorer.embed.model import load_model
from explorer.science.prompts import build_prompts, load_template_set


def best_times(fns: dict, repeats: int) -> dict:
    """Best wall time of each function, over `repeats` alternating rounds after one warm-up round."""
    for fn in fns.values():
        fn()  # warm-up (allocations, thread pools)
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--class-name", default="golden retriever")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; 1 with --quick)")
    parser.add_argument("--model", default="ViT-B-32",
                        help="an open_clip name (random weights) or local-dir:")
    parser.add_argument("--quick", action="store_true", help="one timed round (for the test suite)")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 5)

    torch.manual_seed(0)
    model = load_model(args.model, None, device="cpu")
    texts = build_prompts([args.class_name], load_template_set("openai"))
    tokens = model.tokenizer(texts)

    def stock():
        with torch.inference_mode():
            return model.model.encode_text(tokens)

    def cut():
        return model._encode_uncached(texts, batch_size=256)  # bypasses the cache on purpose

    def cached():
        return model.encode_texts(texts)

    reference = torch.nn.functional.normalize(stock().float(), dim=-1).numpy()
    cosine_error = float((1 - (cut() * reference).sum(axis=1)).max())
    best = best_times({"stock": stock, "cut": cut, "cached": cached}, repeats)
    lengths = (tokens != 0).sum(dim=1)
    doc = {
        "model": args.model, "texts": len(texts), "tokens_min": int(lengths.min()),
        "tokens_max": int(lengths.max()), "context": int(tokens.shape[1]), "threads": torch.get_num_threads(),
        "repeats": repeats, "stock_ms": round(best["stock"] * 1000,
                                              2), "cut_ms": round(best["cut"] * 1000, 2),
        "cached_ms": round(best["cached"] * 1000, 4), "speedup": round(best["stock"] / best["cut"], 3),
        "cosine_error": cosine_error, "uses_text_cut": model.uses_text_cut
    }
    weights = "" if ":" in args.model else " (random weights)"
    print(f"model {args.model}{weights}, {len(texts)} prompts for {args.class_name!r}, "
          f"tokens per prompt {doc['tokens_min']}..{doc['tokens_max']} of {doc['context']}, "
          f"torch threads {doc['threads']}")
    print(f"stock encode_text (77 tokens): {best['stock'] * 1000:8.1f} ms  "
          f"({len(texts) / best['stock']:.0f} texts/s)")
    print(f"length-cut path:               {best['cut'] * 1000:8.1f} ms  "
          f"({len(texts) / best['cut']:.0f} texts/s)")
    print(f"cache hit (all 80 seen):       {best['cached'] * 1000:8.3f} ms")
    print(f"speed-up of the cut path over stock: {doc['speedup']:.2f}x; "
          f"largest 1 - cosine against stock: {cosine_error:.1e} (must be < 1e-5)")
    if args.json:
        print(json.dumps(doc))


if __name__ == "__main__":
    main()
