"""clip-explorer search --index PATH --text ... --image ...: find images by text and/or image."""
from __future__ import annotations

import argparse
import json
import sys

from explorer.inputs.settings import load_settings

from .common import IMAGE_LIMIT_FLAGS, add_model_arguments, model_from, prompt_warnings


class _Query(argparse.Action):
    """Collect --text and --image in the order given, so --weight values can pair with them."""

    def __call__(self, parser, namespace, values, option_string=None):
        queries = list(getattr(namespace, "queries", None) or [])
        queries.append((self.dest, values))
        namespace.queries = queries


def register(commands) -> None:
    parser = commands.add_parser("search", help="search an index by text and/or image (weighted)")
    parser.add_argument("--index", required=True, metavar="PATH")
    parser.add_argument("--text", action=_Query, metavar="TEXT", help="a text query (repeatable)")
    parser.add_argument("--image", action=_Query, metavar="IMG", help="an image query (repeatable)")
    parser.add_argument("--weight", type=float, action="append", metavar="W",
                        help="weight of each query, in the order given (default 1.0; negative steers away)")
    parser.add_argument("-k", type=int, default=10, help="number of results")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS)
    parser.set_defaults(handler=run, queries=None)


def run(args: argparse.Namespace) -> int:
    queries = args.queries or []
    if not queries:
        raise ValueError("give at least one --text or --image query")
    weights = args.weight or [1.0] * len(queries)
    if len(weights) != len(queries):
        raise ValueError(
            f"got {len(weights)} --weight values for {len(queries)} queries; give one per query or none")
    from explorer.embed.model import load_model  # torch and open_clip: only once a model is needed
    from explorer.index.image_index import open_index

    settings = load_settings(args)
    index = open_index(args.index)
    if args.model:
        model = model_from(settings)
    else:  # the model recorded in the index
        model = load_model(index.identity["name"], index.identity.get("pretrained"), settings.device,
                           settings.precision)
    texts = [(value, w) for (kind, value), w in zip(queries, weights) if kind == "text"]
    warnings = prompt_warnings(model, [t for t, _ in texts])
    images = [(value, w) for (kind, value), w in zip(queries, weights) if kind == "image"]
    vector = index.query_vector(model, [t for t, _ in texts], [i for i, _ in images],
                                [w for _, w in texts + images], settings.limits)
    hits = index.search(vector, args.k)[0]
    if index.count == 0:  # said as the Search tab says it
        from explorer.index.build import EMPTY_INDEX
        warnings = [*warnings, EMPTY_INDEX]
        if not args.json:
            print(f"note: {EMPTY_INDEX}", file=sys.stderr)
    if args.json:
        json.dump(
            {
                "index": args.index, "model": model.identifier, "root": str(
                    index.root), "queries": [{"kind": kind, "value": value, "weight": w}
                                             for (kind, value), w in zip(queries, weights)],
                "results": [{"rank": h.rank, "path": h.path, "absolute": str(h.absolute), "score": h.score}
                            for h in hits], "warnings": warnings
            }, sys.stdout, indent=2)
        print()
    else:
        for h in hits:
            print(f"{h.rank:4d}  {h.score:+.4f}  {h.path}")
    return 0
