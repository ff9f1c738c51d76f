"""Class descriptions in the CuPL style, and how they join the templates to make a class's prompts.

CuPL (Pratt et al., ICCV 2023, "What does a platypus look like?") describes each class in a few
sentences ("A platypus looks like a beaver with a duck's bill.") and classifies with the average
of their embeddings. Here the descriptions come from a JSON file or typed text, no language model:

    {"platypus": ["A platypus looks like a beaver with a duck's bill.", "..."], "hippo": [...]}

The rule for combining them with templates (`prompt_set`), so every prompt set is a [C, S, D]
tensor of "slots" that ZPE can weight and the per-template table can score:
  - templates:    one slot per template (open_clip's way).
  - descriptions: one slot, "descriptions": per class, the normalised mean of its sentences' embeddings.
  - both:         the template slots plus the descriptions slot. With equal ("mean") weighting the
                  descriptions slot counts as much as all the templates together (weight 1/2, each
                  template 1/(2T)), so 80 templates do not drown a handful of sentences; ZPE instead
                  scores the descriptions slot like any other prompt.
  - pooled:       CuPL+e, the paper's "CuPL + standard" classifier: one slot, "templates + descriptions
                  (pooled)": per class, ONE list of every filled template and every sentence, each text
                  weighted equally: the normalised mean of the normalised embeddings of the whole list
                  (sarahpratt/CuPL, classify_imagenet.py: `zeroshot_classifier_gpt(..., use_both=True)`
                  extends the template prompts with the sentences, normalises each embedding, takes
                  the mean and renormalises). With 80 templates and 10 sentences, the sentences weigh
                  10/90 of the class embedding, not 1/2 as in "both".
  - waffle:       WaffleCLIP (Roth et al., ICCV 2023): random descriptors, no descriptions and no
                  templates needed: one slot, "WaffleCLIP random descriptors (pooled)": per class, the
                  normalised mean of the unit embeddings of its 2 x `waffle_count` prompts ("A photo of
                  a {class}, which has {random words | random characters}."), one random set shared by
                  all classes, drawn with `seed` (explorer/science/waffle.py: how, and what differs).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits

from .prompts import PromptError, build_prompts, fill, read_text
from .waffle import COUNT as WAFFLE_COUNT
from .waffle import waffle_count_of, waffle_descriptors

DESCRIPTIONS_SLOT = "descriptions"
USES = ("templates", "descriptions", "both", "pooled", "waffle")
POOLED_SLOT = "templates + descriptions (pooled)"
WAFFLE_SLOT = "WaffleCLIP random descriptors (pooled)"
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "descriptions"


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", name).strip().casefold()


def parse_descriptions(text: str | bytes, source: str = "descriptions",
                       limits: TextLimits = DEFAULT_TEXT_LIMITS) -> dict[str, list[str]]:
    """JSON text {class: [sentence, ...]} -> the same mapping, checked and tidied. Only ever JSON:
    text that is not JSON is an error, never a path.

    Sentences are stripped; blank ones are dropped. Raises PromptError naming the problem: not JSON,
    not an object, a class whose value is not a list of strings, or a class with no sentence left;
    gate.Refused past `limits` (bytes and depth before parsing; max_texts classes, max_texts
    sentences per class, max_text_chars a class name or a sentence).
    """
    try:
        data = gate.json_document(text, source, limits)
    except gate.Refused:
        raise
    except ValueError as exc:
        raise PromptError(str(exc)) from None
    if not isinstance(data, dict):
        raise PromptError(f"{source}: expected a JSON object mapping each class to a list of sentences, "
                          f"got a {type(data).__name__}")
    gate.within([str(name) for name in data], f"{source}: classes", limits, noun="class")
    out: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for name, sentences in data.items():
        label = re.sub(r"\s+", " ", str(name)).strip()
        if not label:
            raise PromptError(f"{source}: a class name is blank")
        if _key(label) in seen:
            raise PromptError(f"{source}: class {label!r} appears twice (also as {seen[_key(label)]!r})")
        seen[_key(label)] = label
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise PromptError(f"{source}: the value for {label!r} must be a list of sentences (strings)")
        gate.within(sentences, f"{source}: sentences for {label[:80]!r}", limits, noun="sentence")
        kept = [re.sub(r"\s+", " ", s).strip() for s in sentences]
        kept = [s for s in kept if s]
        if not kept:
            raise PromptError(f"{source}: {label!r} has no sentences; give at least one or remove the class")
        out[label] = kept
    if not out:
        raise PromptError(f"{source}: no classes described")
    return out


def read_descriptions_file(path: str | Path,
                           limits: TextLimits = DEFAULT_TEXT_LIMITS) -> dict[str, list[str]]:
    """A descriptions JSON file: an upload, or the command line's own --descriptions. Its size is
    checked before it is read (gate.read_text_file)."""
    text = read_text(path, "descriptions", limits)
    return parse_descriptions(text, source=Path(path).name, limits=limits)


def load_descriptions(source: str | Path, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> dict[str, list[str]]:
    """The command line's --descriptions (the local user's own argument): a path to a JSON file, or
    the JSON text itself. Pages never call this: a visitor's text is parsed as JSON only
    (parse_descriptions) and files come as uploads (read_descriptions_file)."""
    text = str(source)
    if not text.lstrip().startswith("{"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise PromptError(f"descriptions: {text!r} is neither JSON text nor an existing file")
        return read_descriptions_file(path, limits)
    return parse_descriptions(text, limits=limits)


def for_labels(descriptions: dict[str, list[str]], labels: list[str]) -> tuple[list[list[str]], list[str]]:
    """The sentences of each label, in label order (names matched ignoring case and spacing).

    Returns (sentences per label, notes). Raises PromptError listing every label without a description;
    classes described but not among the labels are only noted.
    """
    by_key = {_key(name): sentences for name, sentences in descriptions.items()}
    missing = [label for label in labels if _key(label) not in by_key]
    if missing:
        raise PromptError("descriptions: no sentences for " + ", ".join(repr(m) for m in missing)
                          + f" (described: {', '.join(repr(n) for n in descriptions)})")
    wanted = {_key(label) for label in labels}
    extra = [name for name in descriptions if _key(name) not in wanted]
    notes = [f"descriptions for classes not in the labels were ignored: {', '.join(extra)}"] if extra else []
    return [by_key[_key(label)] for label in labels], notes


def pooled_embeddings(model, texts_per_class: list[list[str]]) -> np.ndarray:
    """[C, 1, D]: per class, the normalised mean of the (normalised) embeddings of its texts, each
    text counting once: CuPL's way of turning a list of texts into a class embedding."""
    flat = model.encode_texts([t for texts in texts_per_class for t in texts])
    out, start = [], 0
    for texts in texts_per_class:
        mean = flat[start:start + len(texts)].mean(axis=0)
        out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        start += len(texts)
    return np.stack(out)[:, None, :].astype(np.float32)


