"""clip-explorer classify IMAGE... --labels ...: zero-shot classification from the terminal."""
from __future__ import annotations

import argparse
import json
import sys

from ..prompts import PromptError, build_prompts, load_template_set, parse_labels
from ..settings import load_settings
from ..sources import unique_names
from ..zeroshot import classify_files
from .common import ProgressBar, IMAGE_LIMIT_FLAGS, add_model_arguments, model_from, prompt_warnings


def register(commands) -> None:
    parser = commands.add_parser("classify", help="zero-shot classify images against labels")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--labels", required=True, help="comma-separated, or one per line")
    parser.add_argument("--templates", default="single", help="single | openai | simple | FILE (.txt or .json)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    parsed = parse_labels(args.labels)
    if len(parsed.labels) < 2:
        raise PromptError("give at least two distinct labels, e.g. --labels 'cat,dog'")
    for note in parsed.notes:
        print(f"note: {note}", file=sys.stderr)
    templates = load_template_set(args.templates)
    model = model_from(settings)
    bar = ProgressBar(quiet=args.json)
    report = classify_files(model, args.images, parsed.labels, templates, limits=settings.limits, progress=bar,
                            names=unique_names(list(args.images)))
    bar.close()
    doc = report.as_dict(args.top_k)
    doc["warnings"] = prompt_warnings(model, build_prompts(parsed.labels, templates))
    if args.json:
        json.dump({"model": model.identifier, "labels": parsed.labels, **doc}, sys.stdout, indent=2)
        print()
    else:
        print(f"note: {model.scoring.explain()}", file=sys.stderr)
        for result in doc["results"]:
            print(result["name"])
            for entry in result["labels"]:
                print(f"  {entry['probability']:7.2%}  cos {entry['cosine']:+.3f}  {entry['label']}")
        for error in doc["errors"]:
            print(f"{error['path']}: error: {error['error']}", file=sys.stderr)
    return 0 if not doc["errors"] else 1
