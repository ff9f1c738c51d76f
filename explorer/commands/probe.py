"""clip-explorer probe KIND PATH...: what the model can and cannot read in images, as the Probes tab.

Kinds: counting (Paiss et al.: "a photo of three dogs" vs four), grid (every attribute x object prompt),
binding (a caption against its attribute-swapped twin, ARO), synonyms (REAL-Prompt: other names for each
class), loki (Loki: predicting over a label space with distances). PATH: one folder (labelled when it has
class sub-folders) or image files. --json prints the core's report (its as_dict) plus "model".
"""
from __future__ import annotations

import argparse
import json
import sys

from explorer.science.prompts import PromptError

from .common import IMAGE_LIMIT_FLAGS, ProgressBar, add_model_arguments, model_from

KINDS = ("counting", "grid", "binding", "synonyms", "loki")


def register(commands) -> None:
    parser = commands.add_parser("probe", help="probe what the model reads: counting, attribute x object "
                                 "grid, binding, synonym swap, Loki label geometry")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a folder (labelled: one sub-folder per class) or image files")
    parser.add_argument("--object",
                        help="counting: what to count, e.g. 'dog' or 'mouse|mice' (singular|plural)")
    parser.add_argument("--count-template", default=None, help="counting: default 'a photo of {n} {object}.'")
    parser.add_argument("--attributes", help="grid: attributes, comma-separated (red, blue)")
    parser.add_argument("--objects", help="grid: objects, comma-separated (circle, square)")
    parser.add_argument("--binding", help="binding: what the images show, 'red circle and blue square' "
                        "(default: each class folder's name, e.g. red_circle_and_blue_square)")
    parser.add_argument("--classes", help="synonyms, loki: class names (default: the class folders)")
    parser.add_argument("--extra", help="loki: candidate labels outside --classes, comma-separated")
    parser.add_argument("--tree", metavar="TEXT|FILE", help="loki: a tree, 'parent: child, child' a line")
    parser.add_argument("--synonyms", metavar="TEXT|FILE",
                        help="synonyms: 'class: name, other name' a line (typed candidates)")
    parser.add_argument("--no-wordnet", action="store_true", help="synonyms: only the typed candidates")
    parser.add_argument("--templates", default="single",
                        help="synonyms, loki: single | openai | simple | FILE")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS)
    parser.set_defaults(handler=run)


def _text_or_file(value: str | None) -> str | None:
    """A flag's text, or the contents of the file it names."""
    from pathlib import Path

    if value and "\n" not in value and len(value) < 4096 and Path(value).expanduser().is_file():
        return Path(value).expanduser().read_text(encoding="utf-8")
    return value


def _images(model, args, settings):
    from pathlib import Path

    from explorer.inputs.sources import embed_files, embed_folder, require_images, unique_names

    bar = ProgressBar(quiet=args.json)
    if len(args.paths) == 1 and Path(args.paths[0]).is_dir():
        images = embed_folder(model, args.paths[0], limits=settings.limits, progress=bar)
    else:
        images = embed_files(model, args.paths, names=unique_names(list(args.paths)), limits=settings.limits,
                             progress=bar, source=f"{len(args.paths)} file(s)")
    bar.close()
    require_images(images)
    return images


def _labels(text: str | None, limits) -> list[str]:
    from explorer.science.prompts import parse_labels

    return parse_labels(text, limits).labels if text else []


def _check(args) -> None:
    """What the kind needs, before the model loads: PromptError naming the missing flag."""
    from explorer.science.binding import parse_binding

    if args.kind == "counting" and not args.object:
        raise PromptError("probe counting needs --object, e.g. --object dog")
    if args.kind == "grid" and not (args.attributes and args.objects):
        raise PromptError("probe grid needs --attributes and --objects, e.g. --attributes 'red, blue' "
                          "--objects 'circle, square'")
    if args.kind == "binding" and args.binding:
        parse_binding(args.binding)


