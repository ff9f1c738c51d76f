"""Does the model bind attributes to their objects, or see a bag of words?

Two probes on the same images:

- The attribute x object grid (the zero-shot view of compositional classification, as CSP, Nayak et al.
  ICLR 2023, scores "a photo of {attribute} {object}" for every pair): every pair's prompt is scored
  against each image and turned into probabilities by the model's own rule over all A x O cells, so a
  picture of a red circle shows where its mass sits: on the right cell, on the right colour with the
  wrong shape, or spread over a row (the model read the colour and not the shape).

- The binding test of Yuksekgonul et al. (ICLR 2023, "When and why vision-language models behave like
  bags-of-words", ARO's VG-Attribution; code: https://github.com/mertyg/vision-language-models-are-bows,
  dataset_zoo/aro_datasets.py, VG_Attribution.evaluate_scores): an image of "a red circle and a blue
  square" is scored against that caption and against the one with the attributes swapped, "a blue circle
  and a red square". Both hold the same words, so a bag-of-words model cannot tell them apart. ARO's
  accuracy is the share of images whose true caption scores higher (their captions are [false, true] and
  np.argmax picks the first on a tie, so a tie counts as a loss: `win_rate` here, ties also counted
  apart). The p-value is a two-sided sign test of wins against losses (ties left out), i.e. McNemar's
  exact test (evaluate.mcnemar_p), against "the model picks either caption half the time".
  Differs from ARO (the JSON's "differs"): ARO's captions come from Visual Genome with each image cropped
  to the two objects; here a template and the user's images (or a folder per binding).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits
from explorer.inputs.sources import Embedded

from .evaluate import mcnemar_p
from .prompts import PromptError

GRID_TEMPLATE = "a photo of a {attribute} {object}."
BINDING_TEMPLATE = "a photo of a {a1} {o1} and a {a2} {o2}."
GRID_SOURCE = ("Nayak et al. 2023, Learning to Compose Soft Prompts for Compositional Zero-Shot Learning "
               "(CSP, ICLR), https://github.com/BatsResearch/csp: zero-shot scoring of every "
               "attribute-object pair")
BINDING_SOURCE = ("Yuksekgonul et al. 2023, When and why vision-language models behave like bags-of-words "
                  "(ICLR), https://github.com/mertyg/vision-language-models-are-bows "
                  "dataset_zoo/aro_datasets.py VG_Attribution.evaluate_scores")
BINDING_DIFFERS = ("captions from a template (or folder names) instead of Visual Genome's; images not "
                   "cropped to the two objects; ties reported apart (ARO counts them as losses, as win_rate "
                   "does)")
_BINDING = re.compile(r"(?:an?\s+)?(\S+)\s+(\S+)\s+(?:and|&)\s+(?:an?\s+)?(\S+)\s+(\S+)", re.IGNORECASE)


def _fill(template: str, **slots: str) -> str:
    for key, value in slots.items():
        template = template.replace("{" + key + "}", value)
    return template


@dataclass
class AttributeGrid:
    names: list[str]
    attributes: list[str]
    objects: list[str]
    cosines: np.ndarray          # [N, A, O]
    probabilities: np.ndarray    # [N, A, O] by the model's rule over all A*O cells
    template: str = GRID_TEMPLATE
    scoring: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"method": "attribute x object grid", "source": GRID_SOURCE,
                "params": {"attributes": self.attributes, "objects": self.objects, "template": self.template},
                **self.scoring, "names": self.names, "cosines": self.cosines.tolist(),
                "probabilities": self.probabilities.tolist()}


def _words(values: list[str], what: str, limits: TextLimits) -> list[str]:
    """Distinct, tidied entries (case-insensitive), at least one; gate.Refused past the limits."""
    kept, seen = [], set()
    for value in gate.within(list(values), what, limits):
        value = " ".join(value.split())
        if value and value.casefold() not in seen:
            seen.add(value.casefold())
            kept.append(value)
    if not kept:
        raise PromptError(f"{what}: give at least one")
    return kept


def attribute_grid(model, images: Embedded, attributes: list[str], objects: list[str], *,
                   template: str = GRID_TEMPLATE, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> AttributeGrid:
    """Every attribute x object prompt scored against every image (see the module)."""
    attributes, objects = _words(attributes, "Attributes", limits), _words(objects, "Objects", limits)
    if "{attribute}" not in template or "{object}" not in template:
        raise PromptError(f"grid template {template!r} needs both {{attribute}} and {{object}}")
    gate.prompts(len(attributes) * len(objects),
                 f"Prompts ({len(attributes)} attributes x {len(objects)} objects)", limits)
    texts = [_fill(template, attribute=a, object=o) for a in attributes for o in objects]
    cosines = images.embeddings @ model.encode_texts(texts).T                       # [N, A*O]
    shape = (len(images), len(attributes), len(objects))
    probabilities = model.scoring.probabilities(cosines).reshape(shape)
    return AttributeGrid(list(images.names), attributes, objects, cosines.reshape(shape), probabilities,
                         template, model.scoring.as_dict())


@dataclass(frozen=True)
class Binding:
    a1: str
    o1: str
    a2: str
    o2: str

    def text(self, template: str = BINDING_TEMPLATE) -> str:
        return _fill(template, a1=self.a1, o1=self.o1, a2=self.a2, o2=self.o2)

    def swapped(self) -> Binding:
        """The same words with the attributes swapped: "a blue circle and a red square"."""
        return Binding(self.a2, self.o1, self.a1, self.o2)

    def __str__(self) -> str:
        return f"{self.a1} {self.o1} and {self.a2} {self.o2}"


def parse_binding(text: str) -> Binding:
    """"red circle and blue square" (also "a red circle and a blue square", underscores for spaces: a
    folder name) -> Binding; PromptError otherwise, or when swapping the attributes changes nothing."""
    tidy = " ".join((text or "").replace("_", " ").split())
    match = _BINDING.fullmatch(tidy)
    if not match:
        raise PromptError(f"binding {tidy!r}: write it as 'red circle and blue square' (attribute object and "
                          "attribute object)")
    binding = Binding(*match.groups())
    if binding.a1.casefold() == binding.a2.casefold() or binding.o1.casefold() == binding.o2.casefold():
        raise PromptError(f"binding {tidy!r}: the two attributes and the two objects must differ, or "
                          "swapping the attributes gives the same caption")
    return binding


@dataclass
class BindingReport:
    names: list[str]
    bindings: list[Binding]      # [N] each image's true binding
    true_cosine: np.ndarray      # [N]
    swapped_cosine: np.ndarray   # [N]
    wins: np.ndarray             # [N] bool: the true caption scored higher
    win_rate: float              # wins / N (ties lose, as in ARO)
    ties: int
    p_value: float               # mcnemar_p(wins, losses)
    template: str = BINDING_TEMPLATE
    notes: list[str] = field(default_factory=list)

    @property
    def losses(self) -> int:
        return int(len(self.wins) - self.wins.sum() - self.ties)

    def as_dict(self) -> dict:
        return {"method": "attribute binding (swapped attributes)", "source": BINDING_SOURCE,
                "differs": BINDING_DIFFERS, "params": {"template": self.template},
                "names": self.names, "bindings": [str(b) for b in self.bindings],
                "true_captions": [b.text(self.template) for b in self.bindings],
                "swapped_captions": [b.swapped().text(self.template) for b in self.bindings],
                "true_cosine": self.true_cosine.tolist(), "swapped_cosine": self.swapped_cosine.tolist(),
                "wins": self.wins.tolist(), "win_rate": self.win_rate, "won": int(self.wins.sum()),
                "lost": self.losses, "ties": self.ties, "p_value": self.p_value, "notes": self.notes}


def image_bindings(images: Embedded, binding: Binding | None) -> list[Binding]:
    """The binding of each image: `binding` for all, else its class folder's (PromptError if none)."""
    if binding is not None:
        return [binding] * len(images)
    if not images.labelled:
        raise PromptError("give the binding the images show ('red circle and blue square'), or a labelled "
                          "folder whose class folders are named like red_circle_and_blue_square")
    per_class = [parse_binding(folder) for folder in images.class_folders or images.class_names]
    return [per_class[k] for k in images.labels]


