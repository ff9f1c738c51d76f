"""clip-explorer similarity IMAGE... --text T [--text T ...]: the image x text matrix of the Heatmaps tab.

Cosines, and the probabilities by the model's own rule (explorer/probability.py): per image a softmax
over the texts at the learned temperature, or per pair a sigmoid with the learned bias for sigmoid-trained
models; the JSON names the rule under "scoring" ("probability" is the matrix). Images may also be
sampled from an index (--index PATH --sample N), whose stored embeddings are used as they are. The
matrix is heatmaps.run_similarity's, the function behind the tab.
"""
from __future__ import annotations

import argparse
import json
import sys

from explorer.inputs.settings import load_settings
from explorer.science.prompts import parse_texts

from .common import IMAGE_LIMIT_FLAGS, ProgressBar, add_model_arguments, model_from, prompt_warnings


def register(commands) -> None:
    parser = commands.add_parser("similarity", help="image x text matrix of cosines and probabilities")
    parser.add_argument("images", nargs="*", metavar="IMAGE")
    parser.add_argument("--text", action="append", required=True, metavar="TEXT", help="a text (repeatable)")
    parser.add_argument("--index", metavar="PATH",
                        help="also sample images from this index (stored embeddings)")
    parser.add_argument("--sample", type=int, default=12, metavar="N",
                        help="how many images to sample from --index")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not args.images and not args.index:
        raise ValueError("give image files, or --index PATH to sample from")
    texts = parse_texts("\n".join(args.text))
    if not texts.labels:
        raise ValueError("every --text is empty")
    from explorer.index.image_index import open_index  # torch and FAISS: only once a model is needed
    from explorer.science.heatmaps import run_similarity

    settings = load_settings(args)
    model = model_from(settings)
    index = open_index(args.index) if args.index else None
    bar = ProgressBar(quiet=args.json)
    try:  # rows named by the paths as given (repeats numbered)
        result = run_similarity(model, args.images, texts, index=index, sample=args.sample,
                             limits=settings.limits, progress=bar)
    finally:
        bar.close()
    matrix = result.matrix
    warnings = prompt_warnings(model, texts.labels)
    errors = [{"path": f.path, "error": f.reason} for f in result.failures]
    if args.json:
        json.dump({"model": model.identifier, **matrix.as_dict(), "notes": result.notes, "warnings": warnings,
                   "errors": errors},
                  sys.stdout, indent=2)
        print()
    else:
        print(f"note: cosines on stdout; {model.scoring.explain()}", file=sys.stderr)
        width = max(len(n) for n in matrix.names)
        print(" " * width + "  " + "  ".join(f"{t[:12]:>12}" for t in matrix.texts))
        for name, row in zip(matrix.names, matrix.cosines):
            print(f"{name:<{width}}  " + "  ".join(f"{v:>+12.4f}" for v in row))
        for error in errors:
            print(f"{error['path']}: error: {error['error']}", file=sys.stderr)
    return 1 if errors else 0
