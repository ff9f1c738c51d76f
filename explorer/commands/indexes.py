"""clip-explorer indexes [--index-dir DIR]: the indexes the app keeps (or any folder of indexes)."""
from __future__ import annotations

import argparse
import json
import sys

from explorer.inputs.settings import add_settings_arguments, load_settings


def register(commands) -> None:
    parser = commands.add_parser("indexes", help="list the app's search indexes (the folder each covers, "
                                                 "its size and model)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_settings_arguments(parser, only=("index_dir",))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from explorer.index.registry import damaged_indexes, list_indexes  # FAISS (never torch)

    settings = load_settings(args)
    found, damaged = list_indexes(settings.index_dir), damaged_indexes(settings.index_dir)
    if args.json:
        json.dump(
            {
                "index_dir": str(settings.index_dir), "indexes": [
                    {"index": str(i.folder), "root": str(i.root), "images": i.count, "model": i.model}
                    for i in found
                ], "damaged": [{"index": str(folder), "problem": problem} for folder, problem in damaged]
            }, sys.stdout, indent=2)
        print()
    else:
        for info in found:
            print(f"{info.folder}\n  {info.label()}")
        for folder, problem in damaged:
            print(f"{folder}\n  DAMAGED: {problem}")
        print(
            f"{len(found)} index(es) in {settings.index_dir}" +
            (f", {len(damaged)} damaged" if damaged else ""), file=sys.stderr)
    return 1 if damaged else 0
