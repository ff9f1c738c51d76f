"""Words to name images with: the shipped offline vocabulary, a person's own, and their embeddings.

The shipped list (assets/vocabulary/words.txt, 10,000 words, most common first) is WordNet 3.0's nouns
of things one can see and its adjectives, ordered by wordfreq's English frequencies; its source, rules
and licence are in assets/vocabulary/SOURCE.md. Nothing is downloaded at run time.

`word_vectors` encodes the words bare (as SpLiCE encodes its vocabulary) through the model's
`encode_texts`, so its text cache is used; the vectors of a whole vocabulary are also kept on disk,
one file per (model identity, weights digest, vocabulary), because encoding 10,000 words on a CPU
takes tens of seconds for a ViT-B-32 (see docs) and the words never change.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits

from .prompts import parse_labels

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "vocabulary"
SHIPPED = ASSETS / "words.txt"
SHIPPED_SOURCE = ("WordNet 3.0 nouns of visible things and adjectives, ordered by wordfreq 3.1 English "
                  "frequency (assets/vocabulary/SOURCE.md)")
SHIPPED_LICENCE = ("CC-BY-SA 4.0 (the selection and order come from wordfreq's data); the words are from "
                   "WordNet 3.0, Copyright 2006 by Princeton University (WordNet 3.0 licence)")
ENCODE_CHUNK = 512          # words per encode_texts call (progress and should_stop between chunks)
CACHE_VERSION = 1


class VocabularyCancelled(RuntimeError):
    """should_stop() said stop while the words were being encoded."""


@dataclass
class Vocabulary:
    words: list[str]
    source: str
    licence: str
    notes: list[str] = field(default_factory=list)   # what parsing left out, said plainly

    def __len__(self) -> int:
        return len(self.words)

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the words in order: what the disk cache of their vectors is keyed on."""
        return hashlib.sha256("\n".join(self.words).encode("utf-8")).hexdigest()

    def as_dict(self) -> dict:
        return {"words": len(self.words), "source": self.source, "licence": self.licence, "notes": self.notes}


def load_vocabulary(path: str | os.PathLike | None = None, limit: int | None = None,
                    limits: TextLimits = DEFAULT_TEXT_LIMITS) -> Vocabulary:
    """The shipped vocabulary (path None) or a words file (one word or phrase a line, or comma-separated,
    within the text limits); `limit` keeps the first (for the shipped list: the most common) words."""
    if path is None:
        words = [w for w in SHIPPED.read_text(encoding="utf-8").splitlines() if w]
        vocabulary = Vocabulary(words, SHIPPED_SOURCE, SHIPPED_LICENCE)
    else:
        from explorer.inputs.gate import read_text_file
        vocabulary = parse_vocabulary(read_text_file(path, "Vocabulary file", limits), limits,
                                      source=f"file {Path(path).name}")
    if limit is not None and 0 <= limit < len(vocabulary.words):
        vocabulary.words = vocabulary.words[:limit]
    return vocabulary


def parse_vocabulary(text: str | None, limits: TextLimits = DEFAULT_TEXT_LIMITS,
                     source: str = "typed") -> Vocabulary:
    """A person's own words: one word or phrase a line, or comma-separated on one line, parsed as labels
    are (blanks and repeats dropped and said; within `limits`: gate.Refused over max_text_kb, words
    past max_texts or longer than max_text_chars left out with a note)."""
    parsed = parse_labels(text or "", limits)
    return Vocabulary(parsed.labels, source, "the user's own", list(parsed.notes))


def default_cache_dir() -> Path:
    """Where word vectors are kept: $XDG_CACHE_HOME (or ~/.cache)/clip-explorer/word-vectors."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "clip-explorer" / "word-vectors"


def cache_key(model, vocabulary: Vocabulary) -> str:
    """The file stem of a vocabulary's vectors for a model: a digest of the model's identity, its
    weights digest, the words and this cache's version."""
    parts = {"identity": model.identity.as_dict(), "weights": model.weights_digest,
             "words": vocabulary.digest, "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def word_vectors(model, vocabulary: Vocabulary, *, cache_dir: str | os.PathLike | None | bool = None,
                 progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """The unit embeddings [W, D] of the vocabulary's words, bare, through model.encode_texts. Kept on
    disk under `cache_dir` (None: default_cache_dir(); False: no disk cache) keyed by cache_key, so a
    second call (or a later run) with the same model and words reads them back without encoding."""
    words = list(vocabulary.words)
    path = None
    if cache_dir is not False:
        path = Path(cache_dir or default_cache_dir()) / f"{cache_key(model, vocabulary)}.npy"
    cached = _read(path, len(words), model.embed_dim)
    if cached is not None:
        if progress is not None:
            progress(len(words), len(words))
        return cached
    out = np.zeros((len(words), model.embed_dim), dtype=np.float32)
    for start in range(0, len(words), ENCODE_CHUNK):
        if should_stop is not None and should_stop():
            raise VocabularyCancelled(f"stopped after {start:,} of {len(words):,} words")
        out[start:start + ENCODE_CHUNK] = model.encode_texts(words[start:start + ENCODE_CHUNK])
        if progress is not None:
            progress(min(start + ENCODE_CHUNK, len(words)), len(words))
    if path is not None:
        _write(path, out)
    return out


def _read(path: Path | None, rows: int, dim: int) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None   # unreadable (a partial copy, another numpy): encoded again and rewritten
    if vectors.shape != (rows, dim) or vectors.dtype != np.float32 or not np.isfinite(vectors).all():
        return None
    return vectors


def _write(path: Path, vectors: np.ndarray) -> None:
    """Written atomically (a temporary file in the same folder, then renamed); a cache that cannot be
    written (read-only home) is skipped, not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            np.save(file, vectors, allow_pickle=False)
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except (OSError, UnboundLocalError):
            pass