@dataclass
class PromptSet:
    """The prompts of every class as slots: embeddings [C, S, D], slot names [S], and the weights
    equal ("mean") weighting gives the slots (summing to 1). `texts` [S]: every text that feeds
    each slot, over all classes (for token counts and cut warnings)."""
    slots: list[str]
    embeddings: np.ndarray
    mean_weights: np.ndarray
    notes: list[str]
    texts: list[list[str]] = field(default_factory=list)


def slot_texts(labels: list[str], templates: list[str] | None, descriptions: dict[str, list[str]] | None,
               use: str, *, waffle_count: int = WAFFLE_COUNT, seed: int = 0) -> list[list[str]]:
    """Per prompt slot of `prompt_set(..., use)`, every text that feeds it over all classes (for
    token counts): a template's filled prompts, the descriptions' sentences, or the whole pool
    (use "waffle": the WaffleCLIP prompts of `waffle_count` and `seed`)."""
    if use == "waffle":
        built = waffle_descriptors(labels, count=waffle_count, seed=seed)
        return [[text for label in labels for text in built[label]]]
    sentences = for_labels(descriptions, labels)[0] if use != "templates" else []
    said = [s for group in sentences for s in group]
    filled = [[fill(t, label) for label in labels] for t in templates or []]
    if use == "pooled":
        return [[text for group in filled for text in group] + said]
    return (filled if use != "descriptions" else []) + ([said] if use != "templates" else [])


