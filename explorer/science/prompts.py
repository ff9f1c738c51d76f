"""Template sets and class-name parsing: turning what a person typed into prompts.

Templates use `{}` where the class name goes, as in open_clip and OpenAI's CLIP notebooks.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "templates"
SINGLE_TEMPLATE = "a photo of a {}."


class PromptError(ValueError):
    """What the user typed cannot be used; the message says which part and why."""


@dataclass
class ParsedLabels:
    labels: list[str]
    notes: list[str] = field(default_factory=list)  # what was dropped, said plainly


def parse_labels(text: str, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> ParsedLabels:
    """Labels one per line, or comma-separated on one line. Blanks and duplicates are removed
    (case-insensitively, first spelling kept) and each removal is reported. Within `limits` (the
    request's gate.TextLimits): a box over max_text_kb is Refused; a label over max_text_chars and
    the labels past max_texts are left out, each said in a note."""
    text = gate.text(text, "Labels", limits)
    lines = [line for line in (text or "").splitlines()]
    nonblank_lines = [line for line in lines if line.strip()]
    raw = nonblank_lines if len(nonblank_lines) > 1 else (text or "").replace("\n", ",").split(",")
    labels: list[str] = []
    seen: set[str] = set()
    blanks, duplicates = 0, []
    for item in raw:
        label = re.sub(r"\s+", " ", item).strip()
        if not label:
            blanks += 1
            continue
        key = label.casefold()
        if key in seen:
            duplicates.append(label)
            continue
        seen.add(key)
        labels.append(label)
    notes = []
    if blanks and labels:
        notes.append(f"ignored {blanks} blank entr{'y' if blanks == 1 else 'ies'}")
    if duplicates:
        notes.append(f"removed duplicate{'s' if len(duplicates) > 1 else ''}: {gate.listed(duplicates)}")
    labels, left_out = gate.items(labels, "labels", limits, noun="label")
    return ParsedLabels(labels, notes + left_out)


def check_templates(templates: list[str], where: str = "row",
                    limits: TextLimits = DEFAULT_TEXT_LIMITS) -> list[str]:
    """The templates, unchanged, if every one contains {} (where the label goes) and there is at
    least one; else PromptError naming each offender by its number from 1 (`where`: row or line).
    More than max_texts templates, or one longer than max_text_chars: gate.Refused."""
    gate.within(templates, "Templates", limits, noun=where)
    bad = [f"{where} {number}: {t!r}" for number, t in enumerate(templates, start=1) if "{}" not in t]
    if bad:
        raise PromptError("every template needs {} where the label goes; these have none: " +
                          gate.listed(bad))
    if not templates:
        raise PromptError("the template list is empty: add at least one line such as 'a photo of a {}.'")
    return templates


def check_new_template(text: str, number: int, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> str:
    """A template about to be added as row `number` (from 1), spaces tidied; PromptError naming that
    row when it is empty or has no {}; gate.Refused past max_text_chars."""
    text = " ".join((text or "").split())
    if not text:
        raise PromptError(f"row {number} (the new one) is empty: type a template such as "
                          "'a drawing of a {}.'")
    gate.check_count("Templates", number, limits.max_items, "max_texts", "entries")
    if len(text) > limits.max_item_chars:
        raise gate.Refused(gate.limit_text(f"Templates: row {number} (the new one)", len(text),
                                           limits.max_item_chars, "max_text_chars", "characters"))
    if "{}" not in text:
        raise PromptError(f"row {number} (the new one), {text!r}, has no {{}} where the label goes: write "
                          "it like 'a drawing of a {}.'")
    return text


def parse_templates(text: str, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> list[str]:
    """One template per line; blank lines and lines starting with '#' are skipped. Each must contain {}.
    Within `limits` (gate.Refused past max_text_kb, max_texts or max_text_chars)."""
    text = gate.text(text, "Templates", limits)
    lines = [(number, line.strip()) for number, line in enumerate((text or "").splitlines(), start=1)]
    kept = [(number, line) for number, line in lines if line and not line.startswith("#")]
    gate.within([line for _, line in kept], "Templates", limits, noun="template")
    bad = [f"line {number}: {line!r}" for number, line in kept if "{}" not in line]
    if bad:
        raise PromptError("every template needs {} where the label goes; these have none: " +
                          gate.listed(bad))
    return check_templates([line for _, line in kept], "line", limits)


def read_text(path: str | Path, what: str, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> str:
    """A text file a person gave (templates, descriptions): gate.read_text_file, an unreadable or
    non-UTF-8 file as a PromptError; a file over the limit stays gate.Refused."""
    try:
        return gate.read_text_file(path, what, limits)
    except gate.Refused:
        raise
    except ValueError as exc:
        raise PromptError(str(exc)) from None


def read_template_file(path: str | Path, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> list[str]:
    """A template file as the app saves it or a person writes it (or uploads it): .json (a list of
    templates, or {"templates": [...]}) or text, one template a line. Size-checked before it is
    read and parsed within `limits` (gate.read_text_file, gate.json_document)."""
    path = Path(path).expanduser()
    text = read_text(path, "Templates", limits)
    if path.suffix.lower() != ".json":
        return parse_templates(text, limits)
    try:
        data = gate.json_document(text, path.name, limits)
    except gate.Refused:
        raise
    except ValueError as exc:
        raise PromptError(str(exc)) from None
    if isinstance(data, dict):
        data = data.get("templates")
    if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
        raise PromptError(f'{path.name}: expected a JSON list of templates, or {{"templates": [...]}}')
    return check_templates([" ".join(t.split()) for t in data if t.strip()], limits=limits)


def write_template_files(templates: list[str], folder: str | Path) -> tuple[Path, Path]:
    """Save a template set as prompt-set.txt and prompt-set.json in `folder`; both read back with
    read_template_file (and so with every command's --templates)."""
    folder = Path(folder)
    txt, js = folder / "prompt-set.txt", folder / "prompt-set.json"
    txt.write_text("".join(t + "\n" for t in templates), encoding="utf-8")
    js.write_text(
        json.dumps({"templates": list(templates)}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return txt, js


BUILTIN_SETS = ("single", "simple", "openai")


def builtin_template_set(choice: str) -> list[str]:
    """'single', 'openai' (80) or 'simple' (7); PromptError for anything else. What the pages call:
    a name a visitor sends is never taken as a path."""
    if choice == "single":
        return [SINGLE_TEMPLATE]
    if choice in ("openai", "simple"):
        name = "openai_imagenet_80.txt" if choice == "openai" else "openai_imagenet_7.txt"
        return parse_templates((ASSETS / name).read_text(encoding="utf-8"))
    raise PromptError(f"templates: {str(choice)[:80]!r} is not a built-in set (single, simple or openai)")


def load_template_set(choice: str, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> list[str]:
    """'single', 'openai' (80), 'simple' (7), or the path of a template file (.txt or .json): the
    command line's --templates, the local user's own path (pages use builtin_template_set)."""
    if choice in BUILTIN_SETS:
        return builtin_template_set(choice)
    if not Path(choice).expanduser().is_file():
        raise PromptError(f"templates: {choice!r} is not single, openai, simple, or an existing file")
    return read_template_file(choice, limits)


def parse_texts(text: str | None, limit: int | None = None,
                limits: TextLimits = DEFAULT_TEXT_LIMITS) -> ParsedLabels:
    """Free texts (captions, queries), one per line: commas belong to the text. Blank lines and
    repeats are dropped and said; above `limit`, the first `limit` are kept and that is said.
    Within `limits`: a box over max_text_kb is Refused; a text over max_text_chars and those past
    max_texts are left out, each said in a note."""
    text = gate.text(text, "Texts", limits)
    texts, notes, seen, repeats = [], [], set(), []
    for line in (text or "").splitlines():
        line = " ".join(line.split())
        if not line:
            continue
        if line in seen:
            repeats.append(line)
            continue
        seen.add(line)
        texts.append(line)
    notes += [f"dropped the repeated text “{line}”" for line in repeats[:10]]
    if len(repeats) > 10:
        notes.append(f"dropped {len(repeats) - 10:,} more repeated texts")
    texts, left_out = gate.items(texts, "texts", limits, noun="text")
    notes += left_out
    if limit is not None and len(texts) > limit:
        notes.append(f"kept the first {limit} of {len(texts)} texts")
        texts = texts[:limit]
    return ParsedLabels(texts, notes)


_ARTICLE_BEFORE_SLOT = re.compile(r"(?:^|(?<=\s))(?:a|an|the)\s+\{\}", re.IGNORECASE)
_LEADING_ARTICLE = re.compile(r"(?:a|an|the)\s", re.IGNORECASE)


def fill(template: str, label: str) -> str:
    """Put the label where {} is (str.replace, so other braces in a template are harmless). A label
    that brings its own article ("a red bicycle", "an apple") replaces the template's article before
    the slot: "a photo of a {}." gives "a photo of a red bicycle.", not "a photo of a a red bicycle."."""
    if _LEADING_ARTICLE.match(label.lstrip()):
        template = _ARTICLE_BEFORE_SLOT.sub("{}", template)
    return template.replace("{}", label)


def build_prompts(labels: list[str], templates: list[str]) -> list[str]:
    """All prompts, class-major: labels[0] x every template, then labels[1] ..."""
    return [fill(t, label) for label in labels for t in templates]
