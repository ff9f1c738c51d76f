"""Template sets and class-name parsing: turning what a person typed into prompts.

Templates use `{}` where the class name goes, as in open_clip and OpenAI's CLIP notebooks.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "templates"
SINGLE_TEMPLATE = "a photo of a {}."


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


def check_templates(templates: list[str], where: str = "row") -> list[str]:
    """The templates, unchanged, if every one contains {} (where the label goes) and there is at
    least one; else PromptError naming each offender by its number from 1 (`where`: row or line)."""
    bad = [f"{where} {number}: {t!r}" for number, t in enumerate(templates, start=1) if "{}" not in t]
    if bad:
        raise PromptError("every template needs {} where the label goes; these have none: " + "; ".join(bad))
    if not templates:
        raise PromptError("the template list is empty: add at least one line such as 'a photo of a {}.'")
    return templates


def parse_templates(text: str) -> list[str]:
    """One template per line; blank lines and lines starting with '#' are skipped. Each must contain {}."""
    lines = [(number, line.strip()) for number, line in enumerate((text or "").splitlines(), start=1)]
    kept = [(number, line) for number, line in lines if line and not line.startswith("#")]
    bad = [f"line {number}: {line!r}" for number, line in kept if "{}" not in line]
    if bad:
        raise PromptError("every template needs {} where the label goes; these have none: " + "; ".join(bad))
    return check_templates([line for _, line in kept], "line")


def read_template_file(path: str | Path) -> list[str]:
    """A template file as the app saves it or a person writes it: .json (a list of templates, or
    {"templates": [...]}) or text, one template a line."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"templates: cannot read {path.name} ({exc})") from None
    if path.suffix.lower() != ".json":
        return parse_templates(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):
        data = data.get("templates")
    if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
        raise PromptError(f'{path.name}: expected a JSON list of templates, or {{"templates": [...]}}')
    return check_templates([" ".join(t.split()) for t in data if t.strip()])


def write_template_files(templates: list[str], folder: str | Path) -> tuple[Path, Path]:
    """Save a template set as prompt-set.txt and prompt-set.json in `folder`; both read back with
    read_template_file (and so with every command's --templates)."""
    folder = Path(folder)
    txt, js = folder / "prompt-set.txt", folder / "prompt-set.json"
    txt.write_text("".join(t + "\n" for t in templates), encoding="utf-8")
    js.write_text(json.dumps({"templates": list(templates)}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return txt, js


def load_template_set(choice: str) -> list[str]:
    """'single', 'openai' (80), 'simple' (7), or the path of a template file (.txt or .json)."""
    if choice == "single":
        return [SINGLE_TEMPLATE]
    if choice in ("openai", "simple"):
        name = "openai_imagenet_80.txt" if choice == "openai" else "openai_imagenet_7.txt"
        return parse_templates((ASSETS / name).read_text(encoding="utf-8"))
    if not Path(choice).expanduser().is_file():
        raise PromptError(f"templates: {choice!r} is not single, openai, simple, or an existing file")
    return read_template_file(choice)


def parse_texts(text: str | None, limit: int | None = None) -> ParsedLabels:
    """Free texts (captions, queries), one per line: commas belong to the text. Blank lines and
    repeats are dropped and said; above `limit`, the first `limit` are kept and that is said."""
    texts, notes, seen = [], [], set()
    for line in (text or "").splitlines():
        line = " ".join(line.split())
        if not line:
            continue
        if line in seen:
            notes.append(f"dropped the repeated text “{line}”")
            continue
        seen.add(line)
        texts.append(line)
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
