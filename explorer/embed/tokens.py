"""The token budget: which prompts are longer than the model's text context, and what of them is lost.

A CLIP text tower reads a fixed number of tokens (77 for OpenAI's CLIP and most open_clip models,
64 for SigLIP), start and end tokens included. open_clip's tokenizer cuts a longer text silently: the
end, often the class name itself, never reaches the model. Here every text is counted once (the
model caches its true token count, `ClipModel.token_counts`), and each cut text is reported with
its count and the words the model does not read, so a page or a command can warn about it.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SHOWN = 20  # cut prompts listed one by one on a page or stderr; the rest are counted


@dataclass(frozen=True)
class CutText:
    """One text over the context: its true token count and where the cut falls."""
    text: str
    tokens: int           # true count, start and end tokens included
    context_length: int
    kept: str             # the longest run of whole words the model reads
    lost: str             # the rest, which it never sees

    def message(self, what: str = "prompt", width: int | None = None) -> str:
        """One sentence; `width` elides the middle of texts longer than that (for a page)."""
        text, kept, lost = (elide(t, width) for t in (self.text, self.kept, self.lost))
        return (f"{what} “{text}” is {self.tokens} tokens, over the model's context of "
                f"{self.context_length}: the model reads only “{kept}” and never sees “{lost}”")

    def as_dict(self) -> dict:
        return {"text": self.text, "tokens": self.tokens, "context_length": self.context_length,
                "kept": self.kept, "lost": self.lost}


def elide(text: str, width: int | None) -> str:
    """`text` itself, or its start and end around an ellipsis when longer than `width` characters."""
    if width is None or len(text) <= width:
        return text
    head = (width - 1) * 3 // 5
    start, end = text[:head], text[len(text) - (width - 1 - head):]
    start = start.rsplit(" ", 1)[0] if " " in start else start   # whole words on both sides
    end = end.split(" ", 1)[1] if " " in end else end
    return start.rstrip() + " … " + end.lstrip()


def kept_and_lost(model, text: str) -> tuple[str, str]:
    """Split `text` at the context cut, on a word boundary: (the words read in full, the rest).

    The longest prefix of whole words whose token count fits the context (binary search; BPE
    tokenises word by word, so a word prefix's tokens are a prefix of the text's tokens). A word the
    cut falls inside counts as lost."""
    words = text.split()
    low, high = 0, len(words)  # invariant: words[:low] fits
    while low < high:
        mid = (low + high + 1) // 2
        if model.token_counts([" ".join(words[:mid])])[0] <= model.context_length:
            low = mid
        else:
            high = mid - 1
    return " ".join(words[:low]), " ".join(words[low:])


def cut_texts(model, texts: Iterable[str]) -> list[CutText]:
    """The texts (each once, in first-seen order) longer than the model's context."""
    unique = list(dict.fromkeys(texts))
    out = []
    for text, count in zip(unique, model.token_counts(unique)):
        if count > model.context_length:
            kept, lost = kept_and_lost(model, text)
            out.append(CutText(text, count, model.context_length, kept, lost))
    return out


def cut_warnings(model, texts: Iterable[str], what: str = "prompt") -> list[str]:
    """One sentence per cut text (see CutText.message); empty when everything fits."""
    return [cut.message(what) for cut in cut_texts(model, texts)]


def shown(warnings: list[str], limit: int = SHOWN) -> list[str]:
    """The first `limit` warnings and, if there are more, one line counting the rest."""
    if len(warnings) <= limit:
        return list(warnings)
    return list(warnings[:limit]) + [f"…and {len(warnings) - limit} more prompts cut at the context length"]


def longest(model, groups: list[list[str]]) -> list[int]:
    """Per group of texts (e.g. one prompt slot over all classes), the longest one's token count."""
    return [max(model.token_counts(group), default=0) for group in groups]
