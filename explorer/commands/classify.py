"""clip-explorer classify IMAGE... --labels ...: zero-shot classification from the terminal."""
from __future__ import annotations

import argparse
import json
import sys

from explorer.inputs.settings import add_settings_arguments, load_settings
from explorer.inputs.sources import unique_names
from explorer.science import classifier_file
from explorer.science.prompts import PromptError, build_prompts, load_template_set, parse_labels
from explorer.science.zeroshot import classify_files

from .common import IMAGE_LIMIT_FLAGS, ProgressBar, add_model_arguments, model_from, prompt_warnings


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


COMBINES = ("zero", "mean")  # test_time.SwitchSettings.combine


def add_switch_arguments(parser: argparse.ArgumentParser) -> None:
    """--views N --combine zero|mean --tda --seed S: the test-time switches (explorer/science/test_time.py),
    off by default; with --max-view-encodes, the most image views one run may encode."""
    group = parser.add_argument_group("test-time switches (off by default)")
    group.add_argument("--views", type=int, default=0, metavar="N",
                       help="augmented views per image, the image itself counted (ZERO, Farina et al. 2024: "
                       "random crops and flips); 0 or 1 = off")
    group.add_argument("--combine", choices=COMBINES, default="zero",
                       help="with --views: ZERO's vote of the confident views (zero), or their averaged "
                       "features (mean)")
    group.add_argument("--tda", action="store_true",
                       help="TDA (Karmanov et al. 2024): caches of confident images adjust the labels of the "
                       "images after them, in the order given")
    group.add_argument("--seed", type=int, default=0, help="the augmented views' random draw")
    add_settings_arguments(group, only=("max_view_encodes",))


def switches_from(args: argparse.Namespace):
    """The test_time.SwitchSettings the flags ask for (ValueError for a negative --views)."""
    from explorer.science.test_time import SwitchSettings

    if args.views < 0:
        raise ValueError("--views is a number of views: 0 (off) or more")
    return SwitchSettings(views=args.views, combine=args.combine, tda=args.tda, seed=args.seed)


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
            _print_switches(report)
        for error in doc["errors"]:
            print(f"{error['path']}: error: {error['error']}", file=sys.stderr)
    return 0 if not doc["errors"] else 1


def _print_switches(report) -> None:
    """What the test-time switches did, after the (switched) results: each switch, its cost, changes."""
    outcome = report.switches
    print(f"\ntest-time switches: {outcome.settings.describe()}")
    for about in outcome.settings.as_dicts():
        print(f"  {about['method']} {about.get('params', {})}: {about.get('source', '')}")
    print(f"  time: x{outcome.cost_ratio:.1f} plain classification ({outcome.seconds_switched:.2f} s vs "
          f"{outcome.seconds_plain:.2f} s)")
    before, after = outcome.before.top1(), outcome.after.top1()
    print(f"  {len(outcome.changed)} of {len(after)} top label(s) changed")
    for i in outcome.changed:
        print(f"    {report.names[i]}: {before[i]} -> {after[i]}")
    for note in getattr(outcome, "notes", []):
        print(f"note: {note}", file=sys.stderr)


def _rule_note(model, taught) -> str:
    if taught is None:
        return model.scoring.explain()
    about = taught[1]
    return (
        f"probabilities from the taught {about['method']} classifier in {about['file']} ({about['classes']} "
        "classes): a softmax of its logits; cos is each image's cosine to the class's zero-shot text "
        "embedding"
    )
