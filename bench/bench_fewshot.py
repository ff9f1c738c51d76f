"""Few-shot adaptation (explorer/science/fewshot.py): its cost against zero-shot, and when it helps.

Timing (synthetic embeddings):

    .venv/bin/python bench/bench_fewshot.py [--classes 1000] [--shots 16] [--dim 512] [--stored 100000]
    [--json]
    .venv/bin/python bench/bench_fewshot.py --quick --json   # 20 classes x 4 shots, 2,000 stored: seconds

Fitting: GDA's closed form (class means, the shrinkage precision, W and b), and choosing its alpha by
leave-one-out over the shots (fewshot.choose, in closed form; a seeded sample of at most
fewshot.MAX_LEFT_OUT shots is left out). Scoring: `stored` embeddings against every class, for GDA
(folded into one linear layer) beside zero-shot, which is one matmul of the same shape: the ratio
says what the adaptation costs over zero-shot. Absolute times depend on the machine.

The measured table (--table; the project's shapes model, images drawn by tests/shapes.py):

    .venv/bin/python bench/bench_fewshot.py --table [--classes 24] [--train 32] [--test 20] [--seeds 5]
    [--shots 1,2,4,8,16] [--model local-dir:tests/assets/shapes_clip] [--json]
    .venv/bin/python bench/bench_fewshot.py --table --quick --json   # 4 classes, 2 seeds: seconds

Zero-shot, prototype, Tip-Adapter and GDA at each shot count per class, held-out top-1 (mean and
standard deviation over the seeds' draws of the shots, all scored on the same test images), once with
the real class names ("a red circle") and once with made-up words the text tower cannot know. The
images are embedded once; only the class text changes between the two. Each cell also counts the
seeds whose hyper-parameter search chose nothing (every value tied, or one shot a class: the
default was used).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.embed.model import normalize  # noqa: E402
from explorer.science import fewshot  # noqa: E402

SHAPES = "local-dir:tests/assets/shapes_clip"
MADE_UP = ("blicket", "dax", "wug", "toma", "fep", "zorp", "mib", "kiki", "gazzer", "tufa", "plonk", "vrem",
           "snib", "quolt", "darp", "frell", "glimp", "yext", "brolf", "skree", "tiv", "morf", "nulp", "zeb")
TEMPLATE = "a photo of a {}."


def timed(fn, repeat: int = 3):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


# ---- timing ----------------------------------------------------------------------------------------------
def timing(args) -> dict:
    classes = args.classes or (20 if args.quick else 1000)
    shots_per_class = args.shots_per_class or (4 if args.quick else 16)
    stored_n = args.stored or (2_000 if args.quick else 100_000)
    rng = np.random.default_rng(0)
    centres = normalize(rng.normal(size=(classes, args.dim)))
    labels = np.repeat(np.arange(classes), shots_per_class)
    shots = normalize(centres[labels] + rng.normal(size=(len(labels), args.dim)).astype(np.float32) / 3)
    text = normalize(centres + rng.normal(size=centres.shape).astype(np.float32) / 2)
    stored = normalize(rng.normal(size=(stored_n, args.dim)))
    names = [str(i) for i in range(classes)]

    _, fit_s = timed(lambda: fewshot.gda_fit(shots, labels, classes))
    choice, choose_s = timed(lambda: fewshot.choose("gda", shots, labels, names, text, 100.0), repeat=1)
    tip, tip_s = timed(lambda: fewshot.choose("tip-adapter", shots, labels, names, text, 100.0), repeat=1)
    gda = fewshot.fit("gda", shots, labels, names, text, 100.0, choice.params)
    zero = fewshot.fit("zero-shot", shots, labels, names, text, 100.0)
    _, gda_score_s = timed(lambda: gda.predict(stored))
    _, zero_score_s = timed(lambda: zero.predict(stored))
    doc = {"classes": classes, "shots": shots_per_class, "dim": args.dim, "stored": stored_n,
           "gda_fit_s": round(fit_s, 4), "gda_choose_alpha_s": round(choose_s, 4), "chosen": choice.params,
           "left_out": choice.left_out, "tip_choose_s": round(tip_s, 4), "tip_betas": len(tip.grid["beta"]),
           "gda_score_s": round(gda_score_s, 4), "zero_shot_score_s": round(zero_score_s, 4),
           "score_ratio_gda_to_zero_shot": round(gda_score_s / zero_score_s, 3)}
    print(f"GDA fit, {classes} classes x {shots_per_class} shots x {args.dim}-d: {fit_s:.3f} s; choosing "
          f"alpha by leave-one-out ({choice.left_out:,} shots left out): {choose_s:.2f} s "
          f"({choice.how})")
    print(f"Tip-Adapter's search: {tip_s:.2f} s over {len(tip.grid['beta'])} betas x "
          f"{len(tip.grid['alpha'])} alphas")
    print(f"scoring {stored_n:,} stored embeddings: GDA {gda_score_s:.3f} s, "
          f"zero-shot {zero_score_s:.3f} s, ratio {doc['score_ratio_gda_to_zero_shot']:.2f}x")
    return doc


# ---- the measured table ------------------------------------------------------------------------------
def embed_shapes(model, classes: int, train: int, test: int):
    """(train (f, y), test (f, y), class names) of `classes` shape classes drawn by tests/shapes.py,
    `train` and `test` images each, embedded once."""
    from explorer.inputs.sources import embed_folder
    from tests.shapes import CLASSES, make_labelled_folder

    with tempfile.TemporaryDirectory() as scratch:
        for split, n, seed in (("train", train, 11), ("test", test, 12)):
            make_labelled_folder(Path(scratch) / split, CLASSES[:classes], n, seed=seed)
        made = [embed_folder(model, Path(scratch) / s, labelled=True) for s in ("train", "test")]
    assert made[0].class_names == made[1].class_names
    train_set, test_set = ((m.embeddings, m.labels) for m in made)
    return train_set, test_set, list(made[0].class_names)


def table_rows(model, train, test, names: list[str], shots: list[int], seeds: int) -> list[dict]:
    """One row per (class names, shot count): each method's mean, spread and tied seeds."""
    from explorer.science.fewshot_experiment import FewShotExperiment, PromptChoice, class_text

    rows = []
    for kind, labels in (("real", names), ("made-up", list(MADE_UP[:len(names)]))):
        text = class_text(model, labels, PromptChoice([TEMPLATE], "single")).embeddings
        experiment = FewShotExperiment(train, test, labels, text, model.logit_scale)
        for k in shots:
            scores = {m: experiment.score(m, k, seeds) for m in fewshot.METHODS}
            rows.append({"names": kind, "shots": k, "methods": {
                m: {"mean": s.top1, "std": s.top1_spread, "not_chosen_seeds": s.tied_seeds(),
                    "per_seed": [experiment.draw(m, k, seed).top1 for seed in range(seeds)]}
                for m, s in scores.items()}})
    return rows


