"""Template sets and class-name parsing: turning what a person typed into prompts.

Templates use `{}` where the class name goes, as in open_clip and OpenAI's CLIP notebooks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "templates"
SINGLE_TEMPLATE = "a photo of a {}."
TEMPLATE_SETS = {
    "single": "one template: 'a photo of a {}.'",
    "openai": "OpenAI's 80 ImageNet templates",
    "simple": "the 7-template subset of OpenAI's ImageNet templates",
}


class PromptError(ValueError):
    """What the user typed cannot be used; the message says which part and why."""


@dataclass
class ParsedLabels:
    labels: list[str]
    notes: list[str] = field(default_factory=list)  # what was dropped, said plainly


def parse_labels(text: str) -> ParsedLabels:
    """Labels one per line, or comma-separated on one line. Blanks and duplicates are removed
    (case-insensitively, first spelling kept) and each removal is reported."""
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
        notes.append(f"removed duplicate{'s' if len(duplicates) > 1 else ''}: {', '.join(duplicates)}")
    return ParsedLabels(labels, notes)


def parse_templates(text: str) -> list[str]:
    """One template per line; blank lines and lines starting with '#' are skipped. Each must contain {}."""
    templates, bad = [], []
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        (templates if "{}" in line else bad).append(line if "{}" in line else f"line {number}: {line!r}")
    if bad:
        raise PromptError("every template needs {} where the label goes; these have none: " + "; ".join(bad))
    if not templates:
        raise PromptError("the template list is empty: add at least one line such as 'a photo of a {}.'")
    return templates


def load_template_set(choice: str) -> list[str]:
    """'single', 'openai' (80), 'simple' (7), or a path to a text file of templates."""
    if choice == "single":
        return [SINGLE_TEMPLATE]
    if choice == "openai":
        return parse_templates((ASSETS / "openai_imagenet_80.txt").read_text(encoding="utf-8"))
    if choice == "simple":
        return parse_templates((ASSETS / "openai_imagenet_7.txt").read_text(encoding="utf-8"))
    path = Path(choice).expanduser()
    if not path.is_file():
        raise PromptError(f"templates: {choice!r} is not single, openai, simple, or an existing file")
    return parse_templates(path.read_text(encoding="utf-8"))


def fill(template: str, label: str) -> str:
    """Put the label where {} is (str.replace, so other braces in a template are harmless)."""
    return template.replace("{}", label)


def build_prompts(labels: list[str], templates: list[str]) -> list[str]:
    """All prompts, class-major: labels[0] x every template, then labels[1] ..."""
    return [fill(t, label) for label in labels for t in templates]
