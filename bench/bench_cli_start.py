"""Command-line start-up: wall time of `clip-explorer` commands, launch to exit, against a baseline.

Each case runs `python -m explorer ...` in a fresh process (start-up is per process), from a neutral
folder with PYTHONPATH set to the tree measured, so a second checkout of the project (`--baseline`,
e.g. `git worktree add /tmp/base <older commit>`) is measured by the same script on the same machine,
alternating rounds; the ratio is baseline / this tree, best of the rounds (medians are printed too).
Cases: `--help`, `indexes` (needs no model), `classify` of one 64 px image with the project's shapes
model (15 MB), and `search` of a 12-image index made with it (built once per tree, not timed). Two
references frame the figures: `python -c pass` (the interpreter alone) and `import torch, open_clip`
(what the commands that need no model no longer import). Each run also reports whether torch and
open_clip were imported.

    .venv/bin/python bench/bench_cli_start.py [--rounds 5] [--baseline /tmp/base] [--json]
    .venv/bin/python bench/bench_cli_start.py --quick --json      # --help and indexes, one round

--json prints one JSON document last: per case `<case>_s` (best, this tree), and with --baseline
`<case>_baseline_s` and `<case>_ratio`; `python_s`, `torch_open_clip_s` (without --quick);
`<case>_imports_torch`, `<case>_imports_open_clip`; `cases`, the whole record.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = f"local-dir:{ROOT / 'tests' / 'assets' / 'shapes_clip'}"
HEAVY = ("torch", "open_clip", "torchvision", "faiss")
# `python -m explorer ARGS`, exactly as -m runs it, then the heavy modules it imported on stderr.
RUNNER = """import runpy, sys
sys.argv = ["explorer", *sys.argv[1:]]
try:
    runpy.run_module("explorer", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("IMPORTED " + " ".join(m for m in HEAVY if m in sys.modules), file=sys.stderr)
sys.exit(code)
""".replace("HEAVY", repr(HEAVY))


def make_images(folder: Path, count: int) -> list[Path]:
    """`count` shape images (tests/shapes.py), 64 px PNGs, the first a red circle."""
    from tests.shapes import CLASSES, draw_shape

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        color, shape = CLASSES[(5 * i) % len(CLASSES)]
        path = folder / f"{i:02d}-{color}-{shape}.png"
        draw_shape(color, shape, rng=i).save(path)
        paths.append(path)
    return paths


def env_for(tree: Path, work: Path) -> dict:
    # as a user runs it: bytecode cached (a first, untimed round writes it), no EXPLORER_* settings
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EXPLORER_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(tree), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               EXPLORER_INDEX_DIR=str(work / "indexes"))
    return env


def run_once(argv: list[str], tree: Path, work: Path) -> tuple[float, list[str]]:
    """Seconds from launch to exit of one command, and the heavy modules it imported."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=work, env=env_for(tree, work), capture_output=True, text=True,
                          timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:])} under {tree} exited {done.returncode}:\n"
                         f"{done.stderr[-2000:]}")
    marks = [line for line in done.stderr.splitlines() if line.startswith("IMPORTED")]
    return seconds, (marks[-1].split()[1:] if marks else [])


def cases(work: Path, image: Path, quick: bool) -> dict[str, list[str]]:
    """Each case's arguments after `python -m explorer`; {index} is the tree's own index."""
    found = {"help": ["--help"], "indexes": ["indexes", "--index-dir", str(work / "listing")]}
    if not quick:
        found["classify"] = ["classify", str(image), "--labels",
                             "a red circle,a blue square,a green triangle", "--model", SHAPES]
        found["search"] = ["search", "--index", "{index}", "--text", "a red circle", "-k", "3"]
    return found


def build_index(tree: Path, work: Path, photos: Path, index: Path) -> None:
    argv = [sys.executable, "-c", RUNNER, "index", str(photos), "--index", str(index), "--model", SHAPES,
            "--workers", "0", "--json"]
    run_once(argv, tree, work)