def _report(kind: str, model, images, args, limits):
    """The core report of `kind` on the embedded images."""
    from explorer.science import binding, counting, synonyms
    from explorer.science.prompts import load_template_set

    if kind == "counting":
        return counting.counting_probe(model, images, args.object, limits=limits,
                                       template=args.count_template or counting.TEMPLATE)
    if kind == "grid":
        return binding.attribute_grid(model, images, _labels(args.attributes, limits),
                                      _labels(args.objects, limits), limits=limits)
    if kind == "binding":
        given = binding.parse_binding(args.binding) if args.binding else None
        return binding.binding_test(model, images, given, limits=limits)
    templates = load_template_set(args.templates, limits)
    if kind == "synonyms":
        typed = synonyms.parse_typed_synonyms(_text_or_file(args.synonyms), limits) if args.synonyms else {}
        return synonyms.synonym_swap(model, images, _labels(args.classes, limits) or None, typed, templates,
                                     wordnet=not args.no_wordnet, limits=limits)
    from explorer.science.loki import loki_probe  # helper B's module (issue 27)

    return loki_probe(model, images, _labels(args.classes, limits), _labels(args.extra, limits), templates,
                      tree=_text_or_file(args.tree), limits=limits)


def run(args: argparse.Namespace) -> int:
    from explorer.inputs.gate import TextLimits
    from explorer.inputs.settings import load_settings

    settings = load_settings(args)
    limits = TextLimits.of(settings)
    _check(args)
    model = model_from(settings)
    images = _images(model, args, settings)
    report = _report(args.kind, model, images, args, limits)
    doc = {"model": model.identifier, **report.as_dict()}
    failures = [{"path": f.path, "error": f.reason} for f in images.failures]
    if args.json:
        json.dump({**doc, "failures": failures, "image_notes": images.notes}, sys.stdout, indent=2)
        print()
    else:
        _print_summary(args.kind, doc)
        for note in images.notes:
            print(f"note: {note}", file=sys.stderr)
        for failure in failures:
            print(f"{failure['path']}: error: {failure['error']}", file=sys.stderr)
    return 1 if failures else 0


def _print_summary(kind: str, doc: dict) -> None:
    print(f"{doc['model']}: {doc['method']} ({doc['source']})")
    if kind == "counting":
        for form in ("words", "digits"):
            got = doc["accuracy"][form] if doc["accuracy"] else None
            shown = "no true counts" if got is None else f"accuracy {got:.1%} (chance {doc['chance']:.0%})"
            print(f"  {form}: {shown}; predicted {doc['predicted'][form]}")
    elif kind == "grid":
        for name, cells in zip(doc["names"], doc["probabilities"]):
            a, o = max(((a, o) for a in range(len(cells)) for o in range(len(cells[0]))),
                       key=lambda ao: cells[ao[0]][ao[1]])
            print(f"  {doc['params']['attributes'][a]} {doc['params']['objects'][o]}  "
                  f"{cells[a][o]:.1%}  {name}")
    elif kind == "binding":
        print(f"  true caption wins {doc['won']} of {len(doc['wins'])} ({doc['win_rate']:.1%}), ties "
              f"{doc['ties']}, sign test p = {doc['p_value']:.3g}")
    elif kind == "synonyms":
        for name, rows in doc["scores"].items():
            print(f"  {name}: best {doc['best'][name]!r}")
            for row in rows:
                value = row["accuracy"] if doc["labelled"] else row["zpe_score"]
                print(f"    {value:8.3f}  zipf {row['zipf']}  {row['candidate']} ({row['source']})")
    elif kind == "loki":
        _print_loki(doc)
    for note in doc.get("notes", []):
        print(f"note: {note}", file=sys.stderr)


def _print_loki(doc: dict) -> None:
    print(f"  metric {doc['metric']}; {doc['changed']} image(s) changed by Loki, {doc['outside']} to a "
          "label outside the scored classes")
    if doc["labelled"]:
        print(f"  accuracy: arg-max {doc['accuracy_argmax']:.1%}, Loki {doc['accuracy_loki']:.1%}")
    for row in doc["images"]:
        print(f"  {row['argmax']:<20} -> {row['loki']:<20} {row['image']}")
