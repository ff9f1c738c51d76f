"""python -m explorer gap (--images DIR | --index PATH) (--labels ... | --captions FILE): modality-gap measures.

With --labels, each image's label is the name of the folder it is in (ImageFolder layout) and the
texts are the labels' zero-shot class embeddings; with --captions (a CSV of path,caption, or
`sidecar` for a .txt beside each image) the texts are the captions, one per image.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from ..captions import read_caption_csv, read_sidecar_captions
from ..gap import DEFAULT_MAX_POINTS, evaluate_shift, gap_measures, project_2d
from ..gap_inputs import GapImages, caption_texts, embed_folder, index_embeddings, label_texts
from ..index import open_index
from ..prompts import PromptError, load_template_set, parse_labels
from ..settings import load_settings
from .common import ProgressBar, add_model_arguments, model_from

DEFAULT_SHIFTS = "0,0.25,0.5,0.75,1"


def register(commands) -> None:
    parser = commands.add_parser("gap", help="measure the modality gap between image and text embeddings")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="a folder of images (searched recursively)")
    source.add_argument("--index", metavar="PATH", help="an index made by `python -m explorer index` (no re-encoding)")
    texts = parser.add_mutually_exclusive_group(required=True)
    texts.add_argument("--labels", help="labels, comma-separated or one per line; images are labelled by folder name "
                                          "(or a file name starting with the label)")
    texts.add_argument("--captions", metavar="FILE", help="a CSV with columns path,caption, or 'sidecar' "
                                                          "for a .txt file beside each image")
    parser.add_argument("--templates", default="single", help="with --labels: single | openai | simple | FILE")
    parser.add_argument("--shift", default=DEFAULT_SHIFTS, help=f"gap shifts λ to evaluate (default {DEFAULT_SHIFTS})")
    parser.add_argument("--projection", choices=("pca", "umap", "none"), default="pca")
    parser.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS, help="sample the 2-D map above this")
    parser.add_argument("--json", action="store_true", help="print the measures as one JSON document")
    add_model_arguments(parser, extra=("max_upload_mb", "max_pixels"))
    parser.set_defaults(handler=run)


def _shifts(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--shift takes numbers separated by commas, got {text!r}") from None
    if not values:
        raise ValueError("--shift is empty")
    return values


def _index_embeddings(path: str, model) -> GapImages:
    """Stored embeddings of an index (no re-encoding)."""
    index = open_index(path)
    try:
        return index_embeddings(index, model)
    finally:
        index.close()


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    shifts = _shifts(args.shift)
    if args.max_points < 3:
        raise ValueError("--max-points must be at least 3")
    labels, templates = None, None
    if args.labels is not None:
        parsed = parse_labels(args.labels)
        if len(parsed.labels) < 2:
            raise PromptError("give at least two distinct labels, e.g. --labels 'cat,dog'")
        labels, templates = parsed.labels, load_template_set(args.templates)
    caption_table = None
    if args.captions is not None and args.captions != "sidecar":
        caption_table = read_caption_csv(args.captions)  # CaptionError before the model loads
    model = model_from(settings)
    started = time.perf_counter()
    if args.images:
        bar = ProgressBar(quiet=args.json)
        found = embed_folder(model, args.images, max_bytes=settings.max_upload_bytes,
                             max_pixels=settings.max_pixels, progress=bar)
        bar.close()
    else:
        found = _index_embeddings(args.index, model)
    paths, image_emb, failures = found.paths, found.embeddings, found.failures
    if not paths:
        raise ValueError(f"no usable images in {args.images or args.index}")

    if labels is not None:
        texts = label_texts(model, paths, labels, templates)
    else:
        table = caption_table if caption_table is not None else read_sidecar_captions(paths)
        texts = caption_texts(model, paths, table, args.captions)
        if caption_table is None:  # sidecars: the per-image lines already say which are missing
            texts.problems = [p for p in texts.problems if " images have no caption in " not in p]
    text_emb, matches, problems = texts.embeddings, texts.matches, texts.problems
    encoded = time.perf_counter()

    measures = gap_measures(image_emb, text_emb, matches)
    points = evaluate_shift(image_emb, text_emb, shifts, matches)
    projection = None
    if args.projection != "none":
        projection = project_2d(image_emb, text_emb, args.projection, matches=matches, max_points=args.max_points)
    done = time.perf_counter()

    report = {
        "model": model.identifier,
        "images": args.images or args.index,
        "texts": "labels" if labels is not None else "captions",
        "templates": len(templates) if templates else None,
        "measures": measures.as_dict(),
        "shift": [p.as_dict() for p in points],
        "shift_readout": "zero-shot accuracy" if labels is not None else "matched-caption retrieval",
        "projection": None if projection is None else {
            "method": projection.method, "sample_size": projection.sample_size,
            "total_points": projection.total_points, "explained_variance": projection.explained_variance},
        "seconds": {"encode": round(encoded - started, 3), "measures": round(done - encoded, 3)},
        "problems": problems,
        "failures": failures,
    }
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print_summary(report)
    return 1 if failures or problems else 0


def _print_summary(report: dict) -> None:
    m = report["measures"]

    def fmt(v):
        return "n/a" if v is None else f"{v:+.4f}"
    print(f"model {report['model']}: {m['n_images']} images, {m['n_texts']} texts ({report['texts']}), "
          f"{m['n_matched']} matched")
    print(f"gap length            {m['gap_length']:.4f}")
    for key in ("mean_cos_image_image", "mean_cos_text_text", "mean_cos_matched", "mean_cos_unmatched",
                "alignment", "uniformity_image", "uniformity_text"):
        print(f"{key.replace('_', ' '):<22}{fmt(m[key])}")
    print(f"shift λ -> gap length, {report['shift_readout']}:")
    for p in report["shift"]:
        readout = "" if p["recall_at_1"] is None else f"  {p['recall_at_1']:.2%} (mean rank {p['mean_rank']:.2f})"
        print(f"  {p['lam']:+.2f} -> {p['gap_length']:.4f}{readout}")
    for line in report["problems"] + report["failures"]:
        print(f"note: {line}", file=sys.stderr)
