"""Text encoding: the length-cut path against open_clip's stock encode_text, in one process.

The 80 OpenAI ImageNet templates for one class name, ViT-B-32 architecture (random weights: the
cost does not depend on the weights), CPU, fp32. Each path runs `--repeats` times, alternating, and
the best time of each is compared. Prints a ratio; absolute times on a shared machine mean little.

    .venv/bin/python bench/bench_text.py [--class-name "golden retriever"] [--repeats 5]
"""
from __future__ import annotations

import argparse
import time

import torch


from explorer.model import load_model
from explorer.prompts import build_prompts, load_template_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--class-name", default="golden retriever")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="ViT-B-32")
    args = parser.parse_args()

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

    stock(), cut(), cached()  # warm-up (allocations, thread pools)
    best = {"stock": float("inf"), "cut": float("inf"), "cached": float("inf")}
    for _ in range(args.repeats):
        for name, fn in (("stock", stock), ("cut", cut), ("cached", cached)):
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    lengths = (tokens != 0).sum(dim=1)
    print(f"model {args.model} (random weights), {len(texts)} prompts for {args.class_name!r}, "
          f"tokens per prompt {int(lengths.min())}..{int(lengths.max())} of {tokens.shape[1]}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"stock encode_text (77 tokens): {best['stock'] * 1000:8.1f} ms  ({len(texts) / best['stock']:.0f} texts/s)")
    print(f"length-cut path:               {best['cut'] * 1000:8.1f} ms  ({len(texts) / best['cut']:.0f} texts/s)")
    print(f"cache hit (all 80 seen):       {best['cached'] * 1000:8.3f} ms")
    print(f"speed-up of the cut path over stock: {best['stock'] / best['cut']:.2f}x")


if __name__ == "__main__":
    main()
