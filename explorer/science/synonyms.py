"""Synonym swap: does another name for a class classify it better? (Parashar et al., CVPR 2024.)

"The Neglected Tails in Vision-Language Models" (Parashar, Lin, Liu, Ramanan, Kong, Li; code:
https://github.com/shubhamprshr27/NeglectedTailsVLM) finds that a class's zero-shot accuracy follows how
often its name occurs in the pre-training captions, and that swapping a rare name for its most frequent
synonym helps (REAL-Prompt). Their code counts each alternate name's LAION captions and keeps the most
frequent one (analysis/laion/laion_parser.py, `find_most_common_name`, RELAXED matching: a more frequent
alternate replaces the name unless its words are a strict subset of the official name's), then prompts
with it (utils/prompt_templates.py, `prompt_maker`, name_type 'most_common_name').

Here, offline, for each class the candidates are its own name, the names typed for it, and (optionally)
its WordNet synonyms from the shipped list (assets/vocabulary/synonyms.tsv.gz: WordNet 3.0 nouns, the
other names of their first three senses; synonyms.SOURCE.md). Each candidate is tried in place of the
class name, every other class kept, with the same templates (open_clip's ensembling):

- labelled images: the top-1 accuracy over all images and the class's recall with the class renamed,
  and the paired difference against the original name (McNemar + bootstrap); best = highest accuracy,
  ties keep the original name;
- unlabelled images: ZPE's score (explorer.science.zpe.zpe_scores) with each renamed classifier as one
  "prompt" slot: the bias-corrected mean max-logit, higher = the images sit more confidently in some
  class under that naming; best = highest score, ties keep the original.

`frequent` is REAL-Prompt's own choice without any image: the candidate `most_common_name` picks (a
transcription of the authors' rule) with wordfreq's English Zipf frequency standing in for the LAION
caption counts (differs: a general-English proxy for pre-training frequency; say so where shown).
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits
from explorer.inputs.sources import Embedded

from .evaluate import PairedDifference, paired_difference
from .prompts import PromptError, parse_labels
from .zeroshot import ensemble, prompt_embeddings
from .zpe import zpe_scores

SYNONYMS_FILE = Path(__file__).resolve().parents[2] / "assets" / "vocabulary" / "synonyms.tsv.gz"
SOURCE = ("Parashar et al. 2024, The Neglected Tails in Vision-Language Models (CVPR), "
          "https://github.com/shubhamprshr27/NeglectedTailsVLM analysis/laion/laion_parser.py "
          "find_most_common_name, utils/prompt_templates.py prompt_maker")
DIFFERS = ("frequency from wordfreq's general English Zipf scale instead of LAION caption counts; every "
           "candidate is also scored on the images (accuracy, or ZPE's score when unlabelled)")
SOURCES = ("folder", "typed", "WordNet")


@lru_cache(maxsize=1)
def _table() -> dict[str, list[str]]:
    with gzip.open(SYNONYMS_FILE, "rt", encoding="utf-8") as handle:
        return {fields[0]: fields[1:] for fields in (line.rstrip("\n").split("\t") for line in handle)}


def _key(name: str) -> str:
    return " ".join((name or "").replace("_", " ").split()).lower()


def synonyms_of(name: str, limit: int = 8) -> list[str]:
    """The shipped WordNet synonyms of `name` (case-insensitive, underscores as spaces), commonest sense
    first, at most `limit`; [] for a name WordNet does not list as a noun."""
    return _table().get(_key(name), [])[:max(limit, 0)]


def word_frequency(name: str) -> float | None:
    """wordfreq's English Zipf frequency of `name` (log10 per billion words; 0 = not seen), a stand-in for
    its pre-training frequency; None when wordfreq is not installed."""
    try:
        from wordfreq import zipf_frequency
    except ImportError:
        return None
    return float(zipf_frequency(name, "en"))


def _clean(text: str) -> str:
    """The authors' clean_text (laion_parser.py)."""
    return text.strip().replace("'", "").replace('"', "").replace("-", " ").replace("_", " ").replace(
        "  ", " ").lower()


