"""Time few-shot adaptation (explorer/fewshot.py) on synthetic embeddings, against plain zero-shot.

    .venv/bin/python bench/bench_fewshot.py [--classes 1000] [--shots 16] [--dim 512] [--stored 100000]
    [--json]
    .venv/bin/python bench/bench_fewshot.py --quick --json   # 20 classes x 4 shots, 2,000 stored: seconds

Fitting: GDA's closed form (class means, the shrinkage precision, W and b), and choosing its alpha
by 5-fold cross-validation over the shots. Scoring: `stored` embeddings against every class, for
GDA (folded into one linear layer) beside zero-shot, which is one matmul of the same shape: the
ratio says what the adaptation costs over zero-shot. Absolute times depend on the machine; the
ratio is what to compare.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from explorer.embed.model import normalize
from explorer.science import fewshot


def timed(fn, repeat: int = 3):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=None, help="default 1000; 20 with --quick")
    parser.add_argument("--shots", type=int, default=None, help="default 16; 4 with --quick")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--stored", type=int, default=None, help="default 100,000; 2,000 with --quick")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the test suite)")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    args.classes = args.classes or (20 if args.quick else 1000)
    args.shots = args.shots or (4 if args.quick else 16)
    args.stored = args.stored or (2_000 if args.quick else 100_000)
    rng = np.random.default_rng(0)
    centres = normalize(rng.normal(size=(args.classes, args.dim)))
    labels = np.repeat(np.arange(args.classes), args.shots)
    shots = normalize(centres[labels] + rng.normal(size=(len(labels), args.dim)).astype(np.float32) / 3)
    text = normalize(centres + rng.normal(size=centres.shape).astype(np.float32) / 2)
    stored = normalize(rng.normal(size=(args.stored, args.dim)))
    names = [str(i) for i in range(args.classes)]

    _, fit_s = timed(lambda: fewshot.gda_fit(shots, labels, args.classes))
    choice, choose_s = timed(lambda: fewshot.choose("gda", shots, labels, names, text, 100.0), repeat=1)
    gda = fewshot.fit("gda", shots, labels, names, text, 100.0, choice.params)
    zero = fewshot.fit("zero-shot", shots, labels, names, text, 100.0)
    _, gda_score_s = timed(lambda: gda.predict(stored))
    _, zero_score_s = timed(lambda: zero.predict(stored))
    doc = {"classes": args.classes, "shots": args.shots, "dim": args.dim, "stored": args.stored,
           "gda_fit_s": round(fit_s, 4), "gda_choose_alpha_s": round(choose_s, 4), "chosen": choice.params,
           "gda_score_s": round(gda_score_s, 4), "zero_shot_score_s": round(zero_score_s, 4),
           "score_ratio_gda_to_zero_shot": round(gda_score_s / zero_score_s, 3)}
    print(f"GDA fit, {args.classes} classes x {args.shots} shots x {args.dim}-d: {fit_s:.3f} s; "
          f"choosing alpha by 5-fold CV: {choose_s:.2f} s (alpha {choice.params['alpha']})")
    print(
        f"scoring {args.stored:,} stored embeddings: GDA {gda_score_s:.3f} s, "
        f"zero-shot {zero_score_s:.3f} s, "
        f"ratio {doc['score_ratio_gda_to_zero_shot']:.2f}x")
    if args.json:
        print(json.dumps(doc))


if __name__ == "__main__":
    main()
