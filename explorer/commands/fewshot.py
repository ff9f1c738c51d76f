"""clip-explorer fewshot TRAIN_DIR [--test TEST_DIR]: how much a few labelled images per class beat
zero-shot, with training-free adaptation (prototypes, Tip-Adapter, GDA; see explorer/fewshot.py).

Both folders hold one sub-folder per class (the layout `eval` reads). Without --test, a seeded 30%
of each training class is held out for testing, and the output says so.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from explorer.inputs.settings import load_settings
from explorer.inputs.sources import embed_folder
from explorer.science import classifier_file, fewshot
from explorer.science.descriptions import USES, load_descriptions, prompt_set
from explorer.science.evaluate import WEIGHTINGS, slot_weights
from explorer.science.fewshot_experiment import run_fewshot, sample_shots, split_held_out
from explorer.science.prompts import load_template_set
from explorer.science.zeroshot import ensemble
from explorer.science.zpe import zpe_weights

from .common import IMAGE_LIMIT_FLAGS, ProgressBar, add_model_arguments, model_from


def register(commands) -> None:
    parser = commands.add_parser("fewshot", help="adapt zero-shot with a few labelled images per class "
                                                 "(prototypes, Tip-Adapter, GDA) and score it")
    parser.add_argument("train", metavar="TRAIN_DIR", help="one sub-folder of labelled images per class")
    parser.add_argument("--test", metavar="TEST_DIR", help="the same classes, for scoring (default: hold out "
                                                           "30%% of each training class)")
    parser.add_argument("--method", choices=("all",) + fewshot.METHODS, default="all")
    parser.add_argument("--shots", type=int, metavar="K", help="K training images per class (default: all)")
    parser.add_argument("--seeds", type=int, default=3, metavar="N",
                        help="draws of the K shots (with --shots)")
    parser.add_argument("--templates", default="simple",
                        help="single | openai | simple | FILE (.txt or .json)")
    parser.add_argument("--descriptions", metavar="FILE", help="JSON {class: [sentence, ...]} (CuPL style)")
    parser.add_argument("--prompts", choices=USES, default=None, help="what builds each class's prompts")
    parser.add_argument("--weighting", choices=WEIGHTINGS[:2], default="mean",
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


def _test_split(train, test, notes: list[str]):
    """((f, y) train, (f, y) test) with the test classes mapped onto the training classes by name."""
    if test is None:
        tr, te = split_held_out(train.labels)
        notes.append(
            f"no --test folder: {len(te)} of {len(train)} training images (30% of each class, seed 0) "
            "were held out for testing and never used for fitting")
        return (train.embeddings[tr], train.labels[tr]), (train.embeddings[te], train.labels[te])
    position = {name.casefold(): i for i, name in enumerate(train.class_names)}
    unknown = [n for n in test.class_names if n.casefold() not in position]
    if unknown:
        raise ValueError(f"test classes not among the training classes: {', '.join(unknown)}")
    mapping = np.array([position[n.casefold()] for n in test.class_names], dtype=np.int64)
    return (train.embeddings, train.labels), (test.embeddings, mapping[test.labels])


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if args.shots is not None and args.shots < 1:
        raise ValueError("--shots must be at least 1")
    use = args.prompts or ("both" if args.descriptions else "templates")
    templates = load_template_set(args.templates) if use != "descriptions" else None
    descriptions = load_descriptions(args.descriptions) if args.descriptions else None
    model = model_from(settings)
    train = _embed(model, args.train, settings, args.json)
    test = _embed(model, args.test, settings, args.json) if args.test else None
    notes = train.notes + (test.notes if test else [])
    (f_train, y_train), (f_test, y_test) = _test_split(train, test, notes)
    prompts = prompt_set(model, train.class_names, templates, descriptions, use)
    zpe = zpe_weights(f_train, prompts.embeddings, model.logit_scale)
    text = ensemble(prompts.embeddings,
                    slot_weights(args.weighting, len(prompts.slots), prompts.mean_weights, None, zpe))
    methods = fewshot.METHODS if args.method == "all" else ("zero-shot", args.method) if args.method != "zero-shot" \
        else ("zero-shot",)
    report = run_fewshot((f_train, y_train), (f_test, y_test), train.class_names, text, model.logit_scale,
                         methods=methods, shots=args.shots, seeds=args.seeds)
    report.notes[:0] = notes + prompts.notes
    saved = _save(args, model,
                  (f_train, y_train), train.class_names, text, use, report) if args.save else None
    failures = [{"path": f.path, "error": f.reason} for f in train.failures + (test.failures if test else [])]
    if args.json:
        doc = {
            "model": model.identifier, "train": str(train.root), "test": str(test.root) if test else None,
            "prompts": use, "weighting": args.weighting, **report.as_dict(), "saved": saved,
            "failures": failures
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        _print_report(model, report, saved)
        for line in [f"note: {n}"
                     for n in report.notes] + [f"{f['path']}: error: {f['error']}" for f in failures]:
            print(line, file=sys.stderr)
    return 1 if failures else 0


def _save(args, model, train, class_names, text, use, report) -> list[str]:
    method = args.method if args.method not in ("all",) else "gda"
    idx = sample_shots(train[1], args.shots, 0)
    params = report.methods[method].params[0]
    clf = fewshot.fit(method, train[0][idx], train[1][idx], class_names, text, model.logit_scale, params)
    prompts = {
        "use": use, "templates": args.templates, "descriptions": args.descriptions,
        "weighting": args.weighting
    }
    return [str(p) for p in classifier_file.save(clf, args.save, model.identity.as_dict(), prompts)]


def _print_report(model, report, saved) -> None:
    shots = "all training images" if report.shots is None else f"{report.shots} per class, {report.seeds} seed(s)"
    print(f"{model.identifier}: {len(report.class_names)} classes, shots: {shots}; "
          f"{report.train_images} training and {report.test_images} test images")
    for name, score in report.methods.items():
        spread = f" ± {score.top1_spread:.2%}" if report.seeds > 1 else ""
        print(f"  {name:<12} top-1 {score.top1:7.2%}{spread}  top-{score.top_k} {score.top5:7.2%}  "
              f"chosen {score.params[0] or '-'} ({score.how}); fit {score.fit_seconds * 1000:.0f} ms, "
              f"scoring {score.score_seconds * 1000:.0f} ms")
    if saved:
        print(f"saved the classifier to {saved[0]} and {saved[1]}")
