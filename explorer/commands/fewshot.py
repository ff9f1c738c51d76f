"""clip-explorer fewshot TRAIN_DIR [--test TEST_DIR]: how much a few labelled images per class beat
zero-shot, with training-free adaptation (prototypes, Tip-Adapter, GDA; see explorer/science/fewshot.py).

Both folders hold one sub-folder per class (the layout `eval` reads). Without --test, a seeded part
of each training class (fewshot_experiment.HELD_OUT) is held out for testing, and the output says so.
The run is explorer/science/fewshot_experiment.py's, the Teach tab's too: each method is fitted once
per draw of shots, --save writes the classifier of the draw with seed 0, and --json's "provenance" is
the record the saved classifier's .json carries. Hyper-parameters are chosen by leave-one-out over the
shots; each method's entry says how ("how_chosen"), holds its whole search ("search": the grid, the
shots each value predicted right, "informative": false when every value tied and the default was
used) and names its departures from the paper ("departures").
"""
from __future__ import annotations

import argparse
import json
import sys

from explorer.inputs.gate import TextLimits
from explorer.inputs.settings import load_settings
from explorer.inputs.sources import embed_folder
from explorer.science import classifier_file, fewshot
from explorer.science.descriptions import USES, load_descriptions
from explorer.science.fewshot_experiment import HELD_OUT, WEIGHTINGS, PromptChoice
from explorer.science.fewshot_experiment import run as run_experiment
from explorer.science.prompts import load_template_set

from .common import IMAGE_LIMIT_FLAGS, ProgressBar, add_model_arguments, model_from


def register(commands) -> None:
    parser = commands.add_parser("fewshot", help="adapt zero-shot with a few labelled images per class "
                                                 "(prototypes, Tip-Adapter, GDA) and score it")
    parser.add_argument("train", metavar="TRAIN_DIR", help="one sub-folder of labelled images per class")
    parser.add_argument("--test", metavar="TEST_DIR", help="the same classes, for scoring (default: hold out "
                                                           f"{HELD_OUT * 100:.0f}%% of each training class)")
    parser.add_argument("--method", choices=("all",) + fewshot.METHODS, default="all")
    parser.add_argument("--shots", type=int, metavar="K", help="K training images per class (default: all)")
    parser.add_argument("--seeds", type=int, default=3, metavar="N",
                        help="draws of the K shots (with --shots)")
    parser.add_argument("--templates", default="simple",
                        help="single | openai | simple | FILE (.txt or .json)")
    parser.add_argument("--descriptions", metavar="FILE", help="JSON {class: [sentence, ...]} (CuPL style)")
    parser.add_argument("--prompts", choices=USES, default=None, help="what builds each class's prompts")
    parser.add_argument("--weighting", choices=WEIGHTINGS, default="mean",
                        help="equal prompts, or ZPE weights from the training images")
    parser.add_argument(
        "--save", metavar="CLASSIFIER", help="write the fitted classifier (one method: --method, "
        "or GDA with all) as CLASSIFIER.json + .safetensors")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS)
    parser.set_defaults(handler=run)


def _embed(model, folder, settings, quiet: bool):
    bar = ProgressBar(quiet=quiet)
    images = embed_folder(model, folder, labelled=True, limits=settings.limits, progress=bar)
    bar.close()
    return images


def _prompts(args) -> PromptChoice:
    """The prompt set the flags name, read before the model loads (a bad file fails fast)."""
    use = args.prompts or ("both" if args.descriptions else "templates")
    templates = load_template_set(args.templates) if use != "descriptions" else None
    descriptions = load_descriptions(args.descriptions) if args.descriptions else None
    return PromptChoice(templates, args.templates, descriptions, args.descriptions, use, args.weighting)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if args.shots is not None and args.shots < 1:
        raise ValueError("--shots must be at least 1")
    choice = _prompts(args)
    model = model_from(settings)
    train = _embed(model, args.train, settings, args.json)
    test = _embed(model, args.test, settings, args.json) if args.test else None
    methods = fewshot.METHODS if args.method == "all" else (args.method,)
    result = run_experiment(model, train, choice, methods, args.shots, test=test, seeds=args.seeds,
                            curve_shots=(), limits=TextLimits.of(settings))
    saved = _save(args, result) if args.save else None
    failures = [{"path": f.path, "error": f.reason} for f in train.failures + (test.failures if test else [])]
    if args.json:
        doc = {
            "model": model.identifier, "train": str(train.root), "test": str(test.root) if test else None,
            "prompts": choice.use, "weighting": choice.weighting, **result.report.as_dict(),
            "notes": result.notes, "provenance": result.provenance.as_dict(), "saved": saved,
            "failures": failures
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        _print_report(model, result.report, saved)
        for line in [f"note: {n}"
                     for n in result.notes] + [f"{f['path']}: error: {f['error']}" for f in failures]:
            print(line, file=sys.stderr)
    return 1 if failures else 0


def _save(args, result) -> list[str]:
    """The classifier the run kept for --method (GDA with all): fitted on the shots of seed 0, not again."""
    method = args.method if args.method != "all" else "gda"
    provenance = result.provenance
    return [str(p) for p in classifier_file.save(result.classifiers[method], args.save, provenance.model,
                                                 provenance.prompts, provenance.as_dict())]


def _print_report(model, report, saved) -> None:
    shots = ("all training images" if report.shots is None
             else f"{report.shots} per class, {report.seeds} seed(s)")
    print(f"{model.identifier}: {len(report.class_names)} classes, shots: {shots}; "
          f"{report.train_images} training and {report.test_images} test images")
    for name, score in report.methods.items():
        spread = f" ± {score.top1_spread:.2%}" if report.seeds > 1 else ""
        tied = f"; {score.tied_seeds()} of {report.seeds} seeds chose nothing" if score.tied_seeds() else ""
        print(f"  {name:<12} top-1 {score.top1:7.2%}{spread}  top-{score.top_k} {score.top5:7.2%}  "
              f"chosen {score.params[0] or '-'} ({score.how}{tied}); fit {score.fit_seconds * 1000:.0f} ms, "
              f"scoring {score.score_seconds * 1000:.0f} ms")
    for name, score in report.methods.items():
        if score.departures:
            print(f"  {name} differs from its paper: " + "; ".join(score.departures))
    if saved:
        print(f"saved the classifier to {saved[0]} and {saved[1]}")