def measure(trees: dict[str, Path], rounds: int, quick: bool, say) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        work = Path(tmp)
        photos = work / "photos"
        image = make_images(photos, 12)[0]
        (work / "listing").mkdir()
        indexes = {name: work / "listing" / f"index-{name}" for name in trees}
        if not quick:
            for name, tree in trees.items():
                say(f"building a 12-image index with {name} ({tree}) ...")
                build_index(tree, work, photos, indexes[name])
        plain = {"python": [sys.executable, "-c", "pass"]}
        if not quick:
            plain["torch_open_clip"] = [sys.executable, "-c", "import torch, open_clip"]
        record: dict[str, dict] = {}
        for args in cases(work, image, quick).values() if not quick else ():  # untimed: writes bytecode
            for name, tree in trees.items():
                run_once([sys.executable, "-c", RUNNER, *(a.format(index=indexes[name]) for a in args)],
                         tree, work)
        for _ in range(rounds):
            for case, args in cases(work, image, quick).items():
                for name, tree in trees.items():
                    argv = [sys.executable, "-c", RUNNER, *(a.format(index=indexes[name]) for a in args)]
                    seconds, imported = run_once(argv, tree, work)
                    entry = record.setdefault(case, {}).setdefault(name, {"times": [], "imports": imported})
                    entry["times"].append(seconds)
            for case, argv in plain.items():
                seconds, _ = run_once(argv, ROOT, work)
                record.setdefault(case, {}).setdefault("this", {"times": [], "imports": []})["times"].append(
                    seconds)
        for entries in record.values():
            for entry in entries.values():
                entry["best_s"] = round(min(entry["times"]), 3)
                entry["median_s"] = round(statistics.median(entry["times"]), 3)
                entry["times"] = [round(t, 3) for t in entry["times"]]
        return record


def summary(record: dict, baseline: bool) -> dict:
    doc: dict = {"cases": record}
    for case, entries in record.items():
        doc[f"{case}_s"] = entries["this"]["best_s"]
        if case in ("python", "torch_open_clip"):
            continue
        doc[f"{case}_imports_torch"] = "torch" in entries["this"]["imports"]
        doc[f"{case}_imports_open_clip"] = "open_clip" in entries["this"]["imports"]
        if baseline:
            doc[f"{case}_baseline_s"] = entries["baseline"]["best_s"]
            doc[f"{case}_ratio"] = round(entries["baseline"]["best_s"] / entries["this"]["best_s"], 2)
    return doc


def report(doc: dict, baseline: bool) -> None:
    for case, entries in doc["cases"].items():
        this = entries["this"]
        line = f"{case:<16} this tree {this['best_s']:6.2f} s (median {this['median_s']:.2f})"
        if baseline and "baseline" in entries:
            base = entries["baseline"]
            line += (f"   baseline {base['best_s']:6.2f} s (median {base['median_s']:.2f})   "
                     f"{doc[f'{case}_ratio']:.2f}x faster")
        if case not in ("python", "torch_open_clip"):
            line += f"   imports: {', '.join(this['imports']) or 'none of ' + '/'.join(HEAVY)}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None,
                        help="alternating rounds (default 5; 1 with --quick)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout of the project to compare with (its PYTHONPATH root)")
    parser.add_argument("--quick", action="store_true",
                        help="--help and indexes only, one round (for the test suite)")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "explorer" / "cli.py").is_file():
        parser.error(f"--baseline {args.baseline}: no explorer/cli.py there")
    trees = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    rounds = args.rounds or (1 if args.quick else 5)

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    record = measure(trees, rounds, args.quick, say)
    doc = summary(record, args.baseline is not None)
    doc.update(rounds=rounds, baseline=str(args.baseline) if args.baseline else None, cpus=os.cpu_count())
    report(doc, args.baseline is not None)
    if args.json:
        print(json.dumps(doc))


if __name__ == "__main__":
    main()
