"""Peak memory of a three-model comparison against one model alone, each in its own process.

compare_models (explorer/science/model_compare.py) runs the models one after another: the opener here
loads each with explorer.embed.model.load_model (random weights for an open_clip name, CPU, fp32) and
drops it when its run ends, so at most one model is resident. A child process (this script with
--child) runs either the whole comparison, or one model's share of it alone (the same steps: load,
embed the folder into a fresh index, the Prompt lab's run with the built-in sets, the cost), and
reports `resource.getrusage(RUSAGE_SELF).ru_maxrss` after its imports (torch, open_clip, explorer:
the floor) and at its end (the peak).
Decoding runs inline (workers=0), so every byte is the child's own. The folder is synthetic: 8 classes
of coloured shapes (tests/shapes.py), labelled by sub-folder (--quick: 4 classes).

    .venv/bin/python bench/bench_compare.py [--models ViT-B-32,ViT-M-32,ViT-S-32] [--per-class 6] [--json]
    .venv/bin/python bench/bench_compare.py --quick --json   # 3 copies of the shapes model, children at once

Prints the comparison's peak over the largest single model's peak (`ratio`; 1.0: a comparison costs no
more memory than its largest model alone), the same above the import floor (`ratio_above_floor`), and
what keeping all three resident would come to by the same measure (`all_resident_estimate`: the floor
plus each model's own increment). --json prints one JSON document last.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES_DIR = ROOT / "tests" / "assets" / "shapes_clip"
FULL_MODELS = "ViT-B-32,ViT-M-32,ViT-S-32"


def max_rss_mb() -> float:
    """This process's peak resident set so far, MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args) -> dict:
    """Run in a fresh process: the comparison of all --models, or (--alone) the first model's share."""
    import open_clip  # noqa: F401 (load_model imports it: its memory belongs to the floor, not to a model)

    from explorer.index.embedding_store import stored_embeddings
    from explorer.index.registry import IndexRegistry
    from explorer.science.model_compare import ModelChoice, compare_models

    floor = max_rss_mb()
    choices = [ModelChoice.parse(entry) for entry in args.models.split(",")]
    registry = IndexRegistry(args.index_dir)
    root = Path(args.folder)

    def embed_for(model, progress, stop):
        return stored_embeddings(model, root, registry, labelled=True, progress=progress, should_stop=stop,
                                 workers=0)

    started = time.perf_counter()
    if args.alone:
        runs = [alone(choices[0], embed_for)]
    else:
        report = compare_models(choices, open_and_drop, embed_for, max_models=len(choices))
        runs = [_run_summary(run.choice.label(), run.cost, run.top1()) for run in report.runs]
    seconds = time.perf_counter() - started
    return {"floor_mb": floor, "peak_mb": max_rss_mb(), "seconds": seconds, "runs": runs}


def open_and_drop(choice):
    """The bench's ModelOpener: load the model, lend it, then drop our only reference (never two resident)."""
    import gc
    from contextlib import contextmanager

    from explorer.embed.model import load_model

    @contextmanager
    def opened():
        model = load_model(choice.name, choice.pretrained, device="cpu", precision="fp32")
        try:
            yield model
        finally:
            del model
            gc.collect()

    return opened()


def alone(choice, embed_for) -> dict:
    """One model's share of a comparison, the same steps compare_models takes for each model."""
    from explorer.science.model_cost import model_cost
    from explorer.science.prompt_lab import run_lab
    from explorer.science.prompts import builtin_template_set

    with open_and_drop(choice) as model:
        stored = embed_for(model, None, None)
        report = run_lab(model, stored.images, builtin_template_set("simple"), weighting="mean",
                         compare_builtins=stored.images.labelled)
        top1 = None if report.result is None else float(report.result.top1)
        summary = _run_summary(choice.label(), model_cost(model), top1)
        del model
    return summary


def _run_summary(label: str, cost, top1) -> dict:
    return {"model": label, "params": cost.params, "weight_mb": cost.weight_bytes / 2**20, "top1": top1}


