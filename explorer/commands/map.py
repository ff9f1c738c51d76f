"""clip-explorer map INDEX: the folder map of an index (the Map tab's numbers) as a summary or JSON, and
optionally as a Parquet file for embedding-atlas or FiftyOne (--export).

Colours: by folder (default), zero-shot (--labels, --templates, --none-threshold), a taught classifier
(--classifier), clusters (--colour-by cluster) or a query (--query TEXT, --query-image FILE). Nothing of
the index is read or encoded again: the layout, clusters and lists come from its stored embeddings.
--explain NAME... adds each named image in a few weighted words (SpLiCE, folder_map.explain).
"""
from __future__ import annotations

import argparse
import json
import sys

from explorer.inputs.settings import load_settings

from .common import IMAGE_LIMIT_FLAGS, ProgressBar, add_model_arguments, model_from, prompt_warnings

COLOUR_BY = ("folder", "zeroshot", "taught", "cluster", "query")  # as folder_map.COLOUR_BY (checked there)


def register(commands) -> None:
    parser = commands.add_parser("map", help="the folder map of an index: layout, colours, clusters, lists")
    parser.add_argument("index", metavar="INDEX", help="an index made by `clip-explorer index`")
    parser.add_argument("--method", choices=("umap", "pca"), default="umap",
                        help="the 2-D layout (default umap)")
    parser.add_argument("--seed", type=int, default=0, help="layout and clustering seed (default 0)")
    parser.add_argument("--colour-by", choices=COLOUR_BY, default=None,
                        help="default: zeroshot with --labels, taught with --classifier, query with --query "
                             "or --query-image, else folder")
    parser.add_argument("--labels", help="zero-shot labels, comma-separated or one per line")
    parser.add_argument("--templates", default="single",
                        help="single | openai | simple | FILE (.txt or .json)")
    parser.add_argument("--none-threshold", type=float, metavar="P",
                        help='"none of these" below this best probability (default: the model\'s rule)')
    parser.add_argument("--classifier", metavar="FILE",
                        help="colour by a taught classifier (`fewshot --save`, or the Teach tab's download)")
    parser.add_argument("--clusters", type=int, default=8, metavar="K", help="k-means clusters (default 8)")
    parser.add_argument("--cluster-method", choices=("kmeans", "hdbscan"), default="kmeans")
    parser.add_argument("--query", metavar="TEXT", help="colour by each image's cosine with this text")
    parser.add_argument("--query-image", action="append", metavar="IMG",
                        help="colour by the cosine with an image: a file, or an image of the index by its "
                             "name in it (repeatable; combined with --query as Search combines them)")
    parser.add_argument("--vocabulary", metavar="FILE",
                        help="the words that name the clusters, one a line (default: the shipped list)")
    parser.add_argument("--explain", nargs="+", metavar="NAME",
                        help="each named image of the index (its name in the index, as in the JSON's "
                             "points) in a few weighted words of the vocabulary, as SpLiCE decomposes it")
    parser.add_argument("--no-lists", action="store_true",
                        help="skip the lists (likely mistakes, outliers, duplicates across folders)")
    parser.add_argument("--export", metavar="OUT.parquet", help="also write the map as Parquet")
    parser.add_argument("--neighbors", type=int, default=15, metavar="K",
                        help="nearest neighbours per image in the export (default 15)")
    parser.add_argument("--no-images", action="store_true", help="export without thumbnails")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS)
    parser.set_defaults(handler=run)


def _colour_by(args) -> str:
    if args.colour_by:
        return args.colour_by
    if args.labels:
        return "zeroshot"
    if args.classifier:
        return "taught"
    return "query" if args.query or args.query_image else "folder"


def _request(args, names_in_index):
    from explorer.science.folder_map import MapRequest
    from explorer.science.prompts import load_template_set

    images = list(args.query_image or [])
    return MapRequest(index=args.index, method=args.method, seed=args.seed, colour_by=_colour_by(args),
                      labels=args.labels or "", templates=load_template_set(args.templates),
                      none_threshold=args.none_threshold, classifier=args.classifier, clusters=args.clusters,
                      cluster_method=args.cluster_method, query_text=args.query or "",
                      query_names=[i for i in images if i in names_in_index],
                      query_images=[i for i in images if i not in names_in_index],
                      vocabulary=args.vocabulary, lists=not args.no_lists)