def markdown(rows: list[dict], seeds: int) -> str:
    """The table as markdown: top-1 % mean ± std over the seeds; (n) = seeds whose search chose nothing."""
    head = "| class names | shots | " + " | ".join(fewshot.METHODS) + " |"
    lines = [head, "| --- | --- |" + " --- |" * len(fewshot.METHODS)]
    for row in rows:
        cells = []
        for m in fewshot.METHODS:
            r = row["methods"][m]
            tied = f" ({r['not_chosen_seeds']})" if r["not_chosen_seeds"] else ""
            cells.append(f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}{tied}")
        lines.append(f"| {row['names']} | {row['shots']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(args) -> dict:
    from explorer.embed.model import load_model

    classes = args.classes or (4 if args.quick else 24)
    train, test = args.train or (4 if args.quick else 32), args.test or (4 if args.quick else 20)
    seeds = args.seeds or (2 if args.quick else 5)
    shots = [int(s) for s in (args.shots or ("1,2" if args.quick else "1,2,4,8,16")).split(",")]
    where = f"local-dir:{ROOT / 'tests' / 'assets' / 'shapes_clip'}" if args.model == SHAPES else args.model
    model = load_model(where, None, device="cpu")
    start = time.perf_counter()
    train_set, test_set, names = embed_shapes(model, classes, train, test)
    embedded = time.perf_counter()
    rows = table_rows(model, train_set, test_set, names, shots, seeds)
    done = time.perf_counter()
    print(f"{args.model}: {classes} shape classes, {train} training and {test} test images each, "
          f"template {TEMPLATE!r}; held-out top-1 %, mean ± std over {seeds} draws of the shots; (n): "
          "seeds whose hyper-parameter search chose nothing (all values tied, or one shot a class), the "
          "default used")
    print()
    print(markdown(rows, seeds))
    print()
    print(f"embedding {classes * (train + test)} images once: {embedded - start:.1f} s; the table: "
          f"{done - embedded:.1f} s")
    return {"model": args.model, "classes": classes, "train_per_class": train, "test_per_class": test,
            "seeds": seeds, "shots": shots, "template": TEMPLATE, "made_up_names": list(MADE_UP[:classes]),
            "rows": rows, "markdown": markdown(rows, seeds), "embed_s": round(embedded - start, 3),
            "table_s": round(done - embedded, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="the measured table on the shapes model")
    parser.add_argument("--classes", type=int, default=None,
                        help="timing: default 1000 (20 with --quick); table: 24 (4), at most 24")
    parser.add_argument("--shots", default=None,
                        help="timing: shots per class, default 16 (4 with --quick); table: a list, "
                             "default 1,2,4,8,16 (1,2)")
    parser.add_argument("--dim", type=int, default=512, help="timing: embedding width")
    parser.add_argument("--stored", type=int, default=None, help="timing: default 100,000 (2,000)")
    parser.add_argument("--train", type=int, default=None, help="table: training images per class (32)")
    parser.add_argument("--test", type=int, default=None, help="table: test images per class (20)")
    parser.add_argument("--seeds", type=int, default=None, help="table: draws of the shots, 5 (2)")
    parser.add_argument("--model", default=SHAPES, help="table: the model (default: the shapes model)")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the test suite)")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    args.shots_per_class = int(args.shots) if args.shots and not args.table else None
    doc = table(args) if args.table else timing(args)
    if args.json:
        print(json.dumps(doc))


if __name__ == "__main__":
    main()
