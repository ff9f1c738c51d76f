"""CLIP Explorer's indexing against clip-retrieval's inference: same JPEG folder, same checkpoint, same
batch size and decoding workers, on the CPU, each tool run as its own command, side by side.

    .venv/bin/python bench/bench_vs_clip_retrieval.py                        # 300 JPEGs, 2 rounds
    .venv/bin/python bench/bench_vs_clip_retrieval.py --images 40 --rounds 1  # a smoke run (a few minutes)
    .venv/bin/python bench/bench_vs_clip_retrieval.py --clip-retrieval /path/to/bin/clip-retrieval --json

clip-retrieval lives in its own virtualenv, outside this repository (it pins old numpy/pyarrow and its
own torch, and needs setuptools < 70):

    python3 -m venv /tmp/cr-venv
    /tmp/cr-venv/bin/pip install 'setuptools<70' clip-retrieval
    /tmp/cr-venv/bin/clip-retrieval inference --help      # check it runs

What is measured: N photo-like 1024x768 JPEGs (bench_index.make_photos) and ONE ViT-B-32 open_clip
checkpoint with random weights (nothing is downloaded), saved once under --cache; both tools load
that file. Each run is a subprocess timed from launch to exit (wall time, start-up included: Python
and torch imports, model load, clip-retrieval's warm-up, writing the output), into a fresh output
folder, alternating ours, theirs, ours, theirs... for --rounds rounds. Both get --batch-size and
--workers decoding processes, the CPU (CUDA_VISIBLE_DEVICES="" for both: clip-retrieval has no device
flag and takes CUDA when it sees it) and fp32. clip-retrieval runs image-only (--enable_text False,
--enable_metadata False, input_format files, its fastest path here) and writes img_emb/*.npy.
The checkpoint goes in as `--clip_model open_clip:ViT-B-32/<absolute path>`: its open_clip loader
splits the string on "/" and joins everything after the model name back, so "ViT-B-32//abs/file.pt"
gives the file's absolute path as open_clip's `pretrained` (a file path is accepted there).

Checked: both produced N embeddings (our --json "total"; the rows of clip-retrieval's .npy files), and
the two sets of embeddings agree (cosine per image, ours vs theirs in the same order; for scale, the
mean cosine between different images). Not exactly 1: we decode a JPEG at a reduced DCT scale that
still covers the model's input (Image.draft), clip-retrieval decodes it in full; its output is float16.

Printed: per-run seconds and img/s, then clip-retrieval seconds / ours (median and best). --json
prints one JSON document last: speedup (median clip-retrieval s / median ours s), speedup_best,
ours_s, clip_retrieval_s, images, clip_retrieval_command, ours_command, runs, versions, ...
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    from bench_index import make_photos  # run as a script: bench/ is on sys.path
except ImportError:
    from bench.bench_index import make_photos

REPO = Path(__file__).resolve().parents[1]
MODEL = "ViT-B-32"
DEFAULT_CR = "/tmp/cr-venv/bin/clip-retrieval"
VERSIONS = ("torch", "open_clip_torch", "Pillow", "numpy", "clip-retrieval")


def default_clip_explorer() -> str:
    beside = Path(sys.executable).parent / "clip-explorer"
    return str(beside if beside.exists() else REPO / ".venv" / "bin" / "clip-explorer")


def make_checkpoint(cache: Path) -> Path:
    """One ViT-B-32 state dict with random (seeded) weights, kept between runs."""
    path = cache / "vit_b_32_random_seed0.pt"
    if path.is_file():
        return path
    import open_clip
    import torch

    cache.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = open_clip.create_model(MODEL)
    partial = path.with_suffix(".partial")
    torch.save(model.state_dict(), partial)
    os.replace(partial, path)
    return path


def photo_folder(cache: Path, n: int) -> Path:
    """A folder holding exactly n JPEGs: both tools index everything they find in it."""
    folder = cache / f"photos_{n}"
    make_photos(folder, n)
    extra = [p for p in folder.iterdir() if p.name not in {f"{i:05d}.jpg" for i in range(n)}]
    if extra:
        raise SystemExit(f"{folder} holds other files ({extra[0].name}, ...): remove it and run again")
    return folder


def ours_command(args, photos: Path, checkpoint: Path, out: Path) -> list[str]:
    return [args.clip_explorer, "index", str(photos), "--index", str(out / "index"), "--model", MODEL,
            "--pretrained", str(checkpoint), "--batch-size", str(args.batch_size),
            "--workers", str(args.workers), "--device", "cpu", "--precision", "fp32", "--json"]


def theirs_command(args, photos: Path, checkpoint: Path, out: Path) -> list[str]:
    return [args.clip_retrieval, "inference", "--input_dataset", str(photos), "--output_folder", str(out),
            "--input_format", "files", "--clip_model", f"open_clip:{MODEL}/{checkpoint.resolve()}",
            "--batch_size", str(args.batch_size), "--num_prepro_workers", str(args.workers),
            "--enable_text", "False", "--enable_image", "True", "--enable_metadata", "False"]


def child_env() -> dict:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
            "GRADIO_ANALYTICS_ENABLED": "False"}


def timed(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds from launch to exit, and the finished process; a failed run stops the bench."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=child_env())
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {shlex.join(command)}\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return seconds, done


def last_json(text: str) -> dict:
    """The pretty-printed JSON document that `clip-explorer index --json` ends with."""
    start = text.rfind("\n{\n") + 1 if "\n{\n" in text else text.index("{")
    return json.JSONDecoder().raw_decode(text[start:])[0]


def run_ours(args, photos: Path, checkpoint: Path, out: Path) -> dict:
    seconds, done = timed(ours_command(args, photos, checkpoint, out), REPO)
    doc = last_json(done.stdout)
    if doc.get("total") != args.images or doc.get("failed"):
        raise SystemExit(f"clip-explorer indexed {doc.get('total')} images ({doc.get('failed')} failed), "
                         f"not {args.images}")
    return {"seconds": seconds, "inner_s": doc.get("seconds")}


def run_theirs(args, photos: Path, checkpoint: Path, out: Path) -> dict:
    seconds, done = timed(theirs_command(args, photos, checkpoint, out), out.parent)
    files = sorted((out / "img_emb").glob("*.npy"))
    rows = sum(np.load(f, mmap_mode="r").shape[0] for f in files)
    if rows != args.images:
        raise SystemExit(
            f"clip-retrieval wrote {rows} embeddings in {len(files)} .npy files, not {args.images}")
    warm = re.search(r"done warming up in ([\d.]+)s", done.stdout + done.stderr)
    return {"seconds": seconds, "inner_s": float(warm.group(1)) if warm else None}


def agreement(ours_out: Path, theirs_out: Path) -> dict:
    """Cosine between the two tools' embeddings of each image (clip-retrieval: sorted relative paths)."""
    try:
        from explorer.index.image_index import open_index

        index = open_index(ours_out / "index")
        try:
            names, ours = index.all_embeddings()
        finally:
            index.close()
        theirs = np.concatenate([np.load(f) for f in sorted((theirs_out / "img_emb").glob("*.npy"))])
        ours = ours[np.argsort(names)].astype(np.float32)
        ours /= np.linalg.norm(ours, axis=1, keepdims=True)
        theirs = theirs.astype(np.float32) / np.linalg.norm(theirs.astype(np.float32), axis=1, keepdims=True)
        cos = ours @ theirs.T
        same, other = np.diag(cos), cos[~np.eye(len(cos), dtype=bool)]
        return {"cosine_min": round(float(same.min()), 5), "cosine_mean": round(float(same.mean()), 5),
                "cosine_other_images_mean": round(float(other.mean()), 5) if other.size else None}
    except Exception as exc:  # the check is a courtesy: a changed index API must not lose the timings
        print(f"embedding cross-check skipped: {type(exc).__name__}: {exc}")
        return {"cosine_min": None, "cosine_mean": None, "cosine_other_images_mean": None}


