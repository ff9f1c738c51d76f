"""Loki: predict the Fréchet mean of the class probabilities in a metric space of labels.

Roberts et al., "Geometry-Aware Adaptation for Pretrained Models" (NeurIPS 2023), https://github.com/
SprocketLab/loki. A zero-shot classifier scores K classes; Loki picks, among M >= K candidate labels
(the K classes and labels the classifier never scored), the one minimising the expected squared
distance to the classes under the classifier's probabilities:

    loki(x) = argmin_j  sum_i p_i(x) d(j, i)^2        (j over the M candidates, i over the K classes)

As their code computes it: pubmed/exp.py `np.argmin(np.dot(pred_prob, d[sampled_classes_index]), axis=1)`
with d the squared distances (`d = d ** 2`) between all labels and `pred_prob` over the observed ones;
simclr_exps/loki.py `loki_exact_predict`: `-probs @ (dists ** 2)` maximised. Distances are squared
before use; ties go to the first candidate (np.argmin), so to a scored class before an extra one.

Metrics, as theirs:
  - embeddings (clip_exp/run_cifar.py `calc_clip_sq_dist_matrix`, pubmed/build_dist_matrix.py): the
    Euclidean distance between the labels' unit text embeddings (their "a photo of a {}."; here the
    given templates, ensembled as the classifier is);
  - a tree (clip_exp/libs/tree_metrics.py `compute_sq_dist_matrix`): the number of edges on the path
    between two labels (networkx.shortest_path_length on the undirected tree), squared. Their
    hierarchy joins the top-level nodes under one 'root' node (`get_hierarchy_graph`); so here.
Evaluation, as theirs (`calc_tree_metric`, `calc_clip_tree_metric`, simclr_exps/metrics.py
`MeanSquaredDistance`): the mean over images of d(prediction, truth)^2, for the arg-max and for Loki.

Where this differs (also in the JSON's "differs"): probabilities are the model's own (softmax at its
learned scale; theirs softmax(100 x cosine)); a sigmoid-trained model's per-class probabilities are
divided by their sum to make the distribution Loki needs.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from explorer.embed.probability import Scoring
from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits
from explorer.inputs.sources import Embedded, require_classes, require_images

from .evaluate import PairedDifference, paired_difference
from .prompts import PromptError
from .zeroshot import build_classifier

SOURCE = ("Roberts et al., Geometry-Aware Adaptation for Pretrained Models (Loki), NeurIPS 2023, "
          "https://github.com/SprocketLab/loki pubmed/exp.py (prediction), simclr_exps/loki.py "
          "(loki_exact_predict), clip_exp/run_cifar.py and clip_exp/libs/tree_metrics.py (distances, "
          "mean squared distance)")
EMBEDDING_METRIC = ("euclidean distance between the labels' unit text embeddings (templates ensembled), "
                    "squared by Loki")
TREE_METRIC = "edges on the path between two labels in the typed tree, squared by Loki"
DIFFERS = ("probabilities by the model's own rule (theirs: softmax of 100 x cosine); label embeddings from "
           "the given templates (theirs: 'a photo of a {}.')")
SIGMOID_DIFFERS = "; this sigmoid-trained model's per-class probabilities are divided by their sum"
Pair = Callable[[np.ndarray, np.ndarray], np.ndarray]   # (candidate rows, candidate rows) -> distances
ROOT = ""   # the node joining the tree's top-level names (never a name's key: names are not blank)


def frechet_predict(probabilities: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """[N] index into the M candidates: argmin_j sum_i p_i d(j, i)^2, `probabilities` [N, K] and
    `distances` [M, K] (unsquared: squared here, as their code squares them)."""
    p = np.asarray(probabilities, dtype=np.float64)
    d = np.asarray(distances, dtype=np.float64)
    if p.ndim != 2 or d.ndim != 2 or d.shape[1] != p.shape[1]:
        raise ValueError(f"Loki needs probabilities [N, K] and distances [M, K]: {p.shape} vs {d.shape}")
    return np.argmin(p @ np.square(d).T, axis=1)


def embedding_distances(candidates: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """[M, K] Euclidean distances between unit embeddings (their np.linalg.norm(e1 - e2)), from the
    cosines: sqrt(|a|^2 + |b|^2 - 2 a.b), clipped at 0, in float64."""
    a = np.asarray(candidates, dtype=np.float64)
    b = np.asarray(classes, dtype=np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.clip(squared, 0.0, None))


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", name).strip().casefold()


def _clean(name: str) -> str:
    return re.sub(r"\s+", " ", name).strip()


@dataclass
class Tree:
    """A typed tree: every name (first spelling) in the order typed, and each one's parent key."""
    names: dict[str, str] = field(default_factory=dict)      # key -> spelling
    parent: dict[str, str] = field(default_factory=dict)     # key -> parent key (top level: ROOT)
    line: dict[str, int] = field(default_factory=dict)       # key -> the line that gave it its parent

    def leaves(self) -> list[str]:
        has_children = set(self.parent.values())
        return [k for k in self.names if k not in has_children]

    def path(self, key: str) -> list[str]:
        """ROOT, ..., key."""
        out = [key]
        while out[-1] != ROOT:
            out.append(self.parent.get(out[-1], ROOT))
        return out[::-1]


