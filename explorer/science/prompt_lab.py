"""One run of the prompt lab, the same for the Prompt lab tab and `explorer eval`.

Labelled images (one sub-folder per class) get accuracy: overall, per class, per prompt, a
confusion matrix, and optionally the same images scored with the built-in template sets. Unlabelled
images get what needs no labels: ZPE weights per prompt, each image's best class, and the open-set
scores behind the "none of these" flags. Images are never re-encoded here: everything is computed
from the embeddings in `images` and the (cached) prompt embeddings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from explorer.embed.images import DEFAULT_LIMITS, Limits
from explorer.embed.probability import Scoring, default_none_rule
from explorer.embed.tokens import CutText, cut_texts, longest
from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits
from explorer.inputs.sources import FOR_UNLABELLED, Embedded, Progress, require_classes, require_images

from .calibration import calibrate
from .descriptions import DESCRIPTIONS_SLOT, PromptSet, prompt_count, prompt_set, slot_texts
from .evaluate import (
    Comparison,
    EvalResult,
    PairedDifference,
    class_embeddings,
    compare,
    cosine_meaning,
    evaluate_prompt_set,
    open_set_scores,
    paired_difference,
    slot_weights,
    template_evidence,
)
from .prompts import PromptError, builtin_template_set
from .waffle import waffle_method
from .zeroshot import check_views, predict
from .zpe import MAD_THRESHOLD, ZPEResult, zpe_weights

if TYPE_CHECKING:
    from .test_time import SwitchOutcome, SwitchSettings

BUILTIN_SETS = {"single template": "single", "7 templates": "simple", "80 templates": "openai"}
ZPE_SELECT = ("all", "mad")


@dataclass
class LabReport:
    """Everything a run shows; `result` and `comparison` only for labelled images."""
    images: Embedded
    class_names: list[str]
    slots: list[str]
    weighting: str
    weights: np.ndarray
    zpe: ZPEResult
    predicted: list[str]
    true: list[str] | None
    max_cosine: np.ndarray
    max_probability: np.ndarray
    result: EvalResult | None = None
    comparison: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scoring: Scoring | None = None    # how max_probability was made: the model's rule (softmax or sigmoid)
    context_length: int = 0           # tokens the model's text tower reads
    slot_tokens: list[int] = field(default_factory=list)     # per slot, its longest prompt in tokens
    warnings: list[str] = field(default_factory=list)        # one per prompt cut at the context length
    cuts: list[CutText] = field(default_factory=list)        # the same, as data (a page elides long texts)
    evidence: list[PairedDifference] = field(
        default_factory=list)  # per slot: ensemble with it minus without it
    compare_evidence: list[PairedDifference] = field(default_factory=list)  # per compared row: vs this run
    class_emb: np.ndarray | None = None     # [C, D] the run's class embeddings (its prompts, weighted)
    switches: SwitchOutcome | None = None   # test-time switches on: their outcome on these images
    prompt_source: dict | None = None       # a method's prompts (use "waffle": WaffleCLIP's method, params)

    def as_dict(self) -> dict:
        doc = {**(self.scoring.as_dict() if self.scoring is not None else {}),
               "images": len(self.images), "classes": self.class_names, "labelled": self.result is not None,
               "weighting": self.weighting, "cosine": cosine_meaning(self.weighting), "slots": self.slots,
               "weights": self.weights.tolist(), "zpe": self.zpe.as_dict()}
        if self.result is not None:
            doc.update(self.result.as_dict())
            doc["compare"] = [{
                "prompt_set": c.prompt_set, "weighting": c.weighting, "top1": c.top1, "top5": c.top5
            } for c in self.comparison]
            if self.result.cosines is not None and self.result.scoring is not None:
                doc["calibration"] = calibrate(self.result.cosines, self.result.true_idx,
                                               self.result.scoring).as_dict()
        if self.scoring is not None:  # the default "none of these" thresholds on this model's scale
            doc["none_of_these"] = default_none_rule(self.scoring, len(self.class_names)).as_dict()
        doc["predictions"] = [{"image": name, "predicted": predicted, "max_cosine": float(cos),
                               "max_probability": float(prob)}
                              for name, predicted, cos, prob in zip(self.images.names, self.predicted,
                                                                    self.max_cosine, self.max_probability)]
        doc.update(self.budget_and_evidence())
        if self.switches is not None:  # the run's own numbers above stay plain; these are the switched ones
            doc["switches"] = self.switches.as_dict()
        if self.prompt_source is not None:
            doc["prompt_source"] = self.prompt_source
        return doc

    def budget_and_evidence(self) -> dict:
        """Token counts per slot against the context, cut-prompt warnings, and the paired evidence."""
        doc = {
            "context_length": self.context_length, "slot_tokens": self.slot_tokens, "warnings": self.warnings
        }
        if self.result is not None:
            doc["per_template_contribution"] = [e and e.as_dict() for e in self.evidence]
            doc["compare_vs_current"] = [{"prompt_set": c.prompt_set, "weighting": c.weighting, **e.as_dict()}
                                         for c, e in zip(self.comparison, self.compare_evidence)]
        return doc


def run_lab(model, images: Embedded, templates: list[str] | None, descriptions: dict | None = None,
            use: str = "templates", weighting: str = "mean", *, zpe_select: str = "all",
            mad_threshold: float = MAD_THRESHOLD, switches: SwitchSettings | None = None,
            max_encodes: int = 0, image_limits: Limits = DEFAULT_LIMITS, progress: Progress | None = None,
            view_cache=None, **kwargs) -> LabReport:
    """Score a prompt set on embedded images (see `_score` for the arguments), then add the token
    budget (each slot's longest prompt against the model's context; a warning per cut prompt) and the
    evidence: each prompt's contribution to the ensemble and each compared row against this run, paired over
    the images.
    `zpe_select`: "all" prompts, or "mad": ZPE's MAD prompt selection at `mad_threshold`.
    `switches` (test_time.SwitchSettings), when on: the run's class embeddings go through
    test_time.apply_switches on the same images (views re-read from their files with `image_limits`, at
    most `max_encodes` image views, the max_view_encodes setting; TDA in the images' order), labelled:
    accuracy before and after with the paired evidence. The report's other numbers stay the plain ones.
    `view_cache` (test_time.ViewCache): views encoded before are not encoded again."""
    if zpe_select not in ZPE_SELECT:
        raise PromptError(f"unknown ZPE selection {zpe_select!r}: use all or mad")
    check_views(len(images), switches, max_encodes)  # refused before any prompt is encoded
    report = _score(model, images, templates, descriptions, use, weighting,
                    mad_threshold=mad_threshold if zpe_select == "mad" else None, **kwargs)
    texts = slot_texts(report.class_names, templates, descriptions, use)
    if use == "waffle":  # one draw (seed 0); their paper's accuracy is the mean over REPS draws
        report.prompt_source = waffle_method()
    report.context_length = model.context_length
    report.slot_tokens = longest(model, texts)
    report.cuts = cut_texts(model, [text for group in texts for text in group])
    report.warnings = [cut.message() for cut in report.cuts]
    if report.result is not None:
        report.evidence = template_evidence(report.result)
        current = report.result.predictions == report.result.true_idx
        report.compare_evidence = [paired_difference(row.result.predictions == row.result.true_idx, current)
                                   for row in report.comparison]
    if switches is not None and switches.on():
        from .test_time import apply_switches
        report.switches = apply_switches(
            model, list(report.images.paths), report.images.embeddings, report.class_emb, report.class_names,
            switches, true_idx=report.images.labels, limits=image_limits, max_encodes=max_encodes,
            progress=progress, cache=view_cache)
    return report


def _score(model, images: Embedded, templates: list[str] | None, descriptions: dict | None = None,
           use: str = "templates", weighting: str = "mean", *, labels: list[str] | None = None,
           template: int | None = None, compare_builtins: bool = False,
           reference: tuple[np.ndarray, str] | None = None, mad_threshold: float | None = None,
           limits: TextLimits = DEFAULT_TEXT_LIMITS) -> LabReport:
    """Score a prompt set on embedded images. `labels` name the classes of unlabelled images (a
    labelled source brings its own). `template`: the slot used by weighting "single" (from 0).
    `reference`: (embeddings, description) of generic images standing in for ZPE's pre-training sample.
    `mad_threshold`: ZPE's MAD prompt selection (None: all prompts). `limits`: the request's gate
    limits (classes up to max_texts; prompts up to max_prompts, the comparison rows within what is left)."""
    require_images(images)
    notes = []
    if images.labelled:
        class_names = images.class_names
        if labels:
            notes.append("the class names come from the folder's sub-folders; the labels given are not used")
    else:
        if not labels:
            require_classes(images, FOR_UNLABELLED)
        class_names = list(labels)
        if len(class_names) < 2:
            raise PromptError(f"one class name given ({class_names[0]!r}): give at least two, so the prompts "
                              "have something to tell apart")
    gate.check_count("Classes", len(class_names), limits.max_items, "max_texts")
    prompts = prompt_set(model, class_names, templates, descriptions, use, limits)
    notes += prompts.notes
    if weighting == "single" and not (template is not None and 0 <= template < len(prompts.slots)):
        raise PromptError(f"weighting 'single' needs a template number from 1 to {len(prompts.slots)}" + (
            " (the descriptions are the last one)" if DESCRIPTIONS_SLOT in prompts.slots else ""))
    ref = dict(reference_emb=reference[0], reference_name=reference[1]) if reference else {}
    ref["mad_threshold"] = mad_threshold
    if images.labelled:
        result = evaluate_prompt_set(images, prompts, model.scoring, weighting, template=template, **ref)
        rows = compare_with_builtins(model, images, templates, descriptions, use, prompts,
                                     mad_threshold=mad_threshold, limits=limits,
                                     notes=notes) if compare_builtins else []
        return LabReport(images, class_names, prompts.slots, weighting, result.weights, result.zpe,
                         [class_names[k]
                          for k in result.predictions], [class_names[k] for k in images.labels],
                         result.max_cosine, result.max_probability, result, rows, notes, model.scoring,
                         class_emb=class_embeddings(prompts.embeddings, result.weights, weighting))
    # ZPE on the scale alone: its logits are centred per prompt, so a sigmoid model's bias cancels.
    zpe = zpe_weights(images.embeddings, prompts.embeddings, model.logit_scale, **ref)
    weights = slot_weights(weighting, len(prompts.slots), prompts.mean_weights, template, zpe)
    class_emb = class_embeddings(prompts.embeddings, weights, weighting)
    max_cos, max_prob = open_set_scores(images.embeddings, class_emb, model.scoring)
    predicted = predict(images.embeddings, class_emb, class_names, model.scoring).top1()
    return LabReport(images, class_names, prompts.slots, weighting, weights, zpe, predicted, None,
                     max_cos, max_prob, notes=notes, scoring=model.scoring, class_emb=class_emb)


def compare_with_builtins(model, images: Embedded, templates, descriptions, use: str, current: PromptSet,
                          mad_threshold: float | None = None, limits: TextLimits = DEFAULT_TEXT_LIMITS,
                          notes: list[str] | None = None) -> list[Comparison]:
    """The current set beside the built-in template sets (and the descriptions alone), each with
    equal and ZPE weighting, all on the same image embeddings. A built-in set equal to the current
    one is not repeated. The rows share the request's max_prompts with the current set: a row that
    does not fit is left out and said in `notes`."""
    names = images.class_names
    sets = {"your set": current}
    left = limits.max_prompts - prompt_count(names, templates, descriptions,
                                             use) if limits.max_prompts > 0 else None
    candidates = [(label, builtin_template_set(key), None, "templates")
                  for label, key in BUILTIN_SETS.items()]
    if descriptions and use != "descriptions":
        candidates.append(("descriptions only", None, descriptions, "descriptions"))
    for label, builtin, described, source in candidates:
        if use == "templates" and builtin == templates:
            continue
        count = prompt_count(names, builtin, described, source)
        if left is not None and count > left:
            if notes is not None:
                notes.append(
                    f"compared set {label!r} left out: its {count:,} prompts are more than the "
                    f"{max(left, 0):,} left of the limit of {limits.max_prompts:,} prompts a run may encode "
                    f"(set with {gate.flag_and_variable('max_prompts')[0]})")
            continue
        try:
            sets[label] = prompt_set(model, names, builtin, described, source, limits)
        except PromptError:
            continue  # descriptions that miss a class cannot stand alone; the run's own notes say so
        left = None if left is None else left - count
    return compare(images.embeddings, images.labels, names, sets, model.scoring, mad_threshold=mad_threshold)