def most_common_name(official: str, frequencies: dict[str, float], strategy: str = "RELAXED") -> str:
    """REAL-Prompt's choice: the authors' find_most_common_name (laion_parser.py) over {name: frequency}
    (which holds `official`). Their function reads an undefined `official_name` (a slip: the class's name,
    metrics['name'], is meant); here it is `official`."""
    ordered = sorted(frequencies.items(), key=lambda item: item[1], reverse=True)
    best, best_freq = official, frequencies.get(official, frequencies.get(_clean(official), 0.0))
    official_words = set(re.sub(r"[^\w\s]", "", _clean(official)).split())
    for name, freq in ordered:
        words = set(re.sub(r"[^\w\s]", "", _clean(name)).split())
        if best_freq < freq:
            if strategy == "STRICT" or words == official_words or not words.issubset(official_words):
                best = name
            best_freq = freq
    return best


def parse_typed_synonyms(text: str, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> dict[str, list[str]]:
    """"cat: kitty, feline\\ndog: puppy" -> {"cat": ["kitty", "feline"], "dog": ["puppy"]}; PromptError
    for a line without "class:"; within `limits` (gate)."""
    text = gate.text(text, "Synonyms", limits)
    lines = [line for line in text.splitlines() if line.strip()]
    gate.check_count("Synonyms: lines", len(lines), limits.max_items, "max_texts")
    typed: dict[str, list[str]] = {}
    for number, line in enumerate(lines, start=1):
        name, colon, rest = line.partition(":")
        name = " ".join(name.split())
        if not colon or not name:
            raise PromptError(
                f"synonyms line {number}: write it as 'class: name, other name' ({line[:60]!r})")
        typed.setdefault(name, []).extend(parse_labels(rest, limits).labels)
    return typed


@dataclass
class NameScore:
    class_name: str
    candidate: str
    source: str                       # "folder" | "typed" | "WordNet"
    original: bool = False            # the class's own name
    zipf: float | None = None
    accuracy: float | None = None     # labelled: top-1 over all images with this class renamed
    class_recall: float | None = None  # labelled: this class's recall with it renamed
    evidence: PairedDifference | None = None   # labelled: vs the original name
    zpe_score: float | None = None    # unlabelled: ZPE's score of the renamed classifier

    def as_dict(self) -> dict:
        return {"class": self.class_name, "candidate": self.candidate, "source": self.source,
                "original": self.original, "zipf": self.zipf, "accuracy": self.accuracy,
                "class_recall": self.class_recall, "zpe_score": self.zpe_score,
                "evidence": self.evidence.as_dict() if self.evidence else None}


@dataclass
class SynonymReport:
    classes: list[str]
    scores: dict[str, list[NameScore]]   # class -> its candidates, the original first
    best: dict[str, str]                 # class -> the best-scoring candidate
    labelled: bool
    method: str
    frequent: dict[str, str] | None = None   # class -> REAL-Prompt's pick by frequency (None: no wordfreq)
    templates: list[str] = field(default_factory=list)
    wordnet: bool = True
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"method": "synonym swap (REAL-Prompt)", "source": SOURCE, "differs": DIFFERS,
                "params": {"templates": self.templates, "wordnet": self.wordnet,
                           "score": "accuracy" if self.labelled else "ZPE score"},
                "scoring": self.method, "labelled": self.labelled, "classes": self.classes,
                "scores": {c: [s.as_dict() for s in rows] for c, rows in self.scores.items()},
                "best": self.best, "frequent": self.frequent, "notes": self.notes}


def candidate_names(classes: list[str], typed: dict[str, list[str]], *, wordnet: bool, original: str,
                    limits: TextLimits = DEFAULT_TEXT_LIMITS) -> dict[str, list[tuple[str, str]]]:
    """class -> [(candidate, source)], the class's own name first (source `original`), then the typed
    names, then WordNet's; repeats (case-insensitive) dropped. PromptError for typed names of a class
    that is not one of `classes`."""
    by_key = {c.casefold(): c for c in classes}
    unknown = [name for name in typed if name.casefold() not in by_key]
    if unknown:
        raise PromptError(f"synonyms given for {gate.listed(unknown)}, which is not one of the classes "
                          f"({gate.listed(classes)})")
    typed_for = {by_key[name.casefold()]: names for name, names in typed.items()}
    out = {}
    for name in classes:
        rows = [(name, original)] + [(t, "typed") for t in gate.items(typed_for.get(name, []), "synonyms",
                                                                      limits)[0]]
        rows += [(w, "WordNet") for w in synonyms_of(name)] if wordnet else []
        seen, kept = set(), []
        for candidate, source in rows:
            candidate = " ".join(candidate.split())
            if candidate and candidate.casefold() not in seen:
                seen.add(candidate.casefold())
                kept.append((candidate, source))
        out[name] = kept
    return out


