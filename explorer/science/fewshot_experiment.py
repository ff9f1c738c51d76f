"""One few-shot experiment, the same for `clip-explorer fewshot` and the Teach by example tab.

From labelled images already embedded (sources.Embedded; nothing here decodes or encodes an image):
- `train_test_split`: the test images, a separate labelled set mapped onto the training classes by
  name, or else the one held-out policy (HELD_OUT of each class, seed HELD_OUT_SEED; `held_out_note`
  says so, in one wording for both faces);
- `class_text`: the zero-shot class embeddings of the prompt set a person chose (`PromptChoice`:
  templates, descriptions or both, equal or ZPE weighting from the training images);
- `FewShotExperiment`: every method fitted on the shots of each draw (shot count, seed) and scored
  on the test images; each (method, shot count, seed) is chosen and fitted once, then reused by the
  report, the shots curve and the classifiers kept (those of the draw with seed SHOTS_SEED);
- `run_split` / `run`: the whole run (report, shots curve, confusion matrices, the images each
  method fixes or breaks, the fitted classifiers), and `Provenance`, the one record of what made
  it, printed by `fewshot --json` and written into the classifier file the tab downloads.
Hyper-parameters are chosen on the shots alone (fewshot.choose: leave-one-out over the shots), never on
the test images; each method's search (its grid, every value's score, whether it chose anything) and
its departures from the paper (fewshot.departures) travel with its score and in the provenance.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits
from explorer.inputs.sources import require_classes

from . import fewshot
from .descriptions import prompt_set
from .evaluate import class_embeddings, slot_weights
from .zpe import zpe_weights

HELD_OUT = 0.3           # of each class, for testing, when no test images are given
HELD_OUT_SEED = 0
SHOTS_SEED = 0           # the draw of shots whose fitted classifiers are kept (applied, saved, downloaded)
CURVE_SHOTS = (1, 2, 4, 8, 16)
CURVE_SEEDS = 3
WEIGHTINGS = ("mean", "zpe")


# ---- which images train, which test ---------------------------------------------------------------
def sample_shots(labels: np.ndarray, shots: int | None, seed: int) -> np.ndarray:
    """Sorted indices of `shots` images per class drawn with `seed` (all of a class with fewer);
    None takes every image."""
    labels = np.asarray(labels)
    if shots is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.nonzero(labels == c)[0])[:shots] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def split_held_out(labels: np.ndarray, fraction: float = HELD_OUT,
                   seed: int = HELD_OUT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: `fraction` of each class held out for testing (at least one image of a
    class with two or more; a class with one image stays in training)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.nonzero(labels == c)[0])
        k = int(round(fraction * len(members))) if len(members) > 1 else 0
        k = max(k, 1) if len(members) > 1 else 0
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def held_out_note(tested: int, total: int, fraction: float = HELD_OUT, seed: int = HELD_OUT_SEED) -> str:
    """What the held-out policy did, for people (both faces print this one sentence)."""
    return (f"{tested} of {total} images ({fraction:.0%} of each class, seed {seed}) were held out for "
            "testing and never used for fitting or choosing hyper-parameters")


@dataclass
class Split:
    """Training and test embeddings with their labels (indices into `class_names`)."""
    class_names: list[str]
    train: tuple[np.ndarray, np.ndarray]          # ([N, D] embeddings, [N] labels)
    test: tuple[np.ndarray, np.ndarray]
    test_names: list[str]
    test_paths: list[Path]
    held_out: float | None                        # the fraction held out; None: separate test images
    notes: list[str] = field(default_factory=list)


def train_test_split(images, test=None, *, held_out: float = HELD_OUT) -> Split:
    """`images` (a labelled sources.Embedded) for training and `test` for testing, its classes
    mapped onto the training classes by name (case-insensitive); without `test`, `held_out` of
    each class (seed HELD_OUT_SEED) is held out for testing and the notes say so."""
    require_classes(images)  # no images, no class sub-folders or one: each says so
    names = list(images.class_names)
    notes = list(images.notes)
    if test is None:
        tr, te = split_held_out(images.labels, held_out)
        if len(te) == 0:
            raise ValueError("every class needs at least two images: one to learn from and one to test on")
        notes.append(held_out_note(len(te), len(images), held_out))
        return Split(names, (images.embeddings[tr], images.labels[tr]),
                     (images.embeddings[te], images.labels[te]), [images.names[i] for i in te],
                     [images.paths[i] for i in te], held_out, notes)
    require_classes(test)  # the test images must be labelled too
    position = {name.casefold(): i for i, name in enumerate(names)}
    unknown = [n for n in test.class_names if n.casefold() not in position]
    if unknown:
        raise ValueError(f"test classes not among the training classes: {', '.join(unknown)}")
    mapping = np.array([position[n.casefold()] for n in test.class_names], dtype=np.int64)
    return Split(names, (images.embeddings, images.labels), (test.embeddings, mapping[test.labels]),
                 list(test.names), list(test.paths), None, notes + list(test.notes))


# ---- the zero-shot class embeddings ----------------------------------------------------------------
@dataclass
class PromptChoice:
    """The prompts a person chose for the zero-shot part: the texts, where they came from (a built-in
    set's name or a file: what the provenance records), what builds each class's prompts
    (descriptions.USES) and how the prompt slots are weighted (WEIGHTINGS)."""
    templates: list[str] | None = None
    template_source: str | None = None            # "single", "simple", "openai" or a file
    descriptions: dict[str, list[str]] | None = None
    description_source: str | None = None         # a file
    use: str = "templates"
    weighting: str = "mean"

    def as_dict(self) -> dict:
        """The provenance's "prompts": {use, templates, descriptions, weighting} (sources, not texts)."""
        return {"use": self.use, "templates": self.template_source if self.use != "descriptions" else None,
                "descriptions": self.description_source if self.use != "templates" else None,
                "weighting": self.weighting}


@dataclass
class ClassText:
    embeddings: np.ndarray                        # [C, D] normalised class embeddings
    choice: PromptChoice
    notes: list[str] = field(default_factory=list)


def class_text(model, class_names: list[str], choice: PromptChoice, images: np.ndarray | None = None,
               limits: TextLimits = DEFAULT_TEXT_LIMITS) -> ClassText:
    """[C, D] zero-shot class embeddings of `choice`: each prompt slot's embeddings averaged with equal
    weights (open_clip's ensembling, renormalised; "both": half templates, half descriptions) or with
    ZPE weights computed from `images` (the training embeddings, never the test ones), combined as
    ZPE's authors average logits: the weighted mean, not renormalised (evaluate.class_embeddings; the
    few-shot methods use the class embeddings as given). gate.Refused past
    `limits` (max_texts classes, max_prompts prompts) before anything is encoded."""
    if choice.weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {choice.weighting!r}: use one of {', '.join(WEIGHTINGS)}")
    gate.check_count("Classes", len(class_names), limits.max_items, "max_texts")
    prompts = prompt_set(model, class_names, choice.templates, choice.descriptions, choice.use, limits)
    zpe = None
    if choice.weighting == "zpe":
        if images is None or len(images) == 0:
            raise ValueError("ZPE weighting needs the training images' embeddings")
        zpe = zpe_weights(images, prompts.embeddings, model.logit_scale)
    weights = slot_weights(choice.weighting, len(prompts.slots), prompts.mean_weights, None, zpe)
    return ClassText(class_embeddings(prompts.embeddings, weights, choice.weighting), choice,
                     list(prompts.notes))


# ---- each method fitted once per draw of shots ----------------------------------------------------
@dataclass
class Draw:
    """One method chosen, fitted and scored on the shots drawn with (shots, seed)."""
    method: str
    shots: int | None
    seed: int
    choice: fewshot.Choice
    predictions: np.ndarray                       # [N test] (the logits are not kept: N x C each)
    top1: float
    top_k: float                                  # top-k accuracy, k = min(5, C)
    fit_seconds: float                            # choosing and fitting
    score_seconds: float
    classifier: fewshot.FewShotClassifier | None  # kept for the draw with seed SHOTS_SEED only


@dataclass
class MethodScore:
    """One method on the test images (means over seeds; `spread` is the standard deviation). The
    per-class accuracy and the predictions are those of the classifier kept (seed SHOTS_SEED)."""
    method: str
    top1: float
    top5: float
    top_k: int
    top1_spread: float
    per_class: dict[str, float | None]
    params: list[dict]            # hyper-parameters used, one per seed
    how: str                      # how they were chosen (seed SHOTS_SEED's draw)
    fit_seconds: float            # choosing and fitting, per seed
    score_seconds: float          # scoring the test images, per seed
    predictions: np.ndarray       # [N] test predictions of the seed-0 classifier
    informative: list[bool] = field(default_factory=list)  # per seed: did the search choose (no all-tie)
    search: dict = field(default_factory=dict)  # seed SHOTS_SEED's search (fewshot.Choice.as_dict())
    departures: list[str] = field(default_factory=list)    # from the paper (fewshot.departures)

    def as_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "top_k": self.top_k, "top1_spread": self.top1_spread,
                "per_class": self.per_class, "chosen": self.params, "how_chosen": self.how,
                "informative": self.informative, "search": self.search, "departures": self.departures,
                "fit_seconds": round(self.fit_seconds, 4), "score_seconds": round(self.score_seconds, 4)}

    def tied_seeds(self) -> int:
        """Seeds whose search chose nothing (every value tied, or a single shot): the default was used."""
        return sum(not i for i in self.informative) if self.method != "zero-shot" else 0


