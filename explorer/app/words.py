"""The words the Map tab names things with, kept in memory for the page: a vocabulary's vectors per
model (the shipped 10,000 words, or the words a visitor typed), and single images in words (SpLiCE,
folder_map.explain) per map, vocabulary and image.

A typed vocabulary is parsed within the session's text limits (vocabulary.parse_vocabulary) and
encoded through the model's text cache only: never written to the disk cache of word vectors, so
strangers cannot fill the server's disk. SpLiCE costs about a second per image against the 10,000
shipped words on a CPU (one Lasso): an answer is kept, so asking again is free.
"""
from __future__ import annotations

import hashlib

from explorer.embed.cache import LRU
from explorer.inputs import gate
from explorer.science import folder_map

KEPT_WORDS, KEPT_EXPLAINED = 4, 512
_WORDS = LRU(KEPT_WORDS)          # (model identifier, typed_key) -> folder_map.Words
_EXPLAINED = LRU(KEPT_EXPLAINED)  # (model, map token, typed_key, row) -> (Explanation, source)


def typed_key(text: str | None) -> str:
    """What tells typed vocabularies apart ("": none typed, so the shipped one)."""
    text = (text or "").strip()
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24] if text else ""


def vocabulary_words(ctx, text: str | None = "") -> folder_map.Words:
    """The words and their vectors for the loaded model: those typed in `text` (one word or phrase a
    line, or comma-separated; within the session's text limits; never kept on disk), or the shipped
    vocabulary when none is typed (its vectors from vocabulary.py's disk cache)."""
    model = ctx.model()
    key = (model.identifier, typed_key(text))
    found = _WORDS.get(key)
    if found is not None:
        return found
    typed = bool(key[1])
    words = folder_map.load_words(model, text=text if typed else None, cache_dir=False if typed else None,
                                  limits=gate.TextLimits.of(ctx.settings))
    _WORDS.put(key, words)
    return words


def known(ctx, token: int, text: str | None, row: int) -> tuple[folder_map.Explanation, str] | None:
    """(the image at `row` of the map `token` in words, the words' source) when it was explained before
    with these words, else None."""
    return _EXPLAINED.get((ctx.model().identifier, token, typed_key(text), row))


def explain(ctx, token: int, embeddings, row: int, name: str, text: str | None
            ) -> tuple[folder_map.Explanation, str]:
    """(the image at `row` of a map's stored `embeddings` in words, the words' source):
    folder_map.explain (SpLiCE, the image mean the map's own), kept per map `token`, vocabulary and row."""
    key = (ctx.model().identifier, token, typed_key(text), row)
    found = _EXPLAINED.get(key)
    if found is None:
        words = vocabulary_words(ctx, text)
        found = (folder_map.explain(words, embeddings, row, name=name), words.source)
        _EXPLAINED.put(key, found)
    return found
