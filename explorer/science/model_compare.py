"""Models side by side on a person's own images: the Compare tab and `clip-explorer compare`.

Each model in turn is opened (`open_model`, a context manager: the caller loads it, or lends the
resident one, and frees it after), its embeddings of the folder are fetched (`embed_for`: the app's
index of the folder for that model, so nothing is encoded twice), the Prompt lab's run (run_lab) scores
it, and it is released before the next one opens: two models are never resident together. The
images are aligned by name across the models, so every number is paired: per pair of models the
share of images with the same top-1 label and, labelled, the Prompt lab's paired evidence
(evaluate.paired_difference: McNemar's exact test and a paired bootstrap interval); the rows where
the models' top-1 labels differ are listed exactly. No gradio here: plain data in and out.

`compare_indexes` puts two indexes of one folder, made by two models, side by side on text queries:
per query, how much their top-k overlap and how alike the two models rank the images they found.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explorer.embed.names import HF_HUB, LOCAL_DIR, describe
from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits
from explorer.inputs.settings import parse_model_entry
from explorer.inputs.sources import Embedded, Progress

from .calibration import calibrate
from .evaluate import PairedDifference, paired_difference
from .prompt_lab import LabReport, run_lab
from .prompts import builtin_template_set

if TYPE_CHECKING:
    from explorer.embed.model import ClipModel
    from explorer.index.embedding_store import Stored

    from .model_cost import ModelCost

EMBED_SHARE = 0.8   # of each model's share of the progress bar: embedding (the rest: scoring)


@dataclass(frozen=True)
class ModelChoice:
    """A model to compare, as a person names it: open_clip name and pretrained tag (or checkpoint)."""
    name: str
    pretrained: str | None = None

    @classmethod
    def parse(cls, entry: str) -> ModelChoice:
        """'ViT-B-32@openai', 'local-dir:/x' (its folder made absolute), 'hf-hub:org/repo'."""
        name, pretrained = parse_model_entry(entry)
        return cls.of(name, pretrained)

    @classmethod
    def of(cls, name: str, pretrained: str | None = None) -> ModelChoice:
        """The choice as load_model names what it loads: a local-dir: folder absolute, no tag with a
        local-dir: or hf-hub: name (open_clip ignores it there)."""
        name = name.strip()
        if name.startswith(LOCAL_DIR):
            name = LOCAL_DIR + str(Path(name[len(LOCAL_DIR):]).expanduser().resolve())
        if name.startswith((LOCAL_DIR, HF_HUB)):
            pretrained = None
        return cls(name, pretrained or None)

    def label(self) -> str:
        return describe(self.name, self.pretrained)

    def matches(self, model) -> bool:
        """True when `model` (a loaded ClipModel) is this choice."""
        return self == ModelChoice.of(model.name, model.pretrained)


@dataclass
class ModelRun:
    """One model's run on the aligned images."""
    choice: ModelChoice
    identifier: str             # the loaded model's identifier
    scoring: str                # "softmax" | "sigmoid"
    report: LabReport           # science.prompt_lab.run_lab on this model's aligned images
    cost: ModelCost             # science.model_cost.model_cost(model) (GPU peak of the run) + load time
    encoded: int                # images encoded for this comparison
    seconds_per_image: float | None
    timed_now: bool
    store_bytes: int
    ece: float | None           # labelled: calibration.calibrate(...).model.ece (the Prompt lab's number)
    best_set: dict | None       # labelled: {"prompt_set", "weighting", "top1"}: best of "your set" and rows

    def top1(self) -> float | None:
        return None if self.report.result is None else float(self.report.result.top1)

    def top5(self) -> float | None:
        return None if self.report.result is None else float(self.report.result.top5)

    def as_dict(self) -> dict:
        result = self.report.result
        return {
            "model": self.choice.label(), "identifier": self.identifier, "probability": self.scoring,
            "top1": self.top1(), "top5": self.top5(), "top_k": None if result is None else result.top_k,
            "per_class": None if result is None else {
                name: {"accuracy": result.per_class[name], "images": result.class_counts[name]}
                for name in result.class_names},
            "ece": self.ece, "best_set": self.best_set, "cost": self.cost.as_dict(), "encoded": self.encoded,
            "seconds_per_image": self.seconds_per_image,
            "ms_per_image": None if self.seconds_per_image is None else 1000 * self.seconds_per_image,
            "timed_now": self.timed_now, "store_bytes": self.store_bytes, "notes": list(self.report.notes)}


@dataclass
class PairEvidence:
    """Two models (indexes into CompareReport.runs, a < b) on the same images."""
    a: int
    b: int
    agreement: float            # share of images with the same top-1 label
    evidence: PairedDifference | None   # labelled: paired_difference(correct_a, correct_b): a minus b

    def as_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "agreement": self.agreement,
                "evidence": None if self.evidence is None else self.evidence.as_dict(),
                "described": None if self.evidence is None else self.evidence.describe()}


