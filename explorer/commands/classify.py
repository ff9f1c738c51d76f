"""clip-explorer classify IMAGE... --labels ...: zero-shot classification from the terminal."""
from __future__ import annotations

import argparse
import json
import sys

from explorer.inputs.settings import load_settings
from explorer.inputs.sources import unique_names
from explorer.science import classifier_file
from explorer.science.prompts import PromptError, build_prompts, load_template_set, parse_labels
from explorer.science.zeroshot import classify_files

from .common import (
    IMAGE_LIMIT_FLAGS,
    ProgressBar,
    add_model_arguments,
    add_switch_arguments,
    model_from,
    print_switches,
    prompt_warnings,
    switches_from,
)


def register(commands) -> None:
    parser = commands.add_parser("classify", help="zero-shot classify images against labels")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--labels", help="comma-separated, or one per line")
    parser.add_argument(
        "--classifier", metavar="FILE", help="classify by a taught classifier (`fewshot --save`, or "
        "the Teach tab's download unzipped); its classes replace --labels")
    parser.add_argument("--templates", default="single",
                        help="single | openai | simple | FILE (.txt or .json)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS)
    add_switch_arguments(parser)
    parser.set_defaults(handler=run)


def _labels(args) -> list[str]:
    if args.classifier:
        if args.labels:
            raise PromptError(
                "--labels and --classifier: a taught classifier brings its own classes; drop --labels")
        return []
    if not args.labels:
        raise PromptError("give the labels (--labels 'cat,dog') or a taught classifier (--classifier FILE)")
    parsed = parse_labels(args.labels)
    if len(parsed.labels) < 2:
        raise PromptError("give at least two distinct labels, e.g. --labels 'cat,dog'")
    for note in parsed.notes:
        print(f"note: {note}", file=sys.stderr)
    return parsed.labels


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    labels = _labels(args)
    switches = switches_from(args)
    templates = load_template_set(args.templates)
    model = model_from(settings)
    taught = None
    if args.classifier:  # refused, naming both models, when another model made it
        classifier, meta = classifier_file.load(args.classifier, model.identity.as_dict(), model.identifier)
        taught, labels = (classifier, classifier_file.summary(meta, args.classifier)), classifier.class_names
    bar = ProgressBar(quiet=args.json)
    report = classify_files(model, args.images, labels, templates, limits=settings.limits, progress=bar,
                            names=unique_names(list(args.images)), taught=taught, switches=switches,
                            max_encodes=settings.max_view_encodes)
    bar.close()
    doc = report.as_dict(args.top_k)
    doc["warnings"] = [] if taught else prompt_warnings(model, build_prompts(labels, templates))
    if args.json:
        json.dump({"model": model.identifier, "labels": labels, **doc}, sys.stdout, indent=2)
        print()
    else:
        print(f"note: {_rule_note(model, taught)}", file=sys.stderr)
        for result in doc["results"]:
            print(result["name"])
            for entry in result["labels"]:
                print(f"  {entry['probability']:7.2%}  cos {entry['cosine']:+.3f}  {entry['label']}")
        if report.switches is not None:
            print_switches(report.switches, report.names)
        for error in doc["errors"]:
            print(f"{error['path']}: error: {error['error']}", file=sys.stderr)
    return 0 if not doc["errors"] else 1


def _rule_note(model, taught) -> str:
    if taught is None:
        return model.scoring.explain()
    about = taught[1]
    return (
        f"probabilities from the taught {about['method']} classifier in {about['file']} ({about['classes']} "
        "classes): a softmax of its logits; cos is each image's cosine to the class's zero-shot text "
        "embedding"
    )