@dataclass
class FewShotReport:
    class_names: list[str]
    shots: int | None               # per class; None: every training image
    seeds: int
    train_images: int               # shots used per seed (all classes)
    test_images: int
    methods: dict[str, MethodScore]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "classes": self.class_names, "shots": self.shots, "seeds": self.seeds,
            "train_images": self.train_images, "test_images": self.test_images,
            "methods": {name: score.as_dict()
                        for name, score in self.methods.items()}, "notes": self.notes
        }


@dataclass
class ShotsCurve:
    shots: list[int]                             # shot counts run (per class)
    mean: dict[str, list[float]]                 # method -> top-1 per shot count (mean over seeds)
    std: dict[str, list[float]]                  # method -> standard deviation over seeds
    seeds: int
    skipped: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _topk(logits: np.ndarray, truth: np.ndarray, k: int) -> float:
    if k >= logits.shape[1]:
        return 1.0
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((top == truth[:, None]).any(axis=1).mean())


def _per_class(pred: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, float | None]:
    return {name: (float((pred[truth == c] == c).mean()) if (truth == c).any() else None)
            for c, name in enumerate(names)}


def _seeds(shots: int | None, seeds: int) -> int:
    return 1 if shots is None else max(1, int(seeds))


class FewShotExperiment:
    """The shots, the test images and the class text of one experiment, and every draw made on them:
    `draw(method, shots, seed)` chooses and fits the method on those shots the first time it is
    asked, and returns the same Draw after that, so the report, the shots curve and the kept
    classifiers share their fits."""

    def __init__(self, train, test, class_names: list[str], text: np.ndarray, logit_scale: float):
        (self.f_train, self.y_train), (self.f_test, self.y_test) = train, test
        if len(self.f_test) == 0:
            raise ValueError("no test images to score the methods on")
        self.class_names, self.text, self.logit_scale = list(class_names), text, float(logit_scale)
        self.top_k = min(5, len(self.class_names))
        self.draws: dict[tuple[str, int | None, int], Draw] = {}

    def draw(self, method: str, shots: int | None, seed: int) -> Draw:
        key = (method, shots, seed)
        if key not in self.draws:
            idx = sample_shots(self.y_train, shots, seed)
            f, y = self.f_train[idx], self.y_train[idx]
            start = time.perf_counter()
            choice = fewshot.choose(method, f, y, self.class_names, self.text, self.logit_scale, seed=seed)
            clf = fewshot.fit(method, f, y, self.class_names, self.text, self.logit_scale, choice.params)
            fitted = time.perf_counter()
            logits = clf.logits(self.f_test)
            scored = time.perf_counter()
            predictions = logits.argmax(axis=1)
            self.draws[key] = Draw(method, shots, seed, choice, predictions,
                                   float((predictions == self.y_test).mean()),
                                   _topk(logits, self.y_test, self.top_k), fitted - start, scored - fitted,
                                   clf if seed == SHOTS_SEED else None)
        return self.draws[key]

    def score(self, method: str, shots: int | None, seeds: int) -> MethodScore:
        runs = [self.draw(method, shots, seed) for seed in range(_seeds(shots, seeds))]
        top1 = [r.top1 for r in runs]
        kept, choice = runs[SHOTS_SEED].predictions, runs[SHOTS_SEED].choice
        return MethodScore(method, float(np.mean(top1)), float(np.mean([r.top_k for r in runs])), self.top_k,
                           float(np.std(top1)), _per_class(kept, self.y_test, self.class_names),
                           [r.choice.params for r in runs], choice.how,
                           float(np.mean([r.fit_seconds for r in runs])),
                           float(np.mean([r.score_seconds for r in runs])), kept,
                           [r.choice.informative for r in runs],
                           choice.as_dict() if method != "zero-shot" else {},
                           fewshot.departures(method, choice))

    def report(self, methods=fewshot.METHODS, shots: int | None = None, seeds: int = 1) -> FewShotReport:
        """Every method in `methods`, fitted on `shots` training images per class (repeated over
        `seeds` draws; all training images once when shots is None) and scored on the test images."""
        scores = {method: self.score(method, shots, seeds) for method in methods}
        used = len(sample_shots(self.y_train, shots, SHOTS_SEED))
        notes = []
        if shots is not None and used < shots * len(self.class_names):
            notes.append(f"some classes have fewer than {shots} training images: all of theirs were used")
        return FewShotReport(self.class_names, shots, _seeds(shots, seeds), used, len(self.f_test), scores,
                             notes)

    def curve(self, methods=fewshot.METHODS, shots=CURVE_SHOTS, seeds: int = CURVE_SEEDS) -> ShotsCurve:
        """Top-1 on the test images of each method for each shot count (mean and spread over `seeds`
        draws of the shots). Counts above the smallest class's training images are skipped and said:
        there, every draw would be the same images and the point would repeat the one before."""
        sizes = np.bincount(np.asarray(self.y_train), minlength=len(self.class_names))
        smallest = int(sizes.min())
        asked = sorted(set(int(s) for s in shots))
        run, skipped = [k for k in asked if 1 <= k <= smallest], [k for k in asked if k > smallest]
        out = ShotsCurve(run, {m: [] for m in methods}, {m: [] for m in methods}, max(1, int(seeds)), skipped)
        if skipped:
            who = self.class_names[int(sizes.argmin())]
            out.notes.append(
                f"shots curve: {', '.join(map(str, skipped))} shot(s) per class skipped: the smallest "
                f"class ({who}) has only {smallest} training image(s)")
        for k in run:
            for m in methods:
                score = self.score(m, k, seeds)
                out.mean[m].append(score.top1)
                out.std[m].append(score.top1_spread)
        return out