@dataclass
class CompareReport:
    """What a comparison found; every per-image list is in the order of `names`."""
    names: list[str]            # the images, in one order shared by every model (aligned by name)
    paths: list[Path]
    class_names: list[str]
    true: list[str] | None      # labelled: each image's class
    runs: list[ModelRun]
    pairs: list[PairEvidence]
    disagreements: list[int]    # rows where the models' top-1 labels are not all equal (exact)
    cancelled: bool = False     # Cancel pressed: the runs done so far
    notes: list[str] = field(default_factory=list)
    predicted: list[list[str]] = field(default_factory=list)   # per run, each row's top-1 label
    probabilities: list[np.ndarray] = field(default_factory=list, repr=False)  # per run, [N, C]

    def top_labels(self, row: int, k: int = 3) -> list[list[tuple[str, float]]]:
        """Per model, its `k` most probable labels for image `row`, as (label, probability)."""
        out = []
        for probs in self.probabilities:
            order = np.argsort(-probs[row], kind="stable")[:k]
            out.append([(self.class_names[c], float(probs[row, c])) for c in order])
        return out

    def as_dict(self) -> dict:
        """What `compare --json` prints and the tab draws (the same numbers)."""
        labels = [run.choice.label() for run in self.runs]
        rows = [{"image": name, **({"true": self.true[i]} if self.true is not None else {}),
                 "answers": [{"model": label, "label": top[0][0], "probability": top[0][1]}
                             for label, top in zip(labels, self.top_labels(i, 1))]}
                for i, name in enumerate(self.names)]
        return {
            "images": len(self.names), "classes": self.class_names, "labelled": self.true is not None,
            "models": [run.as_dict() for run in self.runs],
            "pairs": [{"models": [labels[p.a], labels[p.b]], **p.as_dict()} for p in self.pairs],
            "disagreements": [{"row": r, **rows[r], "top": [
                [{"label": lab, "probability": p} for lab, p in top] for top in self.top_labels(r)]}
                for r in self.disagreements],
            "per_image": rows, "cancelled": self.cancelled, "notes": list(self.notes)}


# open_model(choice): a context manager that yields the loaded model (a ClipModel) and frees it after
ModelOpener = Callable[[ModelChoice], AbstractContextManager["ClipModel"]]
# embed_for(model, progress, should_stop) -> embedding_store.Stored: the model's embeddings of the images
EmbedFor = Callable[["ClipModel", Progress | None, Callable[[], bool] | None], "Stored"]


@dataclass
class _Done:
    """One finished model: its run and its per-image answers, by image name."""
    run: ModelRun
    images: Embedded
    predicted: list[str]
    probabilities: np.ndarray


def check_choices(choices: list[ModelChoice], max_models: int = 4) -> None:
    """ValueError unless 2..max_models different models are chosen (the limit: max_compare_models)."""
    if len(choices) < 2:
        raise ValueError("choose at least two models to compare")
    gate.check_count("Models to compare", len(choices), max_models, "max_compare_models")
    seen = set()
    for choice in choices:
        if choice in seen:
            raise ValueError(f"{choice.label()} is chosen twice: choose each model once")
        seen.add(choice)


