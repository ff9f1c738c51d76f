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

from ..gpu_decode import DECODE_CHOICES
from ..index_build import build_index
from ..settings import load_settings
from .common import ProgressBar, IMAGE_LIMIT_FLAGS, add_model_arguments, model_from


def register(commands) -> None:
    parser = commands.add_parser("index", help="index a folder of images for search (incremental, resumable)")
    parser.add_argument("folder", metavar="DIR")
    parser.add_argument("--index", required=True, metavar="PATH", help="index folder (created if missing)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (0: decode inline)")
    parser.add_argument("--index-type", default=None, metavar="FACTORY",
                        help="FAISS index_factory string, e.g. Flat, IVF1024,Flat, HNSW32,Flat (default: by size)")
    parser.add_argument("--decode", choices=DECODE_CHOICES, default="auto",
                        help="where JPEGs are decoded: cpu (PIL, in the worker processes), gpu (a batch at a time on "
                             "the model's device, the workers only read files), auto (gpu when the model is on CUDA)")
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


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    model = model_from(settings)
    bar = ProgressBar(quiet=args.json)
    try:
        with first_ctrl_c_stops() as stop:
            report = build_index(model, args.folder, args.index, batch_size=args.batch_size, workers=args.workers,
                                 index_type=args.index_type, progress=bar, limits=settings.limits,
                                 should_stop=stop.is_set, decode=args.decode)
    finally:
        bar.close()
    counts = {"added": report.added, "updated": report.updated, "removed": report.removed,
              "unchanged": report.unchanged, "failed": len(report.failed)}
    if args.json:
        json.dump({"index": args.index, "model": model.identifier, **counts, "total": report.total,
                   "index_type": report.index_type, "params": report.params,
                   "seconds": round(report.seconds, 3), "waited": round(report.waited, 3),
                   "timings": report.timings(), "notes": report.notes, "cancelled": report.cancelled,
                   "todo": report.todo, "done": report.done,
                   "failures": [{"path": f.path, "error": f.reason} for f in report.failed]}, sys.stdout, indent=2)
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