def versions(executable: Path) -> dict:
    code = (f"import importlib.metadata as m, json\nout = {{}}\nfor n in {VERSIONS!r}:\n"
            "    try: out[n] = m.version(n)\n    except Exception: out[n] = None\nprint(json.dumps(out))")
    try:
        done = subprocess.run([str(executable), "-c", code], capture_output=True, text=True, timeout=60)
        return json.loads(done.stdout)
    except Exception:
        return {}


def show_run(label: str, round_no: int, run: dict, images: int, inner: str) -> None:
    extra = f", {inner} {run['inner_s']:.1f} s" if run["inner_s"] is not None else ""
    print(f"round {round_no}  {label:<15} {run['seconds']:7.1f} s  {images / run['seconds']:6.1f} img/s"
          f"  (wall, start-up included{extra})", flush=True)


def measure(args, photos: Path, checkpoint: Path, work: Path) -> tuple[list, list, dict]:
    ours, theirs, check = [], [], {}
    for r in range(1, args.rounds + 1):
        ours_out, theirs_out = work / f"ours_{r}", work / f"clip_retrieval_{r}"
        ours_out.mkdir()  # its index folder inside is created by the run: always a full, fresh index
        ours.append(run_ours(args, photos, checkpoint, ours_out))
        show_run("clip-explorer", r, ours[-1], args.images, "indexing itself")
        theirs.append(run_theirs(args, photos, checkpoint, theirs_out))
        show_run("clip-retrieval", r, theirs[-1], args.images, "of which warm-up")
        if r == 1:
            check = agreement(ours_out, theirs_out)
        shutil.rmtree(ours_out, ignore_errors=True)
        shutil.rmtree(theirs_out, ignore_errors=True)
    return ours, theirs, check


