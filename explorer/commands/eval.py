"""python -m explorer eval DIR: zero-shot accuracy on a labelled folder (ImageFolder layout)."""
from __future__ import annotations

import argparse
import json
import sys

from ..descriptions import USES, load_descriptions, prompt_set
from ..evaluate import embed_labelled_folder, evaluate_prompt_set, load_classnames
from ..index import existing_index_for, open_index
from ..prompts import load_template_set
from ..settings import load_settings
from .common import ProgressBar, add_model_arguments, model_from


def register(commands) -> None:
    parser = commands.add_parser("eval", help="zero-shot accuracy on a labelled folder (one sub-folder per class)")
    parser.add_argument("folder", metavar="DIR", help="one sub-folder of images per class")
    parser.add_argument("--templates", default="simple", help="single | openai | simple | FILE (one per line)")
    parser.add_argument("--descriptions", metavar="FILE", help="JSON {class: [sentence, ...]} (CuPL style)")
    parser.add_argument("--prompts", choices=USES, default=None,
                        help="what builds each class's prompts (default: both with --descriptions, else templates)")
    parser.add_argument("--weighting", choices=("mean", "zpe"), default="mean",
                        help="equal average of the prompts, or ZPE weights from the images")
    parser.add_argument("--classnames", metavar="FILE", help="JSON {folder: class name}")
    parser.add_argument("--index", metavar="INDEX", help="an index of this folder: re-use its embeddings")
    parser.add_argument("--zpe-reference", metavar="INDEX",
                        help="an index of other, generic images whose embeddings stand in for ZPE's sample of "
                             "pre-training images (default: the evaluated images themselves)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_arguments(parser, extra=("max_upload_mb", "max_pixels"))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    use = args.prompts or ("both" if args.descriptions else "templates")
    templates = load_template_set(args.templates) if use != "descriptions" else None
    descriptions = load_descriptions(args.descriptions) if args.descriptions else None
    classnames = load_classnames(args.classnames) if args.classnames else None
    model = model_from(settings)
    # An explicit --index, else the app's own index of this folder and model if one exists.
    index = open_index(args.index) if args.index else existing_index_for(settings.index_dir, args.folder, model)
    bar = ProgressBar(quiet=args.json)
    labelled = embed_labelled_folder(model, args.folder, classnames, max_bytes=settings.max_upload_bytes,
                                     max_pixels=settings.max_pixels, progress=bar, index=index)
    bar.close()
    if len(labelled.embeddings) == 0:
        raise ValueError(f"{labelled.root}: no readable images in the class folders")
    prompts = prompt_set(model, labelled.class_names, templates, descriptions, use)
    reference = {}
    if args.zpe_reference:
        sample = open_index(args.zpe_reference)
        sample.check_model(model)
        reference = dict(reference_emb=sample.all_embeddings()[1],
                         reference_name=f"{sample.count} images indexed from {sample.root}")
    result = evaluate_prompt_set(labelled, prompts, model.logit_scale, args.weighting, **reference)
    notes = labelled.notes + prompts.notes
    failures = [{"path": f.path, "error": f.reason} for f in labelled.failures]
    if args.json:
        doc = {"model": model.identifier, "folder": str(labelled.root), "images": len(labelled.paths),
               "classes": labelled.class_names, "class_folders": labelled.class_folders,
               "prompts": use, "templates": args.templates if templates else None,
               "descriptions": args.descriptions, **result.as_dict(),
               "failures": failures, "notes": notes}
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        _print_report(model, labelled, result, use, notes)
        for failure in failures:
            print(f"{failure['path']}: error: {failure['error']}", file=sys.stderr)
    return 1 if failures else 0


def _print_report(model, labelled, result, use: str, notes: list[str]) -> None:
    print(f"{model.identifier} on {labelled.root}: {len(labelled.paths)} images, {len(labelled.class_names)} classes")
    print(f"prompts: {use}, weighting: {result.weighting}")
    print(f"top-1 {result.top1:.2%}   top-{result.top_k} {result.top5:.2%}")
    print("\nper class:")
    for name in result.class_names:
        acc = result.per_class[name]
        print(f"  {'   n/a' if acc is None else f'{acc:7.2%}'}  ({result.class_counts[name]:>4} images)  {name}")
    print("\nper template (accuracy alone, weight used, ZPE weight):")
    for row in sorted(result.per_template, key=lambda t: -t.accuracy):
        print(f"  {row.accuracy:7.2%}  w {row.weight:.3f}  zpe {row.zpe_weight:.3f}  {row.template}")
    if result.zpe is not None and result.weighting == "zpe":
        print(f"\nZPE bias correction: {result.zpe.bias_source}")
    confused = [(int(result.confusion[i, j]), i, j) for i in range(len(result.class_names))
                for j in range(len(result.class_names)) if i != j and result.confusion[i, j]]
    if confused:
        print("\nmost confused (true -> predicted):")
        for count, i, j in sorted(confused, reverse=True)[:5]:
            print(f"  {count:>4}  {result.class_names[i]} -> {result.class_names[j]}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