def compare_models(choices: list[ModelChoice], open_model: ModelOpener, embed_for: EmbedFor, *,
                   labels: list[str] | None = None, templates: list[str] | None = None,
                   weighting: str = "mean", limits: TextLimits = DEFAULT_TEXT_LIMITS,
                   max_models: int = 4, progress: Callable[[float, str], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> CompareReport:
    """Run each of `choices` (2..max_models, no repeats) in turn on the same images: `open_model(choice)`
    lends the model (released before the next opens), `embed_for(model, progress, should_stop)` gives
    its stored embeddings, run_lab scores them with `templates` (None: the 7 templates) and `weighting`
    (`labels`: the classes of unlabelled images; labelled images are also scored with the built-in
    sets, and the best set is reported). `progress(fraction, "model 2 of 3 (NAME): ...")`;
    `should_stop()` true ends the comparison after its current step, with the models done so far."""
    check_choices(choices, max_models)
    templates = list(templates) if templates else builtin_template_set("simple")
    if labels:  # typed classes: refused before any model loads (a labelled folder's count comes later)
        gate.prompts(len(labels) * len(templates), "Labels x templates to encode", limits)
    stop = should_stop or (lambda: False)
    done: list[_Done] = []
    cancelled, notes = False, []
    for i, choice in enumerate(choices):
        if stop():
            cancelled = True
            break
        said = _progress_for(progress, i, len(choices), choice.label())
        finished = _run_one(choice, open_model, embed_for, said, stop, done,
                            dict(labels=labels, templates=templates, weighting=weighting, limits=limits))
        if finished is None:
            cancelled = True
            break
        done.append(finished)
        notes += [f"{choice.label()}: {note}" for note in finished.images.notes]
        said(1.0, "done")
    return _report(done, cancelled, notes)


def _progress_for(progress, i: int, n: int, label: str) -> Callable[[float, str], None]:
    """progress(fraction of this model's share, what) -> overall fraction, 'model i of n (LABEL): what'."""
    def said(fraction: float, what: str) -> None:
        if progress is not None:
            progress((i + min(max(fraction, 0.0), 1.0)) / n, f"model {i + 1} of {n} ({label}): {what}")
    return said


def _run_one(choice: ModelChoice, open_model: ModelOpener, embed_for: EmbedFor, said, stop,
             done: list[_Done], options: dict) -> _Done | None:
    """One model: opened, embedded, scored and measured, then released. None when stopped while embedding."""
    from .model_cost import model_cost, reset_gpu_peak  # torch: only once a model is open

    said(0.0, "loading")
    started = time.perf_counter()
    with open_model(choice) as model:
        load_seconds = time.perf_counter() - started
        reset_gpu_peak(model)

        def embedded(count: int, total: int) -> None:
            said(EMBED_SHARE * count / max(total, 1), f"{count}/{total} images embedded")

        stored = embed_for(model, embedded, stop)
        if stored.cancelled:
            return None
        said(EMBED_SHARE, "scoring the prompts")
        images = _aligned(stored.images, done[0].images.names if done else None)
        report = run_lab(model, images, options["templates"], weighting=options["weighting"],
                         labels=options["labels"], compare_builtins=images.labelled, limits=options["limits"])
        cost = replace(model_cost(model), load_seconds=load_seconds)
        run = ModelRun(choice, model.identifier, model.scoring.kind, report, cost, stored.encoded,
                       stored.seconds_per_image, stored.timed_now, stored.store_bytes, _ece(report),
                       _best_set(report))
        cosines = images.embeddings @ report.class_emb.T
        finished = _Done(run, images, list(report.predicted), report.scoring.probabilities(cosines))
        del model  # the opener frees it on leaving: no reference of ours may keep it alive
    return finished


def _aligned(images: Embedded, names: list[str] | None) -> Embedded:
    """`images` in the order of `names` (the first model's), keeping those it has; as they are when None."""
    if names is None:
        return images
    at = {name: i for i, name in enumerate(images.names)}
    keep = [at[name] for name in names if name in at]
    return replace(images, names=[images.names[i] for i in keep], paths=[images.paths[i] for i in keep],
                   embeddings=images.embeddings[keep],
                   labels=None if images.labels is None else images.labels[keep])


def _ece(report: LabReport) -> float | None:
    result = report.result
    if result is None or result.cosines is None or result.scoring is None:
        return None
    return float(calibrate(result.cosines, result.true_idx, result.scoring).model.ece)


def _best_set(report: LabReport) -> dict | None:
    """The best row of "your set" and the built-in sets (the first of equals: your set first)."""
    if report.result is None:
        return None
    rows = [("your set", report.weighting, report.result.top1)]
    rows += [(row.prompt_set, row.weighting, row.top1) for row in report.comparison]
    best = max(rows, key=lambda row: row[2])
    return {"prompt_set": best[0], "weighting": best[1], "top1": float(best[2])}


def _report(done: list[_Done], cancelled: bool, notes: list[str]) -> CompareReport:
    """The runs aligned on the images every model has (the first model's order), paired."""
    if not done:
        return CompareReport([], [], [], None, [], [], [], cancelled, notes)
    common = set.intersection(*(set(d.images.names) for d in done))
    first = done[0].images
    rows = [i for i, name in enumerate(first.names) if name in common]
    if any(len(d.images) != len(rows) for d in done):
        notes.append(f"not every model could read every image: the pairs compare the {len(rows)} images "
                     "all of them read; each model's accuracy is on the images it read")
    names = [first.names[i] for i in rows]
    predicted, probabilities, correct = [], [], []
    for d in done:
        at = {name: i for i, name in enumerate(d.images.names)}
        own = [at[name] for name in names]
        predicted.append([d.predicted[i] for i in own])
        probabilities.append(d.probabilities[own])
        result = d.run.report.result
        correct.append(None if result is None else (result.predictions == result.true_idx)[own])
    report = done[0].run.report
    if any(d.run.report.class_names != report.class_names for d in done):
        raise ValueError("the models read different classes from these images; compare them on one folder")
    true = None if report.true is None else [report.true[i] for i in rows]
    pairs = [PairEvidence(a, b, _agreement(predicted[a], predicted[b]),
                          None if correct[a] is None or correct[b] is None
                          else paired_difference(correct[a], correct[b]))
             for a in range(len(done)) for b in range(a + 1, len(done))]
    disagreements = [r for r in range(len(names)) if len({p[r] for p in predicted}) > 1]
    return CompareReport(names, [first.paths[i] for i in rows], list(report.class_names), true,
                         [d.run for d in done], pairs, disagreements, cancelled, notes, predicted,
                         probabilities)


def _agreement(a: list[str], b: list[str]) -> float:
    return float(np.mean([x == y for x, y in zip(a, b)])) if a else 0.0


# ---- two indexes of one folder --------------------------------------------------------------------
@dataclass
class IndexAgreement:
    """Two models' indexes of one folder on the same text queries."""
    queries: list[str]
    k: int
    labels: tuple[str, str]             # the two models, as a person would type them
    overlap: list[float]                # per query |topk_a ∩ topk_b| / k (k: at most the images found)
    rank_correlation: list[float]       # per query Spearman rho of the two models' cosines over the union
    top: list[tuple[list[str], list[str]]]   # per query, each index's top-k names
    compared: list[int] = field(default_factory=list)   # per query, the images behind its rho

    def as_dict(self) -> dict:
        return {"models": list(self.labels), "k": self.k, "queries": [
            {"query": query, "overlap": overlap, "rank_correlation": None if np.isnan(rho) else rho,
             "images_ranked": n, "top": {self.labels[0]: top[0], self.labels[1]: top[1]}}
            for query, overlap, rho, n, top in zip(self.queries, self.overlap, self.rank_correlation,
                                                   self.compared, self.top)],
            "mean_overlap": float(np.mean(self.overlap)) if self.overlap else None,
            "rank_correlation_is": ("Spearman's rho of the two models' cosines with the query, over the "
                                    "images either model puts in its top k (the images both indexes hold)")}


def compare_indexes(index_a, index_b, open_model: ModelOpener, queries: list[str],
                    k: int = 10) -> IndexAgreement:
    """Two indexes (image_index.ImageIndex) of one folder made by two models, on text `queries`: per
    query, the share of their top `k` they have in common (of k, or of the images found when an index
    holds fewer) and Spearman's rho of the two models'
    cosines over the images either puts in its top k. Each index's model is opened from its stored
    identity (open_model, one after the other) only to encode the queries; the images' embeddings are
    the stored ones. ValueError when the indexes are of different folders or by the same model."""
    if str(index_a.root) != str(index_b.root):
        raise ValueError(f"the two indexes are of different folders ({index_a.root} and {index_b.root}); "
                         "compare two models' indexes of one folder")
    if index_a.identity == index_b.identity and index_a.weights_digest == index_b.weights_digest:
        raise ValueError("both indexes were made by the same model; choose indexes made by two models")
    queries = [q.strip() for q in queries if q and q.strip()]
    if not queries:
        raise ValueError("give at least one text query")
    if k < 1:
        raise ValueError("k must be at least 1")
    vectors = [_query_vectors(index, open_model, queries) for index in (index_a, index_b)]
    hits = [index.search(q, k) for index, q in zip((index_a, index_b), vectors)]
    overlap, rho, compared, top = [], [], [], []
    for i in range(len(queries)):
        names = [[hit.path for hit in found[i]] for found in hits]
        top.append((names[0], names[1]))
        overlap.append(len(set(names[0]) & set(names[1])) / max(len(names[0]), len(names[1]), 1))
        union = list(dict.fromkeys(names[0] + names[1]))
        cos = [_cosines(index, q[i], union) for index, q in zip((index_a, index_b), vectors)]
        both = [n for n in union if n in cos[0] and n in cos[1]]
        compared.append(len(both))
        rho.append(spearman([cos[0][n] for n in both], [cos[1][n] for n in both]))
    labels = (_choice_of(index_a).label(), _choice_of(index_b).label())
    return IndexAgreement(queries, k, labels, overlap, rho, top, compared)


def _choice_of(index) -> ModelChoice:
    return ModelChoice.of(index.identity["name"], index.identity.get("pretrained"))


def _query_vectors(index, open_model: ModelOpener, queries: list[str]) -> np.ndarray:
    """[Q, D] the queries encoded by the index's own model (checked against the index), then released."""
    with open_model(_choice_of(index)) as model:
        index.check_model(model)
        vectors = model.encode_texts(queries)
        del model
    return vectors


def _cosines(index, query: np.ndarray, names: list[str]) -> dict[str, float]:
    """name -> cosine of its stored embedding with `query`, for the names the index holds."""
    found = {}
    for name in names:
        vector = index.embedding_of(name)
        if vector is not None:
            found[name] = float(np.dot(vector, query))
    return found


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (scipy.stats.spearmanr: ties take their average rank); nan with fewer
    than two values or when either side is constant."""
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    from scipy.stats import spearmanr  # scikit-learn's dependency; imported only when a query is ranked

    return float(spearmanr(a, b).statistic)
