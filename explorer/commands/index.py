"""clip-explorer index DIR --index PATH: embed a folder of images into a searchable index."""
from __future__ import annotations

import argparse
import json
import sys

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
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    model = model_from(settings)
    bar = ProgressBar(quiet=args.json)
    try:
        report = build_index(model, args.folder, args.index, batch_size=args.batch_size, workers=args.workers,
                             index_type=args.index_type, progress=bar, limits=settings.limits)
    finally:
        bar.close()
    counts = {"added": report.added, "updated": report.updated, "removed": report.removed,
              "unchanged": report.unchanged, "failed": len(report.failed)}
    if args.json:
        json.dump({"index": args.index, "model": model.identifier, **counts, "total": report.total,
                   "index_type": report.index_type, "params": report.params,
                   "seconds": round(report.seconds, 3), "waited": round(report.waited, 3),
                   "timings": report.timings(), "notes": report.notes,
                   "failures": [{"path": f.path, "error": f.reason} for f in report.failed]}, sys.stdout, indent=2)
        print()
    else:
        for failure in report.failed:
            print(f"{failure.path}: error: {failure.reason}", file=sys.stderr)
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
        print(", ".join(f"{n} {name}" for name, n in counts.items())
              + f"; {report.total} images searchable ({report.index_type})")
        print(f"time: {report.timing_text()}")
    return 0 if not report.failed else 1