def spawn(models: list[str], folder: Path, index_dir: Path, alone_run: bool) -> subprocess.Popen:
    """This script with --child in a fresh Python (collect its JSON line with `collect`)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--models", ",".join(models),
               "--folder", str(folder), "--index-dir", str(index_dir)] + (["--alone"] if alone_run else [])
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=env)


def collect(child_process: subprocess.Popen) -> dict:
    out, err = child_process.communicate(timeout=1800)
    if child_process.returncode != 0:
        raise SystemExit(f"child failed ({' '.join(child_process.args)}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def quick_models(scratch: Path) -> list[str]:
    """Three copies of the shapes model (the same architecture three times, three identifiers)."""
    entries = []
    for i in range(3):
        shutil.copytree(SHAPES_DIR, scratch / f"shapes_{i}")
        entries.append(f"local-dir:{scratch / f'shapes_{i}'}")
    return entries


def measure(models: list[str], classes: int, per_class: int, alone_all: bool, scratch: Path,
            parallel: bool = False) -> dict:
    from tests.shapes import CLASSES, make_labelled_folder

    folder = scratch / "images"
    make_labelled_folder(folder, CLASSES[:classes], per_class, seed=3)
    singles = models if alone_all else models[:1]
    jobs = [([m], scratch / f"index_alone_{i}", True) for i, m in enumerate(singles)]
    jobs.append((models, scratch / "index_compare", False))
    if parallel:   # each child's ru_maxrss is its own, so running them at once changes no figure
        results = [collect(p) for p in [spawn(m, folder, index, one) for m, index, one in jobs]]
    else:
        results = [collect(spawn(m, folder, index, one)) for m, index, one in jobs]
    alone_runs, together = results[:-1], results[-1]
    largest = max(alone_runs, key=lambda run: run["peak_mb"])
    increments = [run["peak_mb"] - run["floor_mb"] for run in alone_runs]
    above = (together["peak_mb"] - together["floor_mb"]) / (largest["peak_mb"] - largest["floor_mb"])
    return {
        "models": models, "classes": classes, "images": classes * per_class, "alone": alone_runs,
        "compare": together, "ratio": together["peak_mb"] / largest["peak_mb"], "ratio_above_floor": above,
        "all_resident_estimate": ((largest["floor_mb"] + sum(increments)) / largest["peak_mb"]
                                  if alone_all else None),
        "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}


def report(doc: dict) -> None:
    print(f"{doc['images']} images ({doc['classes']} classes), CPU, fp32; load average "
          f"{doc['load_average']:.2f} on {doc['cpus']} CPUs")
    for run in doc["alone"]:
        model = run["runs"][0]
        print(f"  alone   {model['model']:40s} peak {run['peak_mb']:8.1f} MB (floor {run['floor_mb']:.1f}, "
              f"weights {model['weight_mb']:.1f} MB) {run['seconds']:.1f} s")
    both = doc["compare"]
    print(f"  compare {', '.join(doc['models'])}: peak {both['peak_mb']:.1f} MB "
          f"(floor {both['floor_mb']:.1f}) {both['seconds']:.1f} s")
    print(f"ratio compare / largest alone: {doc['ratio']:.3f}; above the import floor: "
          f"{doc['ratio_above_floor']:.3f}"
          + ("" if doc["all_resident_estimate"] is None else
             f"; all three resident would be about {doc['all_resident_estimate']:.2f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help=f"comma-separated (default {FULL_MODELS}; --quick: "
                        "three copies of the shapes model); the first is the one run alone")
    parser.add_argument("--classes", type=int, default=None, help="shape classes (default 8; 4 with --quick)")
    parser.add_argument("--per-class", type=int, default=None,
                        help="images per class (default 6; 2 with --quick)")
    parser.add_argument("--alone", action="store_true", help="(--child) only the first model's share")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--index-dir", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true",
                        help="tiny models and folder; only the first model alone")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        models = args.models.split(",") if args.models else (
            quick_models(Path(scratch)) if args.quick else FULL_MODELS.split(","))
        classes = args.classes or (4 if args.quick else 8)
        per_class = args.per_class or (2 if args.quick else 6)
        doc = measure(models, classes, per_class, not args.quick, Path(scratch), parallel=args.quick)
    report(doc)
    if args.json:
        print(json.dumps(doc))


if __name__ == "__main__":
    main()