def _add_edge(tree: Tree, parent: str, child: str, number: int) -> None:
    pk, ck = _key(parent), _key(child)
    for key, name in ((pk, parent), (ck, child)):
        tree.names.setdefault(key, name)
    if pk == ck:
        raise PromptError(f"tree line {number}: {child!r} cannot be its own parent")
    known = tree.parent.get(ck)
    if known is not None and known != pk:
        raise PromptError(f"tree line {number}: {child!r} already has the parent {tree.names[known]!r} "
                          f"(line {tree.line[ck]}); in a tree each name has one parent")
    tree.parent[ck], tree.line[ck] = pk, number


def _check_cycles(tree: Tree) -> None:
    """PromptError naming the first cycle met; each name is walked up once (linear)."""
    done: set[str] = set()
    for start in tree.parent:
        walk, on_walk, key = [], set(), start
        while key in tree.parent and key not in done:
            if key in on_walk:
                loop = walk[walk.index(key):] + [key]
                raise PromptError("tree: a cycle, " + " -> ".join(tree.names[k] for k in reversed(loop))
                                  + "; a tree has none")
            walk.append(key)
            on_walk.add(key)
            key = tree.parent[key]
        done.update(walk)


def parse_tree(text: str, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> Tree:
    """'parent: child, child' one per line (blank lines skipped) -> Tree. PromptError naming the line
    for anything else, a name with two parents, or a cycle; gate.Refused past the text limits (the
    box over max_text_kb, a name over max_text_chars, more than max_texts names)."""
    text = gate.text(text, "Tree", limits)
    tree = Tree()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        parent, sep, rest = raw.partition(":")
        children = [_clean(c) for c in rest.split(",") if c.strip()]
        if not sep or not parent.strip() or not children:
            raise PromptError(f"tree line {number}: expected 'parent: child, child' "
                              f"(got {raw.strip()[:80]!r})")
        for child in children:
            _add_edge(tree, _clean(parent), child, number)
    if not tree.names:
        raise PromptError("tree: empty; type one 'parent: child, child' per line")
    gate.within(list(tree.names.values()), "Tree: names", limits, noun="name")
    _check_cycles(tree)
    for key in tree.names:
        tree.parent.setdefault(key, ROOT)
    return tree


def path_lengths(tree: Tree, keys: list[str]) -> np.ndarray:
    """[M, M] edges between the named nodes: depth(u) + depth(v) - 2 depth(their lowest common
    ancestor), the common ancestor found as the longest shared prefix of the root paths."""
    paths = [tree.path(k) for k in keys]
    depth = np.array([len(p) - 1 for p in paths])
    ids = {k: i for i, k in enumerate(dict.fromkeys(n for p in paths for n in p))}
    width = int(depth.max()) + 1 if keys else 0
    # past a path's end, a pad of its own (-1 - row) that no other row shares
    table = -1 - np.arange(len(keys))[:, None] - np.zeros((1, width), dtype=np.int64)
    for row, p in enumerate(paths):
        table[row, :len(p)] = [ids[n] for n in p]
    shared = np.zeros((len(keys), len(keys)), dtype=np.int64)
    common = np.ones((len(keys), len(keys)), dtype=bool)
    for level in range(width):
        common &= table[:, level][:, None] == table[:, level][None, :]
        shared += common
    out = depth[:, None] + depth[None, :] - 2 * (shared - 1)
    np.fill_diagonal(out, 0)
    return out.astype(np.float64)


def tree_distances(tree_text: str, names: list[str],
                   limits: TextLimits = DEFAULT_TEXT_LIMITS) -> tuple[list[str], np.ndarray]:
    """(all_names, [M, M] path lengths in edges, unsquared) for a typed tree (parse_tree): `names`
    first, as given (each must be in the tree, matched ignoring case and spacing: PromptError listing
    the missing ones), then the tree's other leaves in the order typed (the labels it offers)."""
    tree = parse_tree(tree_text, limits)
    missing = [n for n in names if _key(n) not in tree.names]
    if missing:
        raise PromptError("tree: " + gate.listed([repr(m) for m in missing]) + " not in the tree; every "
                          "class and candidate must be named in it")
    wanted = [_key(n) for n in names]
    others = [k for k in tree.leaves() if k not in set(wanted)]
    return list(names) + [tree.names[k] for k in others], path_lengths(tree, wanted + others)


@dataclass
class LokiReport:
    """Arg-max vs Loki on the same images. `candidates` [M]: the K scored `classes` first, then the
    extra labels; `argmax`, `loki`, `true` index into them. `distances` [M, K] (unsquared).
    Labelled images only: `true`, the accuracies, the paired evidence (Loki vs arg-max) and the
    authors' metric, the mean squared distance from the prediction to the truth."""
    names: list[str]
    classes: list[str]
    candidates: list[str]
    probabilities: np.ndarray
    argmax: np.ndarray
    loki: np.ndarray
    distances: np.ndarray
    metric: str
    true: np.ndarray | None = None
    accuracy_argmax: float | None = None
    accuracy_loki: float | None = None
    evidence: PairedDifference | None = None
    mean_squared_distance_argmax: float | None = None
    mean_squared_distance_loki: float | None = None
    notes: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    differs: str = DIFFERS

    @property
    def changed(self) -> int:
        return int((self.loki != self.argmax).sum())

    @property
    def outside(self) -> int:
        """Images Loki gave a label outside the scored classes."""
        return int((self.loki >= len(self.classes)).sum())

    def as_dict(self) -> dict:
        cand = self.candidates
        rows = [{"image": name, "argmax": cand[a], "loki": cand[b],
                 "argmax_probability": float(self.probabilities[i, a]),
                 "outside": bool(b >= len(self.classes)),
                 "true": None if self.true is None else cand[self.true[i]]}
                for i, (name, a, b) in enumerate(zip(self.names, self.argmax, self.loki))]
        msd = None if self.true is None else {"argmax": self.mean_squared_distance_argmax,
                                              "loki": self.mean_squared_distance_loki}
        return {"method": "Loki", "params": self.params, "source": SOURCE, "differs": self.differs,
                "metric": self.metric, "classes": self.classes, "candidates": cand,
                "distances": self.distances.tolist(), "images": rows, "changed": self.changed,
                "outside": self.outside, "labelled": self.true is not None,
                "accuracy_argmax": self.accuracy_argmax, "accuracy_loki": self.accuracy_loki,
                "evidence": self.evidence.as_dict() if self.evidence is not None else None,
                "mean_squared_distance": msd, "notes": self.notes}


def _dedupe(names: list[str]) -> list[str]:
    out: dict[str, str] = {}
    for name in (_clean(n) for n in names):
        if name:
            out.setdefault(_key(name), name)
    return list(out.values())


def _names(images: Embedded, classes: list[str], extra: list[str],
           limits: TextLimits) -> tuple[list[str], list[str], list[str]]:
    """(classes, extra, notes): the typed lists gated, tidied, and told apart."""
    notes = []
    if not classes:
        require_classes(images, "type the classes to score")
        classes = list(images.class_names)
    classes = _dedupe(gate.within(classes, "Loki: classes", limits, noun="class"))
    extra = _dedupe(gate.within(extra or [], "Loki: extra candidates", limits, noun="candidate"))
    scored = {_key(c) for c in classes}
    repeated = [e for e in extra if _key(e) in scored]
    if repeated:
        notes.append("extra candidates already among the classes: " + gate.listed(repeated))
    extra = [e for e in extra if _key(e) not in scored]
    if len(classes) < 2:
        raise PromptError("Loki needs at least two classes to score")
    gate.check_count("Loki: classes and candidates", len(classes) + len(extra), limits.max_items, "max_texts")
    return classes, extra, notes


def _distribution(scoring: Scoring, cosines: np.ndarray) -> np.ndarray:
    p = scoring.probabilities(cosines).astype(np.float64)
    return p if scoring.sums_to_one else p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)