def binding_test(model, images: Embedded, binding: Binding | None, *, template: str = BINDING_TEMPLATE,
                 limits: TextLimits = DEFAULT_TEXT_LIMITS) -> BindingReport:
    """Each image's true caption against its attribute-swapped caption (see the module)."""
    if any("{" + slot + "}" not in template for slot in ("a1", "o1", "a2", "o2")):
        raise PromptError(f"binding template {template!r} needs {{a1}} {{o1}} {{a2}} {{o2}}")
    bindings = image_bindings(images, binding)
    unique = list(dict.fromkeys(bindings))
    texts = [b.text(template) for b in unique] + [b.swapped().text(template) for b in unique]
    gate.prompts(len(texts), "Binding prompts", limits)
    gate.within(texts, "Binding prompts", limits, noun="prompt")
    vectors = model.encode_texts(texts)
    row = {b: i for i, b in enumerate(unique)}
    index = np.asarray([row[b] for b in bindings], dtype=np.int64)
    true = np.einsum("nd,nd->n", images.embeddings, vectors[index])
    swapped = np.einsum("nd,nd->n", images.embeddings, vectors[len(unique) + index])
    wins, ties = true > swapped, int(np.sum(true == swapped))
    losses = int(np.sum(true < swapped))
    return BindingReport(list(images.names), bindings, true, swapped, wins,
                         float(wins.mean()) if len(wins) else 0.0, ties, mcnemar_p(int(wins.sum()), losses),
                         template)