def run_fewshot(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                class_names: list[str], text: np.ndarray, logit_scale: float, *,
                methods=fewshot.METHODS, shots: int | None = None, seeds: int = 1) -> FewShotReport:
    """FewShotExperiment(...).report(...): the scores alone, for one shot count."""
    return FewShotExperiment(train, test, class_names, text, logit_scale).report(methods, shots, seeds)


def shots_curve(train, test, class_names: list[str], text: np.ndarray, scale: float, methods=fewshot.METHODS,
                shots=CURVE_SHOTS, seeds: int = CURVE_SEEDS) -> ShotsCurve:
    """FewShotExperiment(...).curve(...): the shots curve alone."""
    return FewShotExperiment(train, test, class_names, text, scale).curve(methods, shots, seeds)


# ---- one whole run: what both faces show ----------------------------------------------------------
def confusion(truth, pred, classes: int) -> np.ndarray:
    """[C, C] counts: rows are the true class, columns the predicted one."""
    out = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(out, (np.asarray(truth, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return out


def fixes_and_breaks(truth, zero_shot_pred, method_pred) -> tuple[np.ndarray, np.ndarray]:
    """(fixed, broken) indices: images zero-shot got wrong and the method right, and the reverse."""
    truth, zs, method = (np.asarray(a) for a in (truth, zero_shot_pred, method_pred))
    return np.nonzero((zs != truth) & (method == truth))[0], np.nonzero((zs == truth) & (method != truth))[0]


@dataclass
class Provenance:
    """What made a run and its classifiers, enough for a person to run it again: the model, the
    prompts, the shots and seeds, the held-out policy, and each method's chosen hyper-parameters.
    The same keys in `clip-explorer fewshot --json` ("provenance") and in a saved or downloaded
    classifier's .json ("provenance")."""
    model: dict                   # the model's identity (name, pretrained, embed_dim, image_size, preprocess)
    model_name: str               # the identifier a person types
    prompts: dict                 # PromptChoice.as_dict(): use, templates, descriptions, weighting
    shots: int | None             # per class; None: every training image
    seeds: int                    # draws of the shots scored
    shots_seed: int               # the draw the kept (saved, downloaded) classifiers were fitted on
    held_out: dict | None         # {"fraction", "seed"}; None when separate test images were given
    train_images: int             # shots per draw, all classes
    test_images: int
    chosen: dict[str, list[dict]]  # method -> hyper-parameters used, one per seed
    how_chosen: dict[str, str]    # method -> how (seed SHOTS_SEED's draw)
    informative: dict[str, list[bool]] = field(default_factory=dict)  # method -> per seed: chosen, not tied
    searches: dict[str, dict] = field(default_factory=dict)   # method -> seed SHOTS_SEED's search
    departures: dict[str, list[str]] = field(default_factory=dict)    # method -> departures from its paper

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Fitted:
    """What `run` keeps for a run with other shots or methods on the same images and prompts: the split,
    the class text and the experiment with every draw fitted so far (`key`: the model, prompts and
    policy they were made with; `images`: the embedded images)."""
    split: Split
    text: ClassText
    experiment: FewShotExperiment
    key: tuple
    images: object


@dataclass
class ExperimentResult:
    class_names: list[str]
    report: FewShotReport                         # top-1 vs zero-shot, chosen hyper-parameters and how
    curve: ShotsCurve
    test_names: list[str]
    test_paths: list[Path]
    truth: np.ndarray                             # [N test] true class
    predictions: dict[str, np.ndarray]            # method -> [N test], by the classifier below
    classifiers: dict[str, fewshot.FewShotClassifier]   # fitted on the shots drawn with SHOTS_SEED
    confusions: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    held_out: float | None = None
    provenance: Provenance | None = None          # set by `run`, which knows the model and prompts
    fitted: Fitted | None = field(default=None, repr=False, compare=False)  # set by `run`: for a re-run

    def changes(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        """(fixed, broken) test indices of `method` against zero-shot."""
        return fixes_and_breaks(self.truth, self.predictions["zero-shot"], self.predictions[method])

    def shows_alike(self, other: ExperimentResult | None, method: str) -> bool:
        """True when `other` shows `method` as this result does: the same classes and held-out images,
        and the same zero-shot and `method` predictions on them, so the same confusion matrix and the
        same fixed and broken images with the same captions (a page need not send them again)."""
        if other is None or any(method not in r.predictions or "zero-shot" not in r.predictions
                                for r in (self, other)):
            return False
        return (list(self.class_names) == list(other.class_names)
                and [str(p) for p in self.test_paths] == [str(p) for p in other.test_paths]
                and all(np.array_equal(a, b) for a, b in (
                    (self.truth, other.truth), (self.predictions[method], other.predictions[method]),
                    (self.predictions["zero-shot"], other.predictions["zero-shot"]))))

    def best(self) -> str:
        """The adapted method with the best top-1 (zero-shot when none was run)."""
        scores = self.report.methods
        adapted = [m for m in scores if m != "zero-shot"] or ["zero-shot"]
        return max(adapted, key=lambda m: scores[m].top1)


def run_split(split: Split, text: np.ndarray, logit_scale: float, methods, shots: int | None, *,
              seeds: int = CURVE_SEEDS, curve_shots=CURVE_SHOTS,
              experiment: FewShotExperiment | None = None) -> ExperimentResult:
    """Zero-shot plus `methods` on `split`: fitted on `shots` per class (None: every training image)
    over `seeds` draws, the shots curve over `curve_shots` (none: no curve), and each method's
    classifier of the draw with seed SHOTS_SEED, with its test predictions and confusion matrix.
    Each (method, shot count, seed) is fitted once; with `experiment` (made on this split and text) the
    draws it already holds are not fitted again."""
    methods = ("zero-shot",) + tuple(m for m in methods if m != "zero-shot")
    names, truth = split.class_names, split.test[1]
    experiment = experiment or FewShotExperiment(split.train, split.test, names, text, logit_scale)
    report = experiment.report(methods, shots, seeds)
    curve = experiment.curve(methods, curve_shots, seeds)
    kept = {m: experiment.draw(m, shots, SHOTS_SEED) for m in methods}
    predictions = {m: d.predictions for m, d in kept.items()}
    return ExperimentResult(names, report, curve, split.test_names, split.test_paths, truth, predictions,
                            {m: d.classifier for m, d in kept.items()},
                            {m: confusion(truth, p, len(names)) for m, p in predictions.items()},
                            split.notes + report.notes + curve.notes, split.held_out)


def provenance_of(model, choice: PromptChoice, result: ExperimentResult) -> Provenance:
    """The Provenance of `result`, made with `model` (its identity and identifier) and `choice`."""
    report = result.report
    held_out = None if result.held_out is None else {"fraction": result.held_out, "seed": HELD_OUT_SEED}
    return Provenance(model.identity.as_dict(), model.identifier, choice.as_dict(), report.shots,
                      report.seeds, SHOTS_SEED, held_out, report.train_images, report.test_images,
                      {m: s.params for m, s in report.methods.items()},
                      {m: s.how for m, s in report.methods.items()},
                      {m: s.informative for m, s in report.methods.items() if m != "zero-shot"},
                      {m: s.search for m, s in report.methods.items() if s.search},
                      {m: s.departures for m, s in report.methods.items() if s.departures})


def run(model, images, choice: PromptChoice, methods, shots: int | None, *, test=None,
        seeds: int = CURVE_SEEDS, curve_shots=CURVE_SHOTS, limits: TextLimits = DEFAULT_TEXT_LIMITS,
        held_out: float = HELD_OUT, previous: ExperimentResult | None = None) -> ExperimentResult:
    """The whole experiment from embedded labelled `images` (and `test`, else a held-out part):
    `train_test_split`, `class_text` (ZPE weights from the training images only), `run_split`, and
    the result's `provenance`. What both faces call. With `previous` (an earlier result of `run`) made
    by the same model and prompts on the same images (held-out split), its split, class text and fitted
    draws are re-used: another shot count or set of methods only fits the draws not fitted yet."""
    key = (model.identity.as_dict(), model.weights_digest, choice.as_dict(), choice.templates,
           choice.descriptions, float(held_out), int(seeds), tuple(curve_shots))
    fitted = previous.fitted if previous is not None and test is None else None
    if fitted is None or fitted.key != key or not same_images(fitted.images, images):
        split = train_test_split(images, test, held_out=held_out)
        text = class_text(model, split.class_names, choice, split.train[0], limits)
        split.notes.extend(text.notes)
        experiment = FewShotExperiment(split.train, split.test, split.class_names, text.embeddings,
                                       model.logit_scale)
        fitted = Fitted(split, text, experiment, key, images)
    result = run_split(fitted.split, fitted.text.embeddings, model.logit_scale, methods, shots, seeds=seeds,
                       curve_shots=curve_shots, experiment=fitted.experiment)
    result.provenance = provenance_of(model, choice, result)
    result.fitted = fitted if test is None else None
    return result


def same_images(a, b) -> bool:
    """Whether two labelled sources.Embedded hold the same images: names, files, classes and embeddings."""
    if a is b:
        return True
    return (list(a.names) == list(b.names) and list(a.paths) == list(b.paths)
            and list(a.class_names or []) == list(b.class_names or [])
            and np.array_equal(a.labels, b.labels) and np.array_equal(a.embeddings, b.embeddings))