def run(args: argparse.Namespace) -> int:
    from explorer.embed.model import load_model  # torch, open_clip, FAISS: only once the command runs
    from explorer.index.image_index import open_index
    from explorer.science.folder_map import build_map

    settings = load_settings(args)
    index = open_index(args.index)
    in_index = set(index.file_states())
    request = _request(args, in_index)
    request.check()  # a bad request fails before the model loads
    missing = [n for n in args.explain or [] if n not in in_index]
    if missing:
        raise ValueError(f"--explain {missing[0]!r}: not an image of this index (give its name in the index, "
                         "e.g. a_red_circle/0.png)")
    if request.colour_by == "zeroshot":
        _labels(request.labels)
    model = model_from(settings) if args.model else load_model(
        index.identity["name"], index.identity.get("pretrained"), settings.device, settings.precision)
    bar = ProgressBar(quiet=args.json, unit="%")
    folder_map = build_map(model, index, request, progress=bar, image_limits=settings.limits)
    bar.close()
    doc = folder_map.as_dict()
    if args.explain:
        doc["explanations"] = _explanations(model, folder_map, args.explain, args.vocabulary)
    doc["warnings"] = _warnings(model, request)
    if args.export:
        from explorer.science.map_export import write_parquet

        bar = ProgressBar(quiet=args.json)
        doc["export"] = str(write_parquet(folder_map, args.export, neighbors=args.neighbors,
                                          images="none" if args.no_images else "thumbnail",
                                          limits=settings.limits, progress=bar))
        bar.close()
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        _print_summary(doc)
    return 0


def _explanations(model, folder_map, names: list[str], vocabulary: str | None) -> list[dict]:
    """Each named image in weighted words (folder_map.explain: SpLiCE over the map's vocabulary, the
    image mean the index's own)."""
    from explorer.science.folder_map import explain, load_words
    from explorer.science.splice import folder_mean

    words = folder_map.words or load_words(model, vocabulary)
    mean = folder_mean(folder_map.embeddings)
    row = {n: i for i, n in enumerate(folder_map.names)}
    return [explain(words, folder_map.embeddings, row[n], name=n, image_mean=mean).as_dict() for n in names]


def _labels(text: str) -> list[str]:
    from explorer.science.prompts import PromptError, parse_labels

    parsed = parse_labels(text or "")
    if len(parsed.labels) < 2:
        raise PromptError("give at least two distinct labels to colour by, e.g. --labels 'cat, dog'")
    return parsed.labels


def _warnings(model, request) -> list[str]:
    if request.colour_by != "zeroshot":
        return []
    from explorer.science.prompts import build_prompts

    return prompt_warnings(model, build_prompts(_labels(request.labels), request.templates))


def _print_summary(doc: dict) -> None:
    layout, colouring = doc["layout"], doc["colouring"]
    print(f"{doc['count']:,} images of {doc['root']} ({doc['model']}); layout {layout['method']} "
          f"({layout['fitted']:,} fitted, {layout['placed']:,} placed, {layout['seconds']:.1f} s)")
    print(f"colour: {colouring['rule']}")
    counts: dict[str, int] = {}
    for point in doc["points"]:
        if point["colour"] is not None:
            counts[point["colour"]] = counts.get(point["colour"], 0) + 1
    for name, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {count:6,}  {name}")
    if doc["clusters"]:
        print(f"clusters ({doc['clusters']['method']}):")
        for c in doc["clusters"]["clusters"]:
            print(f"  {c['cluster'] + 1:3d}  {c['size']:6,}  {c['name']}")
    _print_lists(doc["lists"] or {})
    for e in doc.get("explanations") or []:
        words = " · ".join(f"{w} {s:.2f}" for w, s in e["words"]) or "(no word)"
        print(f"{e['name']} in words (SpLiCE, cosine {e['cosine']:.2f} with its reconstruction): {words}")
    export = doc.get("export")
    if export:
        print(f"wrote {export}")
    for note in doc["notes"]:
        print(f"note: {note}", file=sys.stderr)


def _print_lists(lists: dict, shown: int = 10) -> None:
    for key, what in (("mistakes", "likely mistakes"), ("duplicates", "duplicates across class folders")):
        if lists.get(key) == []:  # None: not a folder of class sub-folders, so not looked for
            print(f"no {what} found")
    if lists.get("mistakes"):
        print("likely mistakes (folder -> what the others suggest):")
        for m in lists["mistakes"][:shown]:
            print(f"  {m['rank']:3d}  {m['name']}: {m['given']} -> {m['predicted']} "
                  f"(p(given) {m['given_probability']:.2f})")
    if lists.get("outliers"):
        print("outliers (mean cosine distance to the nearest others):")
        for o in lists["outliers"][:shown]:
            print(f"  {o['rank']:3d}  {o['name']}  {o['score']:.3f}")
    if lists.get("duplicates"):
        print("the same picture in two class folders:")
        for d in lists["duplicates"][:shown]:
            print(f"  {d['cosine']:.3f}  {d['name_i']}  {d['name_j']}")