def prompt_count(labels: list[str], templates: list[str] | None, descriptions: dict[str, list[str]] | None,
                 use: str, *, waffle_count: int = WAFFLE_COUNT) -> int:
    """How many texts prompt_set(..., use) encodes (before the cache), counted without building them."""
    if use == "waffle":
        return waffle_count_of(labels, waffle_count)
    count = len(labels) * len(templates or []) if use != "descriptions" else 0
    if use != "templates" and descriptions:
        by_key = {_key(name): len(sentences) for name, sentences in descriptions.items()}
        count += sum(by_key.get(_key(label), 0) for label in labels)
    return count


def waffle_set(model, labels: list[str], templates: list[str] | None = None, *,
               waffle_count: int = WAFFLE_COUNT, seed: int = 0,
               limits: TextLimits = DEFAULT_TEXT_LIMITS) -> PromptSet:
    """prompt_set(use="waffle"): one pooled slot of WaffleCLIP's random descriptor prompts per class.
    gate.Refused, before the descriptors are drawn or encoded, past `limits.max_prompts`."""
    if waffle_count < 1:
        raise PromptError(f"WaffleCLIP needs at least one descriptor pair per class, not {waffle_count}")
    gate.within(labels, "WaffleCLIP classes", limits, noun="class")
    gate.prompts(waffle_count_of(labels, waffle_count), f"WaffleCLIP prompts for {len(labels):,} classes "
                 f"({2 * waffle_count} each)", limits)
    built = waffle_descriptors(labels, count=waffle_count, seed=seed)
    texts = [[text for label in labels for text in built[label]]]
    notes = [f"WaffleCLIP: {2 * waffle_count} random-descriptor prompts per class (seed {seed}), "
             "one set shared by all classes"]
    if templates:
        notes.append("WaffleCLIP uses its own prompt format (\"A photo of a {class}, which has ...\"): "
                     "the templates were not used")
    embeddings = pooled_embeddings(model, [built[label] for label in labels])
    return PromptSet([WAFFLE_SLOT], embeddings, np.ones(1, dtype=np.float32), notes, texts)


def prompt_set(model, labels: list[str], templates: list[str] | None = None,
               descriptions: dict[str, list[str]] | None = None, use: str = "templates",
               limits: TextLimits = DEFAULT_TEXT_LIMITS, *, waffle_count: int = WAFFLE_COUNT,
               seed: int = 0) -> PromptSet:
    """Encode the prompts of `labels` according to `use` (templates | descriptions | both | pooled |
    waffle); see the module docstring for the rule. Text goes through the model's cache, so re-use is
    free. gate.Refused, before anything is encoded, when that is more than `limits.max_prompts` texts.
    `waffle_count`, `seed`: use "waffle" only (WaffleCLIP's descriptor pairs per class, its draw)."""
    if use not in USES:
        raise PromptError(f"unknown prompt source {use!r}: use one of {', '.join(USES)}")
    if use == "waffle":
        return waffle_set(model, labels, templates, waffle_count=waffle_count, seed=seed, limits=limits)
    if use != "templates" and not descriptions:
        raise PromptError(f"prompt source {use!r} needs class descriptions")
    if use != "descriptions" and not templates:
        raise PromptError(f"prompt source {use!r} needs at least one template")
    gate.prompts(prompt_count(labels, templates, descriptions, use), f"Prompts for {len(labels):,} classes",
                 limits)
    parts, slots, notes = [], [], []
    sentences = None
    if use != "templates":
        sentences, notes = for_labels(descriptions, labels)
    texts = slot_texts(labels, templates, descriptions, use)
    if use == "pooled":
        pools = [[fill(t, label) for t in templates] + said for label, said in zip(labels, sentences)]
        return PromptSet([POOLED_SLOT], pooled_embeddings(model, pools), np.ones(1, dtype=np.float32), notes,
                         texts)
    if use in ("templates", "both"):
        flat = model.encode_texts(build_prompts(labels, templates))
        parts.append(flat.reshape(len(labels), len(templates), -1))
        slots += list(templates)
    if use in ("descriptions", "both"):
        parts.append(pooled_embeddings(model, sentences))
        slots.append(DESCRIPTIONS_SLOT)
    embeddings = np.concatenate(parts, axis=1)
    if use == "both":
        n = len(templates)
        mean_weights = np.array([0.5 / n] * n + [0.5], dtype=np.float32)
    else:
        mean_weights = np.full(len(slots), 1.0 / len(slots), dtype=np.float32)
    return PromptSet(slots, embeddings, mean_weights, notes, texts)