def summary(args, ours: list, theirs: list, check: dict, commands: dict) -> dict:
    ours_s = [round(r["seconds"], 2) for r in ours]
    theirs_s = [round(r["seconds"], 2) for r in theirs]
    med_ours, med_theirs = statistics.median(ours_s), statistics.median(theirs_s)
    doc = {"speedup": round(med_theirs / med_ours, 3), "speedup_best": round(min(theirs_s) / min(ours_s), 3),
           "ours_s": med_ours, "clip_retrieval_s": med_theirs, "ours_best_s": min(ours_s),
           "clip_retrieval_best_s": min(theirs_s), "ours_img_s": round(args.images / med_ours, 2),
           "clip_retrieval_img_s": round(args.images / med_theirs, 2), "images": args.images,
           "rounds": args.rounds, "batch_size": args.batch_size, "workers": args.workers, "device": "cpu",
           "model": MODEL, "ours_runs_s": ours_s, "clip_retrieval_runs_s": theirs_s,
           "ours_indexing_s": [r["inner_s"] for r in ours],
           "clip_retrieval_warmup_s": [r["inner_s"] for r in theirs],
           "embedding_cosine_min": check.get("cosine_min"), "embedding_cosine_mean": check.get("cosine_mean"),
           "embedding_cosine_other_images_mean": check.get("cosine_other_images_mean"),
           **commands}
    print(f"clip-explorer  median {med_ours:.1f} s ({doc['ours_img_s']:.1f} img/s), best {min(ours_s):.1f} s")
    print(f"clip-retrieval median {med_theirs:.1f} s ({doc['clip_retrieval_img_s']:.1f} img/s), "
          f"best {min(theirs_s):.1f} s")
    print(
        f"clip-retrieval s / clip-explorer s: median {doc['speedup']:.2f}x, best {doc['speedup_best']:.2f}x")
    print(f"embeddings, ours vs clip-retrieval, same image: cosine min {check.get('cosine_min')}, mean "
          f"{check.get('cosine_mean')} (different images: mean {check.get('cosine_other_images_mean')})")
    return doc


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300, help="how many 1024x768 JPEGs (default 300)")
    parser.add_argument("--rounds", type=int, default=2, help="ours-then-theirs pairs (default 2)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="decoding processes, for both tools")
    parser.add_argument("--clip-retrieval", default=DEFAULT_CR, help=f"its command (default {DEFAULT_CR})")
    parser.add_argument("--clip-explorer", default=default_clip_explorer(), help="our command")
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "clip_explorer_bench_vs_cr",
                        help="where the checkpoint and the JPEGs are kept between runs")
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    if not Path(args.clip_retrieval).exists():
        parser.error(f"{args.clip_retrieval} not found: install clip-retrieval (see this file's docstring)")
    return args


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    checkpoint = make_checkpoint(args.cache)
    photos = photo_folder(args.cache, args.images)
    print(f"{args.images} JPEGs 1024x768 in {photos}, {MODEL} random weights in {checkpoint} "
          f"({time.perf_counter() - start:.1f}s to prepare); {os.cpu_count()} CPUs", flush=True)
    work = Path(tempfile.mkdtemp(prefix="clip_explorer_bench_vs_cr_"))
    commands = {"ours_command": shlex.join(ours_command(args, photos, checkpoint, work / "ours_R")),
                "clip_retrieval_command": "CUDA_VISIBLE_DEVICES= " + shlex.join(
                    theirs_command(args, photos, checkpoint, work / "clip_retrieval_R"))}
    print(f"ours:           {commands['ours_command']}\nclip-retrieval: {commands['clip_retrieval_command']}")
    try:
        ours, theirs, check = measure(args, photos, checkpoint, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = summary(args, ours, theirs, check, commands)
    doc["versions"] = {"ours": versions(Path(sys.executable)),
                       "clip_retrieval": versions(Path(args.clip_retrieval).parent / "python")}
    print(f"versions: {doc['versions']}")
    if args.json:
        print(json.dumps(doc))


if __name__ == "__main__":
    main()