def _truth(images: Embedded, candidates: list[str], notes: list[str]) -> np.ndarray | None:
    """Each labelled image's class as an index into the candidates (None: unlabelled, or a folder class
    that is no candidate, said in a note)."""
    if not images.labelled:
        return None
    index = {_key(c): j for j, c in enumerate(candidates)}
    missing = [n for n in images.class_names if _key(n) not in index]
    if missing:
        notes.append("no accuracy: the folder's classes " + gate.listed(missing)
                     + " are neither classes nor candidates")
        return None
    return np.array([index[_key(n)] for n in images.class_names])[images.labels]


def _geometry(model, classes: list[str], extra: list[str], templates: list[str], tree: str | None,
              limits: TextLimits, notes: list[str]) -> tuple[list[str], np.ndarray, np.ndarray, Pair, str]:
    """(candidates, the K class embeddings, [M, K] distances, the distance of index pairs, metric)."""
    if tree is not None and tree.strip():
        candidates, full = tree_distances(tree, classes + extra, limits)
        if extra:
            size = len(classes) + len(extra)
            candidates, full = candidates[:size], full[:size, :size]
        elif len(candidates) > len(classes):
            notes.append(f"candidates: the tree's {len(candidates) - len(classes)} other leaves")
        class_emb = build_classifier(model, classes, templates, limits)
        return candidates, class_emb, full[:, :len(classes)], lambda a, b: full[a, b], TREE_METRIC
    emb = build_classifier(model, classes + extra, templates, limits).astype(np.float64)
    k = len(classes)
    return (classes + extra, emb[:k], embedding_distances(emb, emb[:k]),
            lambda a, b: np.linalg.norm(emb[a] - emb[b], axis=1), EMBEDDING_METRIC)


