"""The folder map: an index's images laid out in 2-D (map_layout.py), coloured, clustered and named
(concepts.py), with the lists worth a look (label_issues.py). One place that the Map tab and
`clip-explorer map INDEX --json` share, so both show the same numbers.

Colours come from the index's stored embeddings: no image of the index is read or encoded to colour,
cluster or list them. Only texts (labels x templates, a text query, the vocabulary) go through
`model.encode_texts` and so through the model's text cache, which makes a prompt edit a cheap recolour.

    build_map(model, index, request)   the whole map (layout, colours, clusters and names, lists);
                                       a quick one first with make_clusters / name_clusters / lists off
    add_clusters, name_clusters, add_lists   what a quick map leaves out, later (the same numbers)
    recolour(model, folder_map, request)   only the colours (the layout and lists kept)
    colours(model, names, embeddings, request)   the same, from bare names and stored embeddings
    map_lists(model, names, embeddings)   mistakes, outliers, duplicates across class folders
    FolderMap.as_dict()                what both faces show, jsonable (coordinates rounded)
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from explorer.embed.images import DEFAULT_LIMITS, Limits
from explorer.embed.probability import default_none_rule
from explorer.embed.vectors import normalize
from explorer.index.image_index import combine_vectors, encoded_queries
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits
from explorer.inputs.sources import class_name

from . import fewshot
from .evaluate import none_of_these
from .prompts import SINGLE_TEMPLATE, PromptError, parse_labels, parse_texts
from .zeroshot import build_classifier, predict, taught_predictions

COLOUR_BY = ("folder", "zeroshot", "taught", "cluster", "query")
NONE_LABEL = "none of these"   # zero-shot / taught: no label fits well enough
NOISE_LABEL = "noise"          # HDBSCAN: in no cluster
TOP_FOLDER = "(top folder)"    # an image directly in the indexed folder, in no sub-folder
DIGITS = 4                     # coordinates and scores in as_dict


@dataclass
class MapRequest:
    """What a map is asked for. `labels` is the text as typed (one per line or comma-separated);
    `templates` the template list (None: the single "a photo of a {}." template); `none_threshold`
    the minimum best probability (None: the model's default rule, probability.default_none_rule, or
    for a taught classifier fewshot.none_threshold). `classifier`: the path of a taught classifier
    (`fewshot --save` or the Teach tab's download), `taught`: one already loaded (a FewShotClassifier).
    Query: `query_text` (one text per line), `query_names` (images of the index, by their index-relative
    name: their stored embeddings are used) and `query_images` (image files, encoded), combined with
    `query_weights` (texts, then names, then files) as the Search tab combines them."""
    index: str = ""
    method: str = "umap"
    seed: int = 0
    n_neighbors: int = 15
    min_dist: float = 0.1
    colour_by: str = "folder"
    labels: str = ""
    templates: list[str] | None = None
    none_threshold: float | None = None
    classifier: str | None = None
    taught: object | None = None
    clusters: int = 8
    cluster_method: str = "kmeans"
    name_words: int = 3
    query_text: str = ""
    query_names: list[str] = field(default_factory=list)
    query_images: list[str] = field(default_factory=list)
    query_weights: list[float] | None = None
    vocabulary: str | None = None
    make_clusters: bool = True
    name_clusters: bool = True
    lists: bool = True

    def check(self) -> None:
        if self.colour_by not in COLOUR_BY:
            raise ValueError(f"colour by {self.colour_by!r}: use one of {', '.join(COLOUR_BY)}")
        if self.clusters < 2:
            raise ValueError("the number of clusters must be at least 2")
        if self.colour_by == "taught" and self.taught is None and not self.classifier:
            raise ValueError("colour by a taught classifier: give one (the Teach tab's download, or a file "
                             "saved by `clip-explorer fewshot --save`)")
        if self.colour_by == "query" and not ((self.query_text or "").strip() or self.query_names
                                              or self.query_images):
            raise ValueError("colour by a query: give a text or an image to score the map by")


@dataclass
class Colouring:
    """What the colours mean. A categorical colouring has `categories` and per point `codes` (an index
    into categories; -1 = none of these / noise); `scores` is per point a number (the best label's
    probability, the query's cosine), None for folders and clusters. `probabilities` [N, C] (zero-shot
    and taught) are the per-label numbers behind the codes."""
    by: str
    categories: list[str]
    codes: np.ndarray | None
    scores: np.ndarray | None = None
    rule: str = ""
    notes: list[str] = field(default_factory=list)
    probabilities: np.ndarray | None = None
    threshold: float | None = None

    @property
    def none_label(self) -> str:
        return NOISE_LABEL if self.by == "cluster" else NONE_LABEL

    def labels(self) -> list[str] | None:
        """Per point its category's name (none_label for -1), or None for a score colouring."""
        if self.codes is None:
            return None
        names = [*self.categories, self.none_label]  # code -1 picks the last
        return [names[c] for c in self.codes.tolist()]

    def as_dict(self) -> dict:
        return {"by": self.by, "categories": list(self.categories), "none_label": self.none_label,
                "codes": None if self.codes is None else self.codes.tolist(),
                "scores": None if self.scores is None else _rounded(self.scores),
                "threshold": self.threshold, "rule": self.rule, "notes": list(self.notes)}


def _rounded(values: np.ndarray) -> list:
    return np.round(np.asarray(values, dtype=np.float64), DIGITS).tolist()


# ---- colours -----------------------------------------------------------------------------------------
def folder_of(name: str) -> str:
    """An index-relative name's top sub-folder (its class in an ImageFolder tree), or TOP_FOLDER."""
    return name.split("/", 1)[0] if "/" in name else TOP_FOLDER


def folder_colours(names: Sequence[str]) -> Colouring:
    """Each image by its top sub-folder (folders sorted; TOP_FOLDER for files directly in the root)."""
    folders = [folder_of(n) for n in names]
    categories = sorted(set(folders))
    number = {f: k for k, f in enumerate(categories)}
    codes = np.array([number[f] for f in folders], dtype=np.int64)
    return Colouring("folder", categories, codes, rule="each image by its top sub-folder")


def _labels_of(text: str, limits: TextLimits) -> tuple[list[str], list[str]]:
    parsed = parse_labels(text or "", limits)
    if len(parsed.labels) < 2:
        raise PromptError("give at least two distinct labels to colour by, e.g. 'cat, dog'")
    return parsed.labels, parsed.notes


def _threshold_note(chosen: float | None, default: float) -> str:
    return "" if chosen is None else f" (chosen: {chosen:.0%}; the default is {default:.0%})"


def zeroshot_colours(model, embeddings: np.ndarray, label_text: str, templates: list[str] | None = None,
                     none_threshold: float | None = None,
                     limits: TextLimits = DEFAULT_TEXT_LIMITS) -> Colouring:
    """Each image by its zero-shot label (labels x templates ensembled, zeroshot.build_classifier,
    probabilities by the model's own rule), or NONE_LABEL when its best probability is below
    `none_threshold` or its best cosine below the default rule's (probability.default_none_rule; None
    takes the rule's probability too). Only the prompts are encoded, through the text cache."""
    labels, notes = _labels_of(label_text, limits)
    templates = list(templates or [SINGLE_TEMPLATE])
    classes = build_classifier(model, labels, templates, limits)
    found = predict(np.asarray(embeddings, np.float32), classes, labels, model.scoring)
    rule = default_none_rule(model.scoring, len(labels))
    threshold = rule.min_probability if none_threshold is None else float(none_threshold)
    best = found.probabilities.max(axis=1) if len(embeddings) else np.zeros(0)
    flagged = none_of_these(found.cosines.max(axis=1) if len(embeddings) else np.zeros(0), best,
                            min_cosine=rule.min_cosine, min_probability=threshold)
    codes = np.where(flagged, -1, found.probabilities.argmax(axis=1) if len(embeddings) else 0)
    why = rule.text + _threshold_note(none_threshold, rule.min_probability)
    return Colouring("zeroshot", labels, codes.astype(np.int64), best.astype(np.float32),
                     f"zero-shot over {len(labels)} labels x {len(templates)} template(s); "
                     f"{NONE_LABEL}: {why}", notes, found.probabilities, threshold)


def taught_colours(embeddings: np.ndarray, classifier, none_threshold: float | None = None) -> Colouring:
    """Each image by a taught classifier's class (softmax of its logits), or NONE_LABEL below the
    threshold (None: fewshot.none_threshold, as the Teach tab sorts new images)."""
    found = taught_predictions(np.asarray(embeddings, np.float32), classifier)
    default, why = fewshot.none_threshold(len(classifier.class_names), classifier.logit_scale)
    threshold = default if none_threshold is None else float(none_threshold)
    best = found.probabilities.max(axis=1) if len(embeddings) else np.zeros(0)
    codes = np.where(best < threshold, -1, found.probabilities.argmax(axis=1) if len(embeddings) else 0)
    return Colouring("taught", list(classifier.class_names), codes.astype(np.int64), best.astype(np.float32),
                     f"the taught {classifier.method} classifier; {NONE_LABEL}: {why}"
                     + _threshold_note(none_threshold, default), [], found.probabilities, threshold)


def query_vector(model, names: Sequence[str], embeddings: np.ndarray, texts: Sequence[str] = (),
                 query_names: Sequence[str] = (), images: Sequence = (),
                 weights: Sequence[float] | None = None, limits: Limits = DEFAULT_LIMITS,
                 cache=None) -> np.ndarray:
    """One query [D] as the Search tab makes it (image_index.combine_vectors): the texts encoded
    (text cache), images of the map by name from their stored embeddings (not encoded), image files
    encoded (through `cache`). `weights` pair with texts, then names, then files."""
    texts, query_names, images = list(texts), list(query_names), list(images)
    if not texts and not query_names and not images:
        raise ValueError("give a text or an image to score the map by")
    row = {n: i for i, n in enumerate(names)}
    missing = [n for n in query_names if n not in row]
    if missing:
        raise ValueError(f"not on this map: {missing[0]!r}")
    parts = encoded_queries(model, texts)
    if query_names:
        parts.append(normalize(np.asarray(embeddings, np.float32)[[row[n] for n in query_names]]))
    parts += encoded_queries(model, images=images, limits=limits, cache=cache)
    return combine_vectors(np.concatenate(parts), weights)


def query_colours(model, names: Sequence[str], embeddings: np.ndarray, request: MapRequest,
                  limits: TextLimits = DEFAULT_TEXT_LIMITS, image_limits: Limits = DEFAULT_LIMITS,
                  cache=None) -> Colouring:
    """Each image by its cosine with the query (text, map images by name, image files)."""
    parsed = parse_texts(request.query_text or "", limits=limits)
    vector = query_vector(model, names, embeddings, parsed.labels, request.query_names, request.query_images,
                          request.query_weights, image_limits, cache)
    scores = (np.asarray(embeddings, np.float32) @ vector).astype(np.float32)
    # an image file by its name only: an upload's server path is not the visitor's business
    what = [f"“{t}”" for t in parsed.labels] + list(request.query_names) + [
        Path(p).name for p in request.query_images]
    return Colouring("query", [], None, scores, "each image by its cosine with the query " + " + ".join(what),
                     parsed.notes)


# ---- clusters ------------------------------------------------------------------------------------------
@dataclass
class Clustering:
    """Cluster labels [N] (-1 = noise for HDBSCAN) and each cluster's best words (word, score)."""
    method: str
    k: int
    seed: int
    labels: np.ndarray
    names: dict[int, list[tuple[str, float]]]
    words_key: str = ""     # Words.key of the vocabulary that named the clusters ("": not named)

    def name_of(self, cluster: int) -> str:
        if cluster < 0:
            return NOISE_LABEL
        words = [w for w, _ in self.names.get(cluster, [])]
        return ", ".join(words) if words else f"cluster {cluster + 1}"

    def colouring(self) -> Colouring:
        found = sorted(int(c) for c in set(self.labels.tolist()) if c >= 0)
        categories = [f"{c + 1}: {self.name_of(c)}" for c in range(max(found, default=-1) + 1)]
        return Colouring("cluster", categories, self.labels.astype(np.int64),
                         rule=f"{self.method} clusters of the image embeddings, each named by the words of "
                              "the vocabulary that best match its centre (the folder's mean taken away)")

    def as_dict(self) -> dict:
        return {"method": self.method, "k": self.k, "seed": self.seed,
                "clusters": [{"cluster": c, "size": int((self.labels == c).sum()), "name": self.name_of(c),
                              "words": [[w, round(float(s), DIGITS)] for w, s in self.names.get(c, [])]}
                             for c in sorted(set(self.labels.tolist()))]}


@dataclass
class Words:
    """A vocabulary and its text vectors (encoded once per map, through the text cache)."""
    words: list[str]
    vectors: np.ndarray
    source: str = ""
    notes: list[str] = field(default_factory=list)   # what parsing a typed vocabulary left out
    _concepts: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        """A digest of the words in order: tells two vocabularies apart (what named a clustering)."""
        import hashlib

        return hashlib.sha256("\n".join(self.words).encode("utf-8", "surrogatepass")).hexdigest()[:16]

    def concepts(self) -> np.ndarray:
        """SpLiCE's dictionary of these words (splice.splice_concepts), computed once and kept."""
        if self._concepts is None:
            from .splice import splice_concepts

            self._concepts = splice_concepts(self.vectors)
        return self._concepts


def load_words(model, vocabulary: str | None = None, *, text: str | None = None,
               cache_dir: str | bool | None = None, progress=None, should_stop=None,
               limits: TextLimits = DEFAULT_TEXT_LIMITS) -> Words:
    """The vocabulary and its word vectors (vocabulary.py: encoded once per model, then read from its
    disk cache under `cache_dir`; False: no disk cache). `text`: words typed by a person (one a line or
    comma-separated, vocabulary.parse_vocabulary within `limits`), used instead when it holds any word;
    else `vocabulary` (None: the one shipped; else a words file)."""
    from .vocabulary import VocabularyCancelled, load_vocabulary, parse_vocabulary, word_vectors

    found = parse_vocabulary(text, limits) if (text or "").strip() else None
    if found is None or not found.words:
        found = load_vocabulary(vocabulary, limits=limits)
    try:
        vectors = word_vectors(model, found, cache_dir=cache_dir, progress=progress, should_stop=should_stop)
    except VocabularyCancelled as exc:
        raise MapCancelled(str(exc)) from None
    return Words(list(found.words), vectors, found.source, list(found.notes))


@dataclass
class Explanation:
    """One image in a few weighted words (SpLiCE): `words` [(word, weight)] largest first, `cosine`
    between the image's embedding and its reconstruction from all its non-zero words, `active` how many
    words got a weight."""
    name: str
    words: list[tuple[str, float]]
    cosine: float
    active: int
    l1_penalty: float

    def as_dict(self) -> dict:
        return {"name": self.name, "words": [[w, round(float(s), DIGITS)] for w, s in self.words],
                "cosine": round(float(self.cosine), DIGITS), "active": int(self.active),
                "l1_penalty": self.l1_penalty}

    def text(self) -> str:
        return " · ".join(f"{w} {s:.2f}" for w, s in self.words)


SPLICE_WORDS = 8    # words of an explanation shown


def explain(words: Words, embeddings: np.ndarray, row: int, *, name: str = "",
            l1_penalty: float | None = None, k: int = SPLICE_WORDS,
            image_mean: np.ndarray | None = None) -> Explanation:
    """The image at `row` of `embeddings` (a map's stored ones) decomposed by SpLiCE (splice.decompose)
    over the words' concepts (splice.splice_concepts, kept on `words`), the image mean being the mean
    of all `embeddings` (splice.folder_mean: the indexed folder's), as in splice.py."""
    from . import splice

    f = np.asarray(embeddings, np.float32)
    if not 0 <= int(row) < len(f):
        raise ValueError(f"no image at row {row} of {len(f)}")
    penalty = splice.DEFAULT_L1_PENALTY if l1_penalty is None else float(l1_penalty)
    mean = splice.folder_mean(f) if image_mean is None else np.asarray(image_mean, np.float32)
    concepts = words.concepts()
    weights = splice.decompose(f[int(row)][None, :], concepts, mean, l1_penalty=penalty)
    cosine = float(splice.cosines(f[int(row)][None, :], weights, concepts, mean)[0])
    return Explanation(name, splice.top_concepts(weights[0], words.words, k), cosine,
                       int((weights[0] > 0).sum()), penalty)


def clustering(embeddings: np.ndarray, words: Words | None, method: str = "kmeans", k: int = 8,
               seed: int = 0, name_words: int = 3) -> Clustering:
    """Clusters of the embeddings (concepts.cluster) named by their best words (concepts.cluster_names)."""
    from .concepts import cluster, cluster_names

    labels = np.asarray(cluster(embeddings, method=method, k=k, seed=seed), dtype=np.int64)
    names = {} if words is None else cluster_names(embeddings, labels, words.vectors, words.words,
                                                   k=name_words)
    return Clustering(method, k, seed, labels, {int(c): list(v) for c, v in names.items()},
                      "" if words is None else words.key)


def name_clusters(model, folder_map: FolderMap, vocabulary: str | None = None, *, k: int = 3, progress=None,
                  should_stop=None, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> FolderMap:
    """The map with its clusters named by the vocabulary's words (for a map built with
    name_clusters=False, so that it showed before the words were encoded); a cluster colouring follows."""
    words = load_words(model, vocabulary, progress=progress, should_stop=should_stop, limits=limits)
    found = folder_map.clustering
    if found is None:
        return replace(folder_map, words=words)
    from .concepts import cluster_names

    named = cluster_names(folder_map.embeddings, found.labels, words.vectors, words.words, k=k)
    found = replace(found, names={int(c): list(v) for c, v in named.items()}, words_key=words.key)
    colouring = found.colouring() if folder_map.colouring.by == "cluster" else folder_map.colouring
    return replace(folder_map, clustering=found, colouring=colouring, words=words)


def same_clusters(found: Clustering | None, request: MapRequest) -> bool:
    return found is not None and (found.method, found.k, found.seed) == (
        request.cluster_method, request.clusters, request.seed)


# ---- the map -------------------------------------------------------------------------------------------
@dataclass
class FolderMap:
    """A map of an index: per point (rows follow `names`) its place, folder and colour, plus the
    clusters and the lists. `embeddings` are the index's stored ones (kept for recolouring)."""
    index: str
    root: str
    model: str
    names: list[str]
    embeddings: np.ndarray
    layout: object                      # map_layout.Layout (names, xy, method, settings, ...)
    colouring: Colouring
    clustering: Clustering | None = None
    lists: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    words: Words | None = None          # the vocabulary's vectors, loaded once for naming

    @property
    def xy(self) -> np.ndarray:
        return np.asarray(self.layout.xy, dtype=np.float32)

    @property
    def folders(self) -> list[str]:
        return [folder_of(n) for n in self.names]

    def paths(self) -> list[str]:
        """Each image's absolute path (the index's root joined with its name)."""
        return [str(_joined(self.root, n)) for n in self.names]

    def with_colouring(self, colouring: Colouring) -> FolderMap:
        return replace(self, colouring=colouring)

    def with_layout(self, layout) -> FolderMap:
        """The same map on another layout (e.g. UMAP from a LayoutJob once it is done, after PCA)."""
        return replace(self, layout=_aligned(layout, self.names))

    def as_dict(self) -> dict:
        xy = np.round(self.xy.astype(np.float64), DIGITS).tolist()
        clusters = self.clustering.labels.tolist() if self.clustering is not None else None
        colours = self.colouring.labels()
        scores = None if self.colouring.scores is None else _rounded(self.colouring.scores)
        points = [{"name": n, "x": p[0], "y": p[1], "folder": folder_of(n),
                   "colour": None if colours is None else colours[i],
                   "score": None if scores is None else scores[i],
                   "cluster": None if clusters is None else clusters[i]}
                  for i, (n, p) in enumerate(zip(self.names, xy))]
        layout = self.layout
        return {"index": self.index, "root": self.root, "model": self.model, "count": len(self.names),
                "layout": {"method": layout.method, "settings": _jsonable(layout.settings),
                           "fitted": int(layout.fitted), "placed": int(layout.placed),
                           "source": getattr(layout, "source", ""), "note": getattr(layout, "note", ""),
                           "seconds": round(float(layout.seconds), 3)},
                "colouring": {k: v for k, v in self.colouring.as_dict().items()
                              if k not in ("codes", "scores")},
                "clusters": None if self.clustering is None else self.clustering.as_dict(),
                "points": points, "lists": self.lists, "notes": list(self.notes),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def _joined(root: str, name: str):
    from explorer.index.image_index import root_of

    return root_of(root) / name


def _jsonable(value):
    import json

    return json.loads(json.dumps(value, default=str))


def colours(model, names: Sequence[str], embeddings: np.ndarray, request: MapRequest, *,
            found: Clustering | None = None, words: Words | None = None,
            limits: TextLimits = DEFAULT_TEXT_LIMITS, image_limits: Limits = DEFAULT_LIMITS,
            cache=None) -> Colouring:
    """The colouring `request.colour_by` asks for, from the stored embeddings (no image of the map is
    read or encoded). `found`: the clusters already made (reused when the request asks for the same)."""
    request.check()
    by = request.colour_by
    if by == "folder":
        return folder_colours(names)
    if by == "zeroshot":
        return zeroshot_colours(model, embeddings, request.labels, request.templates, request.none_threshold,
                                limits)
    if by == "taught":
        return taught_colours(embeddings, taught_classifier(model, request, limits), request.none_threshold)
    if by == "query":
        return query_colours(model, names, embeddings, request, limits, image_limits, cache)
    if not same_clusters(found, request):
        found = clustering(embeddings, words, request.cluster_method, request.clusters, request.seed,
                           request.name_words)
    return found.colouring()


def taught_classifier(model, request: MapRequest, limits: TextLimits = DEFAULT_TEXT_LIMITS):
    """The request's taught classifier: the one given loaded, or loaded from its file (refused, naming
    both models, when another model made it)."""
    if request.taught is not None:
        return request.taught
    if not request.classifier:
        raise ValueError("colour by a taught classifier: give one (the Teach tab's download, or a file "
                         "saved by `clip-explorer fewshot --save`)")
    from . import classifier_file

    classifier, _ = classifier_file.load(request.classifier, model.identity.as_dict(), model.identifier,
                                         limits)
    return classifier


def recolour(model, folder_map: FolderMap, request: MapRequest, *, limits: TextLimits = DEFAULT_TEXT_LIMITS,
             image_limits: Limits = DEFAULT_LIMITS, cache=None) -> Colouring:
    """Only the colours of a map already made (cheap: nothing laid out, no image encoded; a cluster
    request with other settings clusters again, with the map's vocabulary loaded once unless
    request.name_clusters is False)."""
    words = folder_map.words
    if (request.colour_by == "cluster" and not same_clusters(folder_map.clustering, request) and words is None
            and request.name_clusters):
        words = folder_map.words = load_words(model, request.vocabulary, limits=limits)
    return colours(model, folder_map.names, folder_map.embeddings, request, found=folder_map.clustering,
                   words=words, limits=limits, image_limits=image_limits, cache=cache)


# ---- the lists -----------------------------------------------------------------------------------------
LIST_TOP = 50                 # entries per list
OUTLIER_K = 10                # neighbours an outlier score averages over
OUTLIER_MADS = 3.0            # an outlier stands apart: its score beyond the median + 3 robust SDs
DUPLICATE_THRESHOLD = 0.95    # cosine from which two images in different folders count as duplicates


def outlier_cut(scores: np.ndarray) -> float:
    """The outlier score from which an image stands clearly apart from the rest: the median plus
    OUTLIER_MADS robust standard deviations (1.4826 x the median absolute deviation)."""
    s = np.asarray(scores, np.float64)
    if not len(s):
        return 0.0
    median = float(np.median(s))
    return median + OUTLIER_MADS * 1.4826 * float(np.median(np.abs(s - median)))


def folder_labels(names: Sequence[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(the rows in a class sub-folder, the class folders sorted, the rows' class numbers), as
    sources.embed_index labels an index: only when there are at least two class folders (else none)."""
    folders = [folder_of(n) for n in names]
    classes = sorted({f for f in folders if f != TOP_FOLDER})
    if len(classes) < 2:
        return np.zeros(0, np.int64), [], np.zeros(0, np.int64)
    number = {c: k for k, c in enumerate(classes)}
    rows = np.array([i for i, f in enumerate(folders) if f != TOP_FOLDER], dtype=np.int64)
    return rows, classes, np.array([number[folders[i]] for i in rows], dtype=np.int64)


def map_lists(model, names: Sequence[str], embeddings: np.ndarray, *, templates: list[str] | None = None,
              folder_text: bool = False, top: int = LIST_TOP, threshold: float = DUPLICATE_THRESHOLD,
              limits: TextLimits = DEFAULT_TEXT_LIMITS, progress=None, should_stop=None) -> dict:
    """The images worth a look, each with its evidence and its `row` on the map: `outliers` (kNN,
    label_issues.knn_outliers, the most isolated first, each `beyond` the `outlier_cut` or not:
    outlier_cut) always; for an index of class sub-folders also `mistakes` (confident learning on
    out-of-fold probabilities: label_issues' default classifier, GDA on the images alone, which measured
    best there; the folder names' zero-shot text joins it with `folder_text`, prompts
    from `templates`), with `how` saying so, and `duplicates` (the same picture in two class folders;
    None when the index has no class folders). progress(done, total); should_stop() -> MapCancelled."""
    from . import label_issues as li

    f = np.asarray(embeddings, np.float32)
    out: dict = {"outliers": [], "outlier_cut": None, "mistakes": None, "duplicates": None, "how": None}
    rows, classes, labels = folder_labels(names)
    try:
        if len(f) >= 2:
            found = li.knn_outliers(f, OUTLIER_K, progress=_part(progress, 0, 50 if classes else 100),
                                    should_stop=should_stop)
            cut = outlier_cut(found.scores)
            out["outliers"] = [{**e, "row": e["index"], "beyond": bool(e["score"] > cut)}
                               for e in found.top(top, names)]
            out["outlier_cut"] = round(cut, 6)
        if not classes:
            return out
        kept, class_names = [names[i] for i in rows], [class_name(c) for c in classes]
        text = None
        if folder_text:
            text = build_classifier(model, class_names, list(templates or [SINGLE_TEMPLATE]), limits)
        probabilities = li.out_of_fold_probabilities(f[rows], labels, class_names, zeroshot=text,
                                                     logit_scale=model.scoring)
        out["how"] = li.out_of_fold_note(zeroshot=text is not None)
        out["mistakes"] = [{**issue.as_dict(), "row": int(rows[issue.index])} for issue in
                           li.label_issues(labels, probabilities, class_names, names=kept, limit=top)]
        pairs = li.cross_folder_duplicates(f[rows], labels, threshold, progress=_part(progress, 50, 100),
                                           should_stop=should_stop)[:top]
    except li.Cancelled as exc:
        raise MapCancelled(str(exc)) from None
    out["duplicates"] = [{**p.as_dict(labels, class_names, kept), "row_i": int(rows[p.i]),
                          "row_j": int(rows[p.j])} for p in pairs]
    return out


# ---- building it ---------------------------------------------------------------------------------------
class MapCancelled(RuntimeError):
    """should_stop() said stop while the map was being made."""


def _part(progress, low: int, high: int):
    """progress(done, total) of one stage, reported as its share low..high of 100."""
    if progress is None:
        return None
    return lambda done, total: progress(low + int((high - low) * done / max(total, 1)), 100)


def _stop(should_stop) -> None:
    if should_stop is not None and should_stop():
        raise MapCancelled("stopped")


def _aligned(layout, names: list[str]):
    """The layout with its rows in the order of `names` (map_layout keeps them so; checked)."""
    if list(layout.names) == names:
        return layout
    row = {n: i for i, n in enumerate(layout.names)}
    return replace(layout, names=list(names), xy=np.asarray(layout.xy)[[row[n] for n in names]])


def layout_of(index, names: list[str], embeddings: np.ndarray, request: MapRequest, progress=None,
              should_stop=None):
    """The index's 2-D layout (map_layout.map_of_index: cached on disk in the index folder)."""
    from .map_layout import LayoutCancelled, map_of_index

    try:
        layout = map_of_index(index, names, embeddings, request.method, seed=request.seed,
                              n_neighbors=request.n_neighbors, min_dist=request.min_dist, progress=progress,
                              should_stop=should_stop)
    except LayoutCancelled as exc:
        raise MapCancelled(str(exc) or "stopped") from None
    return _aligned(layout, names)


def build_map(model, index, request: MapRequest, *, progress: Callable[[int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None, limits: TextLimits = DEFAULT_TEXT_LIMITS,
              image_limits: Limits = DEFAULT_LIMITS, cache=None, layout=None) -> FolderMap:
    """The map of an open index made by `model` (checked): its layout, the clusters named by the
    vocabulary's words (request.make_clusters, name_clusters), the lists (request.lists) and the colours
    request.colour_by asks for. Every number comes from the stored embeddings: no image of the index
    is read or encoded. progress(done, 100) through the stages; should_stop() -> MapCancelled between
    and within them. `layout`: one already made (map_layout.cached_layout, a LayoutJob's result)
    instead of map_of_index. A map made without clusters or lists gets them later from add_clusters
    and add_lists (the same numbers)."""
    request.check()
    index.check_model(model)
    names, embeddings = index.all_embeddings()
    if not names:
        raise ValueError(f"the index {index.folder} holds no images yet: nothing to map")
    started = time.perf_counter()
    if layout is None:
        layout = layout_of(index, names, embeddings, request, _part(progress, 0, 70), should_stop)
    folder_map = FolderMap(str(index.folder), str(index.root), model.identifier, list(names), embeddings,
                           _aligned(layout, list(names)), folder_colours(names),
                           seconds={"layout": time.perf_counter() - started})
    _stop(should_stop)
    if request.make_clusters or request.colour_by == "cluster":
        folder_map = add_clusters(model, folder_map, request, progress=_part(progress, 70, 85),
                                  should_stop=should_stop, limits=limits)
    _stop(should_stop)
    if request.lists:
        folder_map = add_lists(model, folder_map, request, limits=limits, progress=_part(progress, 85, 99),
                               should_stop=should_stop)
    colouring = recolour(model, folder_map, request, limits=limits, image_limits=image_limits, cache=cache)
    if progress is not None:
        progress(100, 100)
    return replace(folder_map, colouring=colouring, notes=_notes(names, colouring, folder_map.clustering),
                   seconds={**folder_map.seconds, "total": time.perf_counter() - started})


def add_clusters(model, folder_map: FolderMap, request: MapRequest, *, progress=None, should_stop=None,
                 limits: TextLimits = DEFAULT_TEXT_LIMITS) -> FolderMap:
    """The map with request's clusters (method, k, seed), named by the vocabulary's words unless
    request.name_clusters is False (the words encoded once, then kept on the map)."""
    words = folder_map.words
    if request.name_clusters and words is None:
        words = load_words(model, request.vocabulary, progress=progress, should_stop=should_stop,
                           limits=limits)
    started = time.perf_counter()
    found = clustering(folder_map.embeddings, words, request.cluster_method, request.clusters, request.seed,
                       request.name_words)
    return replace(folder_map, clustering=found, words=words,
                   seconds={**folder_map.seconds, "clusters": time.perf_counter() - started})


def add_lists(model, folder_map: FolderMap, request: MapRequest, *, limits: TextLimits = DEFAULT_TEXT_LIMITS,
              progress=None, should_stop=None) -> FolderMap:
    """The map with its lists (map_lists: outliers; mistakes and duplicates across class folders)."""
    started = time.perf_counter()
    lists = map_lists(model, folder_map.names, folder_map.embeddings, templates=request.templates,
                      limits=limits, progress=progress, should_stop=should_stop)
    seconds = {**folder_map.seconds, "lists": time.perf_counter() - started}
    return replace(folder_map, lists=lists, seconds=seconds)


def _notes(names: Sequence[str], colouring: Colouring, found: Clustering | None) -> list[str]:
    notes = list(colouring.notes)
    top = sum(1 for n in names if "/" not in n)
    if top and len({folder_of(n) for n in names}) > 2:
        notes.append(f"{top} image(s) directly in the indexed folder belong to no class folder: "
                     "left out of the mistakes and duplicates lists")
    if found is not None and (found.labels < 0).any():
        notes.append(f"{int((found.labels < 0).sum())} image(s) fit no {found.method} cluster "
                     f"({NOISE_LABEL})")
    return notes
