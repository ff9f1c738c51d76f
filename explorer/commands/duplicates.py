"""clip-explorer duplicates --index PATH: groups of near-duplicate images in an index."""
from __future__ import annotations

import argparse
import json
import sys


def register(commands) -> None:
    parser = commands.add_parser("duplicates", help="list groups of near-duplicate images in an index")
    parser.add_argument("--index", required=True, metavar="PATH")
    parser.add_argument("--threshold", type=float, default=0.95, help="cosine at or above which images match")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from explorer.index.image_index import open_index  # FAISS: only when the command runs

    if not -1.0 <= args.threshold <= 1.0:
        raise ValueError("--threshold is a cosine: between -1 and 1")
    index = open_index(args.index)
    groups = index.duplicate_groups(args.threshold)
    if args.json:
        # "groups" (path lists) as before; "scored_groups": the same groups with their cosines.
        json.dump({"index": args.index, "root": str(index.root), "threshold": args.threshold,
                   "groups": [g.paths for g in groups], "scored_groups": [g.as_dict() for g in groups]},
                  sys.stdout, indent=2)
        print()
    else:
        for number, group in enumerate(groups, start=1):
            print(f"group {number} ({len(group.paths)} images): cosine min {group.min_score:.4f}, "
                  f"max {group.max_score:.4f} over {group.over}")
            for path in group.paths:
                print(f"  {path}")
            print("  linked pairs (cosine):")
            for pair in group.links:
                print(f"    {pair.score:.4f}  {pair.a}  ~  {pair.b}")
        print(f"{len(groups)} groups of near-duplicates at cosine >= {args.threshold} (a group is joined by "
              "links at or above it; its min over all pairs can be lower)", file=sys.stderr)
    return 0