def loki_probe(model, images: Embedded, classes: list[str], extra: list[str], templates: list[str], *,
               tree: str | None = None, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> LokiReport:
    """Arg-max vs Loki's prediction for embedded images. `classes`: the K labels scored (empty: the
    labelled folder's classes); `extra`: candidates outside them (with a tree and none typed: the
    tree's other leaves); `templates` fill the classes' prompts (and, without a tree, every
    candidate's, for the embedding metric); `tree`: 'parent: child, child' lines (tree_distances).
    All typed text passes the gate (`limits`); prompts are counted before anything is encoded."""
    require_images(images)
    classes, extra, notes = _names(images, classes, extra, limits)
    templates = gate.within(templates or [], "Templates", limits, noun="template")
    if not templates:
        raise PromptError("Loki needs at least one template")
    candidates, class_emb, distances, pair, metric = _geometry(model, classes, extra, templates, tree, limits,
                                                               notes)
    probabilities = _distribution(model.scoring, images.embeddings @ class_emb.T)
    report = LokiReport(list(images.names), classes, candidates, probabilities, probabilities.argmax(axis=1),
                        frechet_predict(probabilities, distances), distances, metric, notes=notes,
                        params={"metric": "tree" if metric == TREE_METRIC else "embedding",
                                "templates": len(templates), "classes": len(classes),
                                "candidates": len(candidates)},
                        differs=DIFFERS + ("" if model.scoring.sums_to_one else SIGMOID_DIFFERS))
    report.true = _truth(images, candidates, notes)
    if report.true is not None:
        _evaluate(report, pair)
    return report


def _evaluate(report: LokiReport, pair: Pair) -> None:
    """Accuracies, paired evidence (Loki vs arg-max) and the mean squared distance to the truth."""
    right_argmax, right_loki = report.argmax == report.true, report.loki == report.true
    report.accuracy_argmax, report.accuracy_loki = float(right_argmax.mean()), float(right_loki.mean())
    report.evidence = paired_difference(right_loki, right_argmax)
    report.mean_squared_distance_argmax = float(np.mean(pair(report.argmax, report.true) ** 2))
    report.mean_squared_distance_loki = float(np.mean(pair(report.loki, report.true) ** 2))
