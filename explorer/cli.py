"""`python -m explorer <command>`: the same core functions the app uses, from a terminal."""
from __future__ import annotations

import argparse
import json
import sys

from .model import ModelLoadError, load_model
from .prompts import PromptError, load_template_set, parse_labels
from .settings import Settings, add_settings_arguments, load_settings
from .zeroshot import classify_files

MODEL_FLAGS = ("model", "pretrained", "device", "precision")


def _model_from(settings: Settings):
    return load_model(settings.model, settings.pretrained, settings.device, settings.precision)


class _Bar:
    """A tqdm bar on stderr, fed by a core function's progress(done, total) callback."""

    def __init__(self, quiet: bool, unit: str = "img"):
        self.quiet, self.unit, self.bar = quiet, unit, None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_classify(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    parsed = parse_labels(args.labels)
    if len(parsed.labels) < 2:
        raise PromptError("give at least two distinct labels, e.g. --labels 'cat,dog'")
    for note in parsed.notes:
        print(f"note: {note}", file=sys.stderr)
    templates = load_template_set(args.templates)
    model = _model_from(settings)
    bar = _Bar(quiet=args.json)
    report = classify_files(model, args.images, parsed.labels, templates, max_bytes=settings.max_upload_bytes,
                            max_pixels=settings.max_pixels, progress=bar)
    bar.close()
    results = []
    for row, path in enumerate(report.paths):
        results.append({"path": path, "labels": [
            {"label": label, "probability": prob, "cosine": cos}
            for label, prob, cos in report.predictions.ranked(row, args.top_k)]})
    errors = [{"path": f.path, "error": f.reason} for f in report.failures]
    if args.json:
        json.dump({"model": model.identifier, "labels": parsed.labels, "templates": len(templates),
                   "results": results, "errors": errors}, sys.stdout, indent=2)
        print()
    else:
        for result in results:
            print(result["path"])
            for entry in result["labels"]:
                print(f"  {entry['probability']:7.2%}  cos {entry['cosine']:+.3f}  {entry['label']}")
        for error in errors:
            print(f"{error['path']}: error: {error['error']}", file=sys.stderr)
    return 0 if not errors else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m explorer", description="Explore CLIP-family models.")
    commands = parser.add_subparsers(dest="command", required=True)

    classify = commands.add_parser("classify", help="zero-shot classify images against labels")
    classify.add_argument("images", nargs="+", metavar="IMAGE")
    classify.add_argument("--labels", required=True, help="comma-separated, or one per line")
    classify.add_argument("--templates", default="single", help="single | openai | simple | FILE (one per line)")
    classify.add_argument("--top-k", type=int, default=5)
    classify.add_argument("--json", action="store_true", help="print one JSON document")
    add_settings_arguments(classify, only=MODEL_FLAGS + ("max_upload_mb", "max_pixels"))
    classify.set_defaults(handler=cmd_classify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ModelLoadError, PromptError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