def _classes(images: Embedded, classes: list[str] | None) -> list[str]:
    if images.labelled:
        if classes and len(classes) != len(images.class_names):
            raise PromptError(f"{len(classes)} class names for {len(images.class_names)} class folders: give "
                              "one name per folder, in folder order, or none to use the folder names")
        return list(classes) if classes else list(images.class_names)
    if not classes or len(classes) < 2:
        raise PromptError("unlabelled images: give at least two class names to rename")
    return list(classes)


def _labelled_scores(rows: list[NameScore], c: int, base: np.ndarray, cand: np.ndarray, true: np.ndarray,
                     scoring) -> None:
    """Fill accuracy, class recall and evidence of class c's candidates (cand: [N, K] their cosines)."""
    base_correct = scoring.probabilities(base).argmax(axis=1) == true
    in_class = true == c
    for k, row in enumerate(rows):
        cosines = base.copy()
        cosines[:, c] = cand[:, k]
        correct = scoring.probabilities(cosines).argmax(axis=1) == true
        row.accuracy = float(correct.mean())
        row.class_recall = float(correct[in_class].mean()) if in_class.any() else None
        row.evidence = None if row.original else paired_difference(correct, base_correct)


def _zpe_scores(rows: list[NameScore], c: int, images: np.ndarray, classifier: np.ndarray,
                cand_vectors: np.ndarray, scale: float) -> None:
    """ZPE's score of each renamed classifier: slot k = every class as it was, class c as candidate k."""
    slots = np.repeat(classifier[:, None, :], len(rows), axis=1)                  # [C, K, D]
    slots[c] = cand_vectors
    for row, score in zip(rows, zpe_scores(images, slots, scale)):
        row.zpe_score = float(score)


def _pick(rows: list[NameScore], labelled: bool) -> str:
    values = [row.accuracy if labelled else row.zpe_score for row in rows]
    return rows[int(np.argmax(values))].candidate   # the first maximum: the original on a tie


def synonym_swap(model, images: Embedded, classes: list[str] | None, typed: dict[str, list[str]],
                 templates: list[str], *, wordnet: bool = True,
                 limits: TextLimits = DEFAULT_TEXT_LIMITS) -> SynonymReport:
    """Score every candidate name of every class on `images` (see the module)."""
    classes = _classes(images, classes)
    names = candidate_names(classes, typed or {}, wordnet=wordnet,
                            original="folder" if images.labelled else "typed", limits=limits)
    flat = [candidate for rows in names.values() for candidate, _ in rows]
    gate.prompts(len(flat) * len(templates), f"Prompts ({len(flat)} names x {len(templates)} templates)",
                 limits)
    vectors = ensemble(prompt_embeddings(model, flat, templates, limits))         # [M, D]
    starts = np.cumsum([0] + [len(rows) for rows in names.values()])
    classifier = vectors[starts[:-1]]                                           # the original names
    base = images.embeddings @ classifier.T
    scores, best, frequent = {}, {}, {}
    for c, name in enumerate(classes):
        own = vectors[starts[c]:starts[c + 1]]
        rows = [NameScore(name, cand, source, k == 0, word_frequency(cand))
                for k, (cand, source) in enumerate(names[name])]
        if images.labelled:
            _labelled_scores(rows, c, base, images.embeddings @ own.T, images.labels, model.scoring)
        else:
            _zpe_scores(rows, c, images.embeddings, classifier, own, model.scoring.scale)
        scores[name], best[name] = rows, _pick(rows, images.labelled)
        if all(row.zipf is not None for row in rows):
            frequent[name] = most_common_name(name, {row.candidate: row.zipf for row in rows})
    return SynonymReport(classes, scores, best, images.labelled, model.scoring.explain(),
                         frequent if len(frequent) == len(classes) else None, list(templates), wordnet)
