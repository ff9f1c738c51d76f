"""clip-explorer eval DIR: how a prompt set does on a folder of images, as in the Prompt lab tab.

A folder with one sub-folder per class (the ImageFolder layout) gets accuracy per class and per
prompt, a confusion matrix and, with --compare, the built-in template sets on the same images. A
folder of plain images needs --labels and gets ZPE weights and each image's best class.
"""
from __future__ import annotations

import argparse
import json
import sys

from explorer.embed.tokens import shown
from explorer.inputs.settings import load_settings
from explorer.inputs.sources import embed_folder, load_classnames
from explorer.science.calibration import calibrate
from explorer.science.descriptions import USES, load_descriptions
from explorer.science.evaluate import WEIGHTINGS, cosine_meaning
from explorer.science.prompt_lab import ZPE_SELECT, run_lab
from explorer.science.prompts import load_template_set, parse_labels
from explorer.science.zpe import MAD_THRESHOLD

from .common import (
    IMAGE_LIMIT_FLAGS,
    ProgressBar,
    add_model_arguments,
    add_switch_arguments,
    model_from,
    print_switches,
    switches_from,
)


def register(commands) -> None:
    parser = commands.add_parser(
        "eval", help="score prompts on a folder: labelled (one sub-folder per class) "
        "or plain images with --labels")
    parser.add_argument("folder", metavar="DIR", help="one sub-folder of images per class, or plain images")
    parser.add_argument("--labels",
                        help="class names for a folder of plain images (comma-separated or one per line)")
    parser.add_argument("--templates", default="simple",
                        help="single | openai | simple | FILE (.txt or .json)")
    parser.add_argument("--descriptions", metavar="FILE", help="JSON {class: [sentence, ...]} (CuPL style)")
    parser.add_argument(
        "--prompts", "--use", "--source", dest="prompts", choices=USES, default=None,
        help="what builds each class's prompts (default: both with --descriptions, else templates); "
        "both: template slots + one descriptions slot weighing 1/2; pooled: CuPL+e, one "
        "list of every prompt and sentence per class, each weighing the same; waffle: WaffleCLIP's "
        "random descriptors (Roth et al. 2023), no templates nor descriptions needed")
    parser.add_argument("--zpe-select", choices=ZPE_SELECT, default="all",
                        help="ZPE weights over all prompts, or only those MAD selection keeps (the paper's "
                             "prompt selection: score more than --zpe-mad-threshold MADs above the median)")
    parser.add_argument(
        "--zpe-mad-threshold", type=float, default=MAD_THRESHOLD, metavar="X",
        help=f"with --zpe-select mad (default {MAD_THRESHOLD}; the paper's fine-grained tables use 2.0)")
    parser.add_argument("--weighting", choices=WEIGHTINGS, default="mean",
                        help="equal average of the prompts (open_clip's), ZPE weights from the images (the "
                        "prompts' logits averaged with them, as ZPE's authors do), or one --template")
    parser.add_argument("--template", type=int, default=None, metavar="N",
                        help="with --weighting single: the prompt used (from 1; descriptions are the last)")
    parser.add_argument("--compare", action="store_true",
                        help="also score the built-in template sets (equal and ZPE) on the same images")
    parser.add_argument("--classnames", metavar="FILE", help="JSON {folder: class name}")
    parser.add_argument("--index", metavar="INDEX", help="an index of this folder: re-use its embeddings")
    parser.add_argument(
        "--zpe-reference", metavar="INDEX",
        help="an index of other, generic images whose embeddings stand in for ZPE's sample of "
        "pre-training images (default: the evaluated images themselves)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS + ("index_dir",))
    add_switch_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from explorer.index.image_index import open_index  # FAISS: only when the command runs
    from explorer.index.registry import IndexRegistry

    settings = load_settings(args)
    switches = switches_from(args)
    use = args.prompts or ("both" if args.descriptions else "templates")
    templates = load_template_set(args.templates) if use not in ("descriptions", "waffle") else None
    descriptions = load_descriptions(args.descriptions) if args.descriptions else None
    classnames = load_classnames(args.classnames) if args.classnames else None
    labels = parse_labels(args.labels).labels if args.labels else None
    model = model_from(settings)
    # An explicit --index, else the app's own index of this folder and model if one exists.
    index = open_index(args.index) if args.index else IndexRegistry(settings.index_dir).find_for(
        args.folder, model)
    reference = None
    if args.zpe_mad_threshold < 0:
        raise ValueError("--zpe-mad-threshold is a number of MADs: 0 or more")
    if args.zpe_reference:
        sample = open_index(args.zpe_reference)
        sample.check_model(model)
        reference = (sample.all_embeddings()[1], f"{sample.count} images indexed from {sample.root}")
    bar = ProgressBar(quiet=args.json)
    images = embed_folder(model, args.folder, labelled=True if classnames else None, classnames=classnames,
                          index=index, limits=settings.limits, progress=bar)
    bar.close()
    template = None if args.template is None else args.template - 1
    report = run_lab(model, images, templates, descriptions, use, args.weighting, labels=labels,
                     template=template, compare_builtins=args.compare, reference=reference,
                     zpe_select=args.zpe_select, mad_threshold=args.zpe_mad_threshold, switches=switches,
                     max_encodes=settings.max_view_encodes, image_limits=settings.limits)
    notes = images.notes + report.notes
    for line in shown(report.warnings):
        print(f"warning: {line}", file=sys.stderr)
    failures = [{"path": f.path, "error": f.reason} for f in images.failures]
    if args.json:
        doc = {"model": model.identifier, "folder": str(images.root), "class_folders": images.class_folders,
               "prompts": use, "templates": args.templates if templates else None,
               "descriptions": args.descriptions, **report.as_dict(), "failures": failures, "notes": notes}
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        _print_report(model, report, use)
        for line in [f"note: {n}" for n in notes] + [f"{f['path']}: error: {f['error']}" for f in failures]:
            print(line, file=sys.stderr)
    return 1 if failures else 0


def _print_report(model, report, use: str) -> None:
    images, result = report.images, report.result
    print(f"{model.identifier} on {images.source}: {len(images)} images, {len(report.class_names)} classes")
    print(f"prompts: {use}, weighting: {report.weighting}")
    if report.switches is not None:
        print_switches(report.switches, report.images.names)
    if result is None:
        print("unlabelled images, class names from --labels: ZPE weights per prompt, best class per image")
        if report.weighting == "zpe":
            print(f"  (cos: {cosine_meaning(report.weighting)})")
        for slot, weight, score in zip(report.slots, report.zpe.weights, report.zpe.scores):
            print(f"  zpe {weight:.3f}  score {score:6.2f}  {slot}")
        for name, predicted, cos in zip(images.names, report.predicted, report.max_cosine):
            print(f"  {predicted:<24} cos {cos:+.3f}  {name}")
        return
    print(f"top-1 {result.top1:.2%}   top-{result.top_k} {result.top5:.2%}")
    cal = calibrate(result.cosines, result.true_idx, result.scoring)  # the "calibration" object of --json
    print(
        f"calibration ({cal.kind} probabilities): ECE {cal.model.ece:.2%} as shipped; fitted temperature "
        f"{cal.fitted_temperature:.2f} gives {cal.fitted.ece:.2%} (fitted on these same images: optimistic)")
    print("\nper class:")
    for name in result.class_names:
        acc = result.per_class[name]
        print(
            f"  {'   n/a' if acc is None else f'{acc:7.2%}'}  ({result.class_counts[name]:>4} images)  {name}"
        )
    print("\nper template (accuracy alone; contribution = ensemble with it minus without it, paired 95% "
          "interval, McNemar p; "
          "weight used; ZPE weight; longest prompt in tokens):")
    for s in sorted(range(len(result.per_template)), key=lambda i: -result.per_template[i].accuracy):
        row, e = result.per_template[s], report.evidence[s]
        verdict = "the only prompt" if e is None else {"better": "helps", "worse": "hurts"}.get(
            e.verdict, "no clear difference")
        print(
            f"  {row.accuracy:7.2%}  {e.describe() if e else ''} {verdict}  w {row.weight:.3f}  "
            f"zpe {row.zpe_weight:.3f}  "
            f"{report.slot_tokens[s]}/{report.context_length} tok  {row.template}")
    if report.weighting == "zpe":
        print(f"\nZPE bias correction: {report.zpe.bias_source}")
    print(f"ZPE prompts: {report.zpe.selection}")
    for row, e in zip(report.comparison, report.compare_evidence):
        print(f"  compare: {row.prompt_set:<18} {row.weighting:<5} top-1 {row.top1:.2%}  top-{result.top_k} "
              f"{row.top5:.2%}  vs this run {e.describe()} {e.verdict or 'no clear difference'}")
    confused = [(int(result.confusion[i, j]), i, j) for i in range(len(result.class_names))
                for j in range(len(result.class_names)) if i != j and result.confusion[i, j]]
    if confused:
        print("\nmost confused (true -> predicted):")
        for count, i, j in sorted(confused, reverse=True)[:5]:
            print(f"  {count:>4}  {result.class_names[i]} -> {result.class_names[j]}")
