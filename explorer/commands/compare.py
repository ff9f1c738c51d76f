"""clip-explorer compare MODEL MODEL [MODEL ...] --folder DIR: several models side by side on the same images,
as the Compare models tab (the same core, explorer/science/model_compare.py).

The models run one after another (each loaded, run, and freed before the next loads). Each model's
embeddings go into the app's index of the folder for that model (--index-dir, the app's own), so a second
comparison, or the app's Search of the same folder with the same model, encodes nothing again.
`--indexes A B --query TEXT` compares what two indexes of one folder (two models) find for the same texts.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from explorer.inputs.settings import add_settings_arguments, load_settings

from .common import IMAGE_LIMIT_FLAGS, model_opener

WEIGHTINGS = ("mean", "zpe")
SHOWN_DISAGREEMENTS = 20   # images listed in the text report; the rest are counted


def register(commands) -> None:
    parser = commands.add_parser(
        "compare", help="compare models side by side on a folder (accuracy, top-5, ECE, cost, paired "
        "evidence, disagreements), or two indexes' search results")
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="two or more: name@pretrained, hf-hub:org/repo or local-dir:/path")
    parser.add_argument("--folder", metavar="DIR", help="one sub-folder of images per class, or plain images "
                        "with --labels")
    parser.add_argument("--labels", help="class names for a folder of plain images (comma-separated or one "
                        "per line)")
    parser.add_argument("--templates", default="simple",
                        help="single | openai | simple | FILE (.txt or .json)")
    parser.add_argument("--weighting", choices=WEIGHTINGS, default="mean",
                        help="equal average of the prompts (open_clip's), or ZPE weights from the images")
    parser.add_argument("--indexes", nargs=2, metavar=("DIR_A", "DIR_B"),
                        help="instead of models: two indexes of one folder made by two models")
    parser.add_argument("--query", action="append", metavar="TEXT", help="with --indexes: a text query "
                        "(repeatable)")
    parser.add_argument("-k", type=int, default=10, help="with --indexes: results compared per query")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_settings_arguments(parser, only=("device", "precision", "index_dir", "max_compare_models",
                                         *IMAGE_LIMIT_FLAGS))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if args.indexes:
        return _run_indexes(args, settings)
    if args.query:
        raise ValueError("--query goes with --indexes DIR_A DIR_B; a comparison of models takes --folder")
    return _run_models(args, settings)


def _check_models(args, settings) -> tuple[list, int]:
    """The parsed model choices and the most a run may compare; ValueError before anything loads."""
    from explorer.embed import checkpoints
    from explorer.embed.model import check_identifier
    from explorer.embed.names import ModelLoadError
    from explorer.science.model_compare import ModelChoice, check_choices

    most = settings.max_compare_models
    if len(args.models) < 2:
        given = f"got {len(args.models)}" if args.models else "got none"
        raise ValueError(f"compare needs two or more models ({given}), e.g. compare ViT-B-32@openai "
                         "local-dir:/path/to/model --folder DIR")
    choices = [ModelChoice.parse(entry) for entry in args.models]
    check_choices(choices, most)   # at most max_compare_models, each once
    for choice in choices:   # a typo, a missing folder, weights not to be had: said before any model loads
        check_identifier(choice.name, choice.pretrained)
        try:
            checkpoints.plan(choice.name, choice.pretrained)
        except checkpoints.Unavailable as exc:
            raise ModelLoadError(str(exc), exc.advice) from None
    return choices, most


def _check_folder(args, limits) -> tuple[Path, list[str] | None]:
    """The folder and the class names for plain images; ValueError (said as the tab says it) for a
    folder that is missing, holds no image, or holds plain images without --labels."""
    from explorer.embed.images import ImageError
    from explorer.inputs.folders import class_folders, walk_folder
    from explorer.inputs.sources import class_folders_message, no_images_message
    from explorer.science.prompts import parse_labels

    if not args.folder:
        raise ValueError("give the images: --folder DIR (one sub-folder per class, or plain images with "
                         "--labels)")
    root = Path(args.folder).expanduser()
    try:
        scan = walk_folder(root)
    except ImageError as exc:
        raise ValueError(f"{exc.path}: {exc.reason}") from None
    if not scan.files:
        raise ValueError(no_images_message(str(root), scan.skipped_under(root)))
    labels = parse_labels(args.labels, limits).labels if args.labels else None
    if labels is not None and len(labels) < 2:
        raise ValueError("give at least two distinct class names, e.g. --labels 'cat, dog'")
    if labels is None and len(class_folders(root)) < 2:
        raise ValueError(class_folders_message(str(root), class_folders(root),
                                               "or give --labels 'cat, dog' to compare them on plain images"))
    return root, labels


def _run_models(args, settings) -> int:
    from explorer.index.embedding_store import stored_embeddings
    from explorer.index.registry import IndexRegistry
    from explorer.inputs.gate import TextLimits
    from explorer.science.model_compare import compare_models
    from explorer.science.prompts import load_template_set

    limits = TextLimits.of(settings)
    choices, most = _check_models(args, settings)
    root, labels = _check_folder(args, limits)
    templates = load_template_set(args.templates, limits)
    registry = IndexRegistry(settings.index_dir)

    def embed_for(model, progress, should_stop):
        return stored_embeddings(model, root, registry, limits=settings.limits, progress=progress,
                                 should_stop=should_stop)

    shown = _Progress(quiet=args.json)
    try:
        report = compare_models(choices, model_opener(settings), embed_for, labels=labels,
                                templates=templates, weighting=args.weighting, limits=limits,
                                max_models=most, progress=shown)
        shown.close()
        if args.json:
            json.dump(report.as_dict(), sys.stdout, indent=2)
            print()
        else:
            _print_report(report, root, args)
    finally:
        shown.close()
        registry.close_all()
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


class _Progress:
    """compare_models' progress(fraction, "model 2 of 3 (NAME): 40/100 images embedded"): a line on stderr
    as each model starts, then a bar of that model's steps (left out with --json)."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar, self.model, self.share = quiet, None, None, (0, 1)

    def __call__(self, fraction: float, message: str) -> None:
        model, _, step = message.partition(": ")
        if model != self.model:
            self.close()
            self.model = model
            counted = re.match(r"model (\d+) of (\d+)", model)
            self.share = (int(counted[1]) - 1, int(counted[2])) if counted else (0, 1)
            print(model, file=sys.stderr)
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=100, unit="%", file=sys.stderr, leave=False)
        done, count = self.share
        self.bar.set_description_str(step[:60], refresh=False)
        self.bar.update(max(0, min(100, round(100 * (fraction * count - done))) - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ---- the text report --------------------------------------------------------------------------------------
def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _megabytes(count: int | None) -> str:
    return "n/a" if count is None else f"{count / 2 ** 20:.1f} MB"


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f} M"


def _gflops(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _speed(run) -> str:
    if run.seconds_per_image is None:
        return "ms per image: not measured (the images were encoded before timings were kept)"
    when = f"measured now, {run.encoded} images encoded" if run.timed_now else "measured when stored"
    return f"{1000 * run.seconds_per_image:.2f} ms per image ({when})"


def _print_model(number: int, run, templates: str) -> None:
    loaded = "" if run.identifier == run.choice.label() else f"{run.identifier}, "
    print(f"[{number}] {run.choice.label()}  ({loaded}{run.scoring} probabilities)")
    if run.report.result is not None:
        print(f"    top-1 {_pct(run.top1())}   top-5 {_pct(run.top5())}   ECE {_pct(run.ece)}")
    if run.best_set:
        best = run.best_set
        name = f"your set ({templates})" if best["prompt_set"] == "your set" else best["prompt_set"]
        print(f"    best template set: {name}, {best['weighting']} (top-1 {_pct(best['top1'])})")
    cost = run.cost
    print(f"    params {_millions(cost.params)} (image {_millions(cost.image_params)}, text "
          f"{_millions(cost.text_params)}); GFLOPs per image {_gflops(cost.image_gflops)}, per text "
          f"{_gflops(cost.text_gflops)} ({cost.gflops_source})")
    print(f"    {_speed(run)}; store {_megabytes(run.store_bytes)}; weights {_megabytes(cost.weight_bytes)}")


def _pair_words(pair, labelled: bool) -> str:
    """One pair in words, as the Prompt lab says evidence: top-1 of [a] minus [b] in points with its paired
    95% interval and McNemar's exact p, and a verdict only when the difference is beyond chance."""
    a, b = pair.a + 1, pair.b + 1
    said = f"[{a}] and [{b}] give the same top-1 label on {pair.agreement:.1%} of the images"
    e = pair.evidence
    if not labelled or e is None:
        return said
    verdict = {"better": f"[{a}] is more accurate beyond chance",
               "worse": f"[{b}] is more accurate beyond chance"}.get(
        e.verdict, f"no clear difference on these {e.n} images (the interval includes 0 or p >= 0.05)")
    return (f"{said}\n    top-1 of [{a}] minus [{b}], points [95% interval] McNemar's p: {e.describe()} "
            f"({e.a_only} images right with [{a}] only, {e.b_only} with [{b}] only): {verdict}")


def _print_report(report, root: Path, args) -> None:
    labelled = report.true is not None
    kind = f"{len(report.class_names)} classes" + ("" if labelled else " from --labels, no true labels")
    print(f"{len(report.runs)} models on {root}: {len(report.names)} images, {kind}; templates "
          f"{args.templates}, weighting {args.weighting}")
    if report.cancelled:
        print("cancelled: the models done so far")
    for number, run in enumerate(report.runs, start=1):
        _print_model(number, run, args.templates)
    if labelled and report.runs:
        _print_per_class(report)
    if report.pairs:
        print("\npairs (paired over the same images):")
        for pair in report.pairs:
            print(f"  {_pair_words(pair, labelled)}")
    _print_disagreements(report)


def _print_per_class(report) -> None:
    """Each class's top-1 under each model, one line per class."""
    results = [run.report.result for run in report.runs]
    print("\nper class, top-1 of " + " ".join(f"[{m}]" for m in range(1, len(results) + 1)) + ":")
    for name in results[0].class_names:
        scores = "  ".join(f"{_pct(result.per_class[name]):>6}" for result in results)
        print(f"  {name} ({results[0].class_counts[name]} images): {scores}")


def _print_disagreements(report) -> None:
    rows = report.disagreements
    print(f"\nthe models disagree on {len(rows)} of {len(report.names)} images"
          + (":" if rows else ""))
    for row in rows[:SHOWN_DISAGREEMENTS]:
        answers = "  ".join(f"[{m}] {labels[0][0]} {labels[0][1]:.0%}" for m, labels in
                            enumerate(report.top_labels(row, k=1), start=1))
        true = f" (true: {report.true[row]})" if report.true is not None else ""
        print(f"  {report.names[row]}{true}: {answers}")
    if len(rows) > SHOWN_DISAGREEMENTS:
        print(f"  and {len(rows) - SHOWN_DISAGREEMENTS} more (--json lists them all)")


# ---- two indexes ------------------------------------------------------------------------------------------
def _run_indexes(args, settings) -> int:
    from explorer.index.image_index import open_index
    from explorer.science.model_compare import compare_indexes

    if args.models or args.folder:
        raise ValueError("--indexes compares two indexes: give no models nor --folder with it")
    if not args.query:
        raise ValueError("--indexes needs at least one --query TEXT")
    if args.k < 1:
        raise ValueError("-k is the number of results compared per query: 1 or more")
    first, second = open_index(args.indexes[0]), open_index(args.indexes[1])
    agreement = compare_indexes(first, second, model_opener(settings), list(args.query), k=args.k)
    if args.json:
        json.dump(agreement.as_dict(), sys.stdout, indent=2)
        print()
        return 0
    print(f"[A] {args.indexes[0]} ({agreement.labels[0]})\n[B] {args.indexes[1]} ({agreement.labels[1]})")
    for query, overlap, rho, (top_a, top_b) in zip(agreement.queries, agreement.overlap,
                                                   agreement.rank_correlation, agreement.top):
        rho = "n/a (fewer than two images, or one model's cosines all equal)" if rho != rho else f"{rho:+.2f}"
        print(f"\n{query!r}: overlap of the top {agreement.k} {overlap:.0%}; Spearman rho of the two models' "
              f"cosines over both top lists {rho}")
        print(f"  A: {', '.join(top_a)}\n  B: {', '.join(top_b)}")
    if len(agreement.overlap) > 1:
        print(f"\nmean overlap {sum(agreement.overlap) / len(agreement.overlap):.0%} over "
              f"{len(agreement.overlap)} queries")
    return 0
