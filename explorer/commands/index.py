"""clip-explorer index DIR --index PATH: embed a folder of images into a searchable index.

Ctrl-C stops the run after the batch in flight, keeping (and indexing) everything done; running the
command again resumes. A second Ctrl-C stops at once (the committed batches are still kept).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from contextlib import contextmanager

from explorer.embed.names import DECODE_CHOICES
from explorer.index.names import ENGINES
from explorer.inputs.settings import load_settings

from .common import IMAGE_LIMIT_FLAGS, ProgressBar, add_model_arguments, model_from


def register(commands) -> None:
    parser = commands.add_parser("index", help="index a folder of images for search (incremental, resumable)")
    parser.add_argument("folder", metavar="DIR")
    parser.add_argument("--index", required=True, metavar="PATH", help="index folder (created if missing)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--workers", type=workers_count, default=None, metavar="N|auto",
        help="decoding processes (0: decode inline; default auto: 1 per 16 CPUs when the model runs "
        "on the CPU, else every CPU but one)")
    parser.add_argument(
        "--index-type", default=None, metavar="FACTORY",
        help="FAISS index_factory string, e.g. Flat, IVF1024,Flat, HNSW32,Flat (default: by size)")
    parser.add_argument(
        "--decode", choices=DECODE_CHOICES, default="auto",
        help="where JPEGs are decoded: cpu (PIL, in the worker processes), gpu (a batch at a time on "
        "the model's device, the workers only read files), auto (gpu when the model is on CUDA)")
    parser.add_argument(
        "--engine", choices=ENGINES, default="local",
        help="local: this machine (decoding processes + the model); ray: a Ray Data pipeline, on a "
        "local Ray instance or the cluster at --ray-address (needs requirements-ray.txt)")
    parser.add_argument("--ray-address", metavar="ADDR", default=None,
                        help="with --engine ray: the cluster to join (e.g. ray://head:10001 or auto); "
                             "default: start a local Ray instance for this run")
    parser.add_argument(
        "--ray-actors", type=int, default=None, metavar="N",
        help="with --engine ray: model actors (default: one per GPU, or one per node without GPUs)")
    parser.add_argument(
        "--ray-actor-cpus", type=int, default=None, metavar="N",
        help="with --engine ray: CPUs (torch threads) per model actor (default: 1 with a GPU, "
        "else a node's CPUs less one)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS)
    parser.set_defaults(handler=run)


@contextmanager
def first_ctrl_c_stops():
    """Yields an Event that the first Ctrl-C sets (the run then stops between batches); the second
    Ctrl-C raises KeyboardInterrupt as usual. Outside the main thread, nothing is installed."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_ctrl_c(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after the batch in flight (Ctrl-C again to stop now)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def workers_count(text: str) -> int | None:
    """--workers: a count, or "auto" (None: build.auto_workers)."""
    if text.strip().lower() == "auto":
        return None
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, not {text!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return count


def ray_options(args: argparse.Namespace):
    """The --ray-* flags, or None with --engine local (where they are refused, to say they did nothing)."""
    given = [flag for flag, value in (("--ray-address", args.ray_address), ("--ray-actors", args.ray_actors),
                                      ("--ray-actor-cpus", args.ray_actor_cpus)) if value is not None]
    if args.engine != "ray":
        if given:
            raise ValueError(f"{', '.join(given)} needs --engine ray")
        return None
    if any(n is not None and n < 1 for n in (args.ray_actors, args.ray_actor_cpus)):
        raise ValueError("--ray-actors and --ray-actor-cpus must be at least 1")
    from explorer.index.build_ray import RayOptions
    return RayOptions(address=args.ray_address, actors=args.ray_actors, actor_cpus=args.ray_actor_cpus)


def run(args: argparse.Namespace) -> int:
    from explorer.index.build import build_index  # torch: only once a model is needed

    settings = load_settings(args)
    ray = ray_options(args)  # before the model loads: a wrong flag costs nothing
    model = model_from(settings)
    bar = ProgressBar(quiet=args.json)
    try:
        with first_ctrl_c_stops() as stop:
            report = build_index(model, args.folder, args.index, batch_size=args.batch_size,
                                 workers=args.workers, index_type=args.index_type, progress=bar,
                                 limits=settings.limits, should_stop=stop.is_set, decode=args.decode,
                                 engine=args.engine, ray=ray)
    finally:
        bar.close()
    counts = {"added": report.added, "updated": report.updated, "removed": report.removed,
              "unchanged": report.unchanged, "failed": len(report.failed)}
    if args.json:
        json.dump(
            {
                "index": args.index, "model": model.identifier, **counts, "total": report.total,
                "index_type": report.index_type, "params": report.params, "seconds": round(
                    report.seconds, 3), "waited": round(report.waited, 3), "timings": report.timings(),
                "notes": report.notes, "cancelled": report.cancelled, "todo": report.todo,
                "done": report.done, "failures": [{"path": f.path, "error": f.reason} for f in report.failed]
            }, sys.stdout, indent=2)
        print()
    else:
        for failure in report.failed:
            print(f"{failure.path}: error: {failure.reason}", file=sys.stderr)
        for note in report.notes + ([report.cancel_text()] if report.cancelled else []):
            print(f"note: {note}", file=sys.stderr)
        print(", ".join(f"{n} {name}" for name, n in counts.items())
              + f"; {report.total} images searchable ({report.index_type})")
        print(f"time: {report.timing_text()}")
    if report.cancelled:
        return 130  # as a shell reports a run ended by Ctrl-C
    return 0 if not report.failed else 1
