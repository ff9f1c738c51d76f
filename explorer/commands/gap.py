"""clip-explorer gap (--images DIR | --index PATH) [--labels ... | --captions FILE|sidecar]: the modality gap.

With --labels, each image's label is its class folder, or the label its folder or file name names,
and the texts are the labels' zero-shot class embeddings; with neither --labels nor --captions, the
sub-folder names are the labels. With --captions (a CSV of path,caption, or `sidecar` for a .txt
beside each image) the texts are the captions, one per image. The same rules as the Modality gap tab.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from explorer.inputs.captions import check_csv
from explorer.inputs.settings import load_settings
from explorer.inputs.sources import embed_folder, embed_index
from explorer.science.gap import DEFAULT_MAX_POINTS, DEFAULT_PROJECTION, PROJECTION_METHODS, PROJECTION_NAMES
from explorer.science.gap_run import caption_texts, captions_for, label_texts, run_gap
from explorer.science.prompts import build_prompts, load_template_set, parse_labels

from .common import IMAGE_LIMIT_FLAGS, ProgressBar, add_model_arguments, model_from, prompt_warnings

DEFAULT_SHIFTS = "0,0.25,0.5,0.75,1"


def register(commands) -> None:
    parser = commands.add_parser("gap", help="measure the modality gap between image and text embeddings")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="a folder of images (searched recursively)")
    source.add_argument("--index", metavar="PATH",
                        help="an index made by `clip-explorer index` (no re-encoding)")
    texts = parser.add_mutually_exclusive_group()
    texts.add_argument("--labels",
                       help="labels, comma-separated or one per line (default: the sub-folder names)")
    texts.add_argument("--captions", metavar="FILE", help="a CSV with columns path,caption, or 'sidecar' "
                                                          "for a .txt file beside each image")
    parser.add_argument("--templates", default="single", help="with labels: single | openai | simple | FILE")
    parser.add_argument("--shift", default=DEFAULT_SHIFTS,
                        help=f"gap shifts λ to evaluate (default {DEFAULT_SHIFTS})")
    parser.add_argument(
        "--projection", choices=(*PROJECTION_METHODS, "none"), default=DEFAULT_PROJECTION,
        help="the joint 2-D map: gap (axis 1 along the gap vector, axis 2 the main direction of "
        "the rest; default), pca, umap (needs umap-learn), or none")
    parser.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS,
                        help="sample the 2-D map above this")
    parser.add_argument("--json", action="store_true", help="print the measures as one JSON document")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS)
    parser.set_defaults(handler=run)


def _shifts(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--shift takes numbers separated by commas, got {text!r}") from None
    if not values:
        raise ValueError("--shift is empty")
    return values


def run(args: argparse.Namespace) -> int:
    from explorer.index.image_index import open_index  # FAISS: only when the command runs

    settings = load_settings(args)
    shifts = _shifts(args.shift)
    if args.max_points < 3:
        raise ValueError("--max-points must be at least 3")
    labels = parse_labels(args.labels).labels if args.labels is not None else None
    templates = load_template_set(args.templates) if args.captions is None else None
    csv_path = args.captions if args.captions not in (None, "sidecar") else None
    if csv_path:
        check_csv(csv_path)  # a bad caption file fails before the model loads
    model = model_from(settings)
    started = time.perf_counter()
    if args.images:
        bar = ProgressBar(quiet=args.json)
        images = embed_folder(model, args.images, limits=settings.limits, progress=bar)
        bar.close()
    else:
        images = embed_index(model, open_index(args.index))
    if args.captions is None:
        texts = label_texts(model, images, labels, templates)
    else:
        texts = caption_texts(model, images, captions_for(images, csv_path))
    warnings = prompt_warnings(model, build_prompts(texts.texts, templates) if templates else texts.texts)
    encoded = time.perf_counter()
    run = run_gap(images, texts, shifts)
    projection = None if args.projection == "none" else run.projection(args.projection,
                                                                       max_points=args.max_points)
    done = time.perf_counter()
    report = {"model": model.identifier, "images": args.images or args.index,
              "templates": len(templates) if templates else None, **run.as_dict(),
              "projection": None if projection is None else _projection_report(projection),
              "seconds": {"encode": round(encoded - started, 3), "measures": round(done - encoded, 3)},
              "warnings": warnings}
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print_summary(report)
    return 1 if report["failures"] or report["problems"] else 0


def _projection_report(projection) -> dict:
    """The map's method, sample (said whenever it is one), each axis' share of variance, and where
    the two centroids land (gap-aligned: |gap| apart along axis 1, 0 along axis 2)."""
    return {"method": projection.method, "sample_size": projection.sample_size,
            "total_points": projection.total_points, "sampled": projection.sampled,
            "explained_variance": projection.explained_variance,
            "centroid_image": [round(float(v), 6) for v in projection.centroid_image],
            "centroid_text": [round(float(v), 6) for v in projection.centroid_text],
            "centroid_offset": [round(float(v), 6) for v in projection.centroid_offset]}


def _print_projection(p: dict) -> None:
    line = (f"projection {PROJECTION_NAMES[p['method']]}: centroids {p['centroid_offset'][0]:+.4f} "
            "apart on axis 1")
    line += f", {p['centroid_offset'][1]:+.4f} on axis 2"
    if p["explained_variance"]:
        line += "; axes explain " + ", ".join(f"{v:.1%}"
                                              for v in p["explained_variance"]) + " of the variance"
    print(line)
    if p["sampled"]:
        print(f"  showing a sample of {p['sample_size']:,} of {p['total_points']:,} points (--max-points)")


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
        readout = "" if p[
            "recall_at_1"] is None else f"  {p['recall_at_1']:.2%} (mean rank {p['mean_rank']:.2f})"
        print(f"  {p['lam']:+.2f} -> {p['gap_length']:.4f}{readout}")
    if report["projection"] is not None:
        _print_projection(report["projection"])
    for line in report["notes"] + report["problems"] + [
            f"{f['path']}: {f['error']}" for f in report["failures"]
    ]:
        print(f"note: {line}", file=sys.stderr)
