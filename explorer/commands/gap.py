"""python -m explorer gap (--images DIR | --index PATH) (--labels ... | --captions FILE): modality-gap measures.

With --labels, each image's label is the name of the folder it is in (ImageFolder layout) and the
texts are the labels' zero-shot class embeddings; with --captions (a CSV of path,caption, or
`sidecar` for a .txt beside each image) the texts are the captions, one per image.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from ..captions import labels_from_folders, read_caption_csv, read_sidecar_captions
from ..gap import DEFAULT_MAX_POINTS, evaluate_shift, gap_measures, project_2d
from ..images import ImageError, load_images, scan_folder
from ..prompts import PromptError, load_template_set, parse_labels
from ..settings import load_settings
from ..zeroshot import build_classifier
from .common import ProgressBar, add_model_arguments, model_from

DEFAULT_SHIFTS = "0,0.25,0.5,0.75,1"


def register(commands) -> None:
    parser = commands.add_parser("gap", help="measure the modality gap between image and text embeddings")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="a folder of images (searched recursively)")
    source.add_argument("--index", metavar="PATH", help="an index made by `python -m explorer index` (no re-encoding)")
    texts = parser.add_mutually_exclusive_group(required=True)
    texts.add_argument("--labels", help="labels, comma-separated or one per line; images are labelled by folder name")
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


def _embed_folder(model, root: str, settings, quiet: bool) -> tuple[list[str], np.ndarray, list[str]]:
    """Scan and encode a folder in batches -> (absolute paths, embeddings [N, D], failure lines)."""
    try:
        files = scan_folder(root)
    except ImageError as exc:
        raise ValueError(str(exc)) from None
    bar = ProgressBar(quiet=quiet)
    paths, chunks, failures = [], [], []
    batch = 32
    for start in range(0, len(files), batch):
        loaded, failed = load_images(files[start:start + batch], max_bytes=settings.max_upload_bytes,
                                     max_pixels=settings.max_pixels)
        failures += [f"{f.path}: {f.reason}" for f in failed]
        if loaded:
            keys = [_file_key(item.path) for item in loaded]
            chunks.append(model.encode_images([item.image for item in loaded], batch_size=batch, keys=keys))
            paths += [item.path for item in loaded]
        bar(min(start + batch, len(files)), len(files))
    bar.close()
    emb = np.concatenate(chunks) if chunks else np.zeros((0, model.embed_dim), np.float32)
    return paths, emb, failures


def _file_key(path: str):
    try:
        st = os.stat(path)
        return (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return None


def _index_embeddings(path: str, model) -> tuple[list[str], np.ndarray, list[str]]:
    """Stored embeddings of an index -> (absolute paths, embeddings, failure lines)."""
    try:
        from ..index import open_index
    except ImportError:
        raise ValueError("--index needs explorer/index.py, which this installation does not have") from None
    index = open_index(path)
    try:
        index.check_model(model)
        with index._lock:  # the index serialises its store; read all rows in one go
            ids, vectors = index.store.embeddings(index.dim)
            names = index.store.paths_of(ids)
        keep = [i for i, id_ in enumerate(ids) if int(id_) in names]
        paths = [str(index.root / names[int(ids[i])]) for i in keep]
        failures = [f"{f.path}: {f.reason}" for f in index.failures()]
        return paths, vectors[keep], failures
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
        paths, image_emb, failures = _embed_folder(model, args.images, settings, quiet=args.json)
    else:
        paths, image_emb, failures = _index_embeddings(args.index, model)
    if not paths:
        raise ValueError(f"no usable images in {args.images or args.index}")

    problems: list[str] = []
    if labels is not None:
        text_emb = build_classifier(model, labels, templates)
        texts = labels
        matches = np.array(labels_from_folders(paths, labels), dtype=np.int64)
        unlabelled = int((matches < 0).sum())
        if unlabelled:
            problems.append(f"{unlabelled} of {len(paths)} images are in no folder named after a label")
    else:
        table = caption_table if caption_table is not None else read_sidecar_captions(paths)
        problems += table.problems
        captions = [table.caption_of(p) for p in paths]
        have = [i for i, c in enumerate(captions) if c is not None]
        if not have:
            raise ValueError("no image has a caption: check the CSV's paths (relative to the CSV's folder) "
                             "or the .txt files beside the images")
        if caption_table is not None and len(have) < len(paths):
            problems.append(f"{len(paths) - len(have)} of {len(paths)} images have no caption in {args.captions}")
        texts = [captions[i] for i in have]
        text_emb = model.encode_texts(texts)
        matches = np.full(len(paths), -1, dtype=np.int64)
        matches[have] = np.arange(len(have))
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
