"""The shipped vocabulary, a person's own words, and word vectors kept on disk
(explorer/science/vocabulary.py)."""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from explorer.inputs import gate
from explorer.science import vocabulary as vocab
from tests.shapes import COLORS, SHAPES


def test_shipped_vocabulary_is_offline_and_documented():
    shipped = vocab.load_vocabulary(None)
    assert len(shipped) == 10_000
    assert len(set(shipped.words)) == len(shipped.words)
    assert all(re.fullmatch(r"[a-z]{3,}", w) for w in shipped.words)
    assert set(COLORS) | set(SHAPES) <= set(shipped.words)
    assert {"dog", "car", "tree", "building"} <= set(shipped.words)
    assert "WordNet" in shipped.source and "CC-BY-SA 4.0" in shipped.licence
    # SOURCE.md names the file it documents by its digest
    source = (vocab.ASSETS / "SOURCE.md").read_text(encoding="utf-8")
    assert hashlib.sha256(vocab.SHIPPED.read_bytes()).hexdigest() in source
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in source
    # the most common words come first; `limit` keeps them
    first = vocab.load_vocabulary(None, limit=500)
    assert first.words == shipped.words[:500] and "red" in first.words


def test_parse_vocabulary_lines_commas_repeats_and_limits():
    typed = vocab.parse_vocabulary("red, blue ,,Red, green circle")
    assert typed.words == ["red", "blue", "green circle"]
    assert typed.source == "typed" and typed.licence == "the user's own"
    assert any("duplicate" in note for note in typed.notes)
    lines = vocab.parse_vocabulary("a red circle\nblue, square\n\n")
    assert lines.words == ["a red circle", "blue, square"]     # one a line: commas belong to the phrase
    limits = gate.TextLimits(max_items=2, max_item_chars=10, max_bytes=200)
    kept = vocab.parse_vocabulary("one\ntwo\nthree\nfar too long a phrase", limits)
    assert kept.words == ["one", "two"] and len(kept.notes) == 2
    with pytest.raises(gate.Refused, match="max_text_kb|EXPLORER_MAX_TEXT_KB"):
        vocab.parse_vocabulary("x" * 300, limits)
    assert vocab.parse_vocabulary(None).words == []


def test_load_vocabulary_from_a_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("cat\ndog\ncat\n", encoding="utf-8")
    mine = vocab.load_vocabulary(path)
    assert mine.words == ["cat", "dog"] and mine.source == "file mine.txt"
    with pytest.raises(gate.Refused):
        vocab.load_vocabulary(path, limits=gate.TextLimits(max_bytes=4))


class FakeModel:
    """What word_vectors needs of a ClipModel; counts what it encodes."""

    def __init__(self, digest="d1", dim=8):
        from explorer.embed.model import ModelIdentity
        self.identity = ModelIdentity("fake", None, dim, 32, ((), (), None, None))
        self.weights_digest = digest
        self.embed_dim = dim
        self.encoded: list[str] = []

    def encode_texts(self, texts):
        self.encoded += list(texts)
        digests = b"".join(hashlib.sha256(t.encode()).digest()[:self.embed_dim] for t in texts)
        rows = np.frombuffer(digests, dtype=np.uint8).reshape(len(texts), self.embed_dim) + 1.0
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_word_vectors_are_kept_on_disk_per_model_and_words(tmp_path, monkeypatch):
    words = vocab.Vocabulary([f"w{i}" for i in range(1200)], "test", "test")
    model = FakeModel()
    seen = []
    first = vocab.word_vectors(model, words, cache_dir=tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert len(model.encoded) == 1200 and seen == [(512, 1200), (1024, 1200), (1200, 1200)]
    assert len(list(tmp_path.glob("*.npy"))) == 1 and not list(tmp_path.glob("*.tmp"))
    again = FakeModel()
    np.testing.assert_array_equal(vocab.word_vectors(again, words, cache_dir=tmp_path), first)
    assert again.encoded == []                                  # read back, nothing encoded
    other_weights = FakeModel(digest="d2")
    vocab.word_vectors(other_weights, words, cache_dir=tmp_path)
    assert len(other_weights.encoded) == 1200                   # other weights: other file
    fewer = vocab.Vocabulary(words.words[:10], "test", "test")
    assert vocab.word_vectors(again, fewer, cache_dir=tmp_path).shape == (10, 8)
    assert again.encoded == fewer.words                         # other words: other file
    assert len(list(tmp_path.glob("*.npy"))) == 3
    # a damaged file is encoded again and rewritten
    path = tmp_path / f"{vocab.cache_key(model, words)}.npy"
    path.write_bytes(b"not numpy")
    damaged = FakeModel()
    np.testing.assert_array_equal(vocab.word_vectors(damaged, words, cache_dir=tmp_path), first)
    assert len(damaged.encoded) == 1200 and np.load(path).shape == (1200, 8)
    # no disk cache asked for, or the default place ($XDG_CACHE_HOME)
    none = FakeModel()
    vocab.word_vectors(none, fewer, cache_dir=False)
    assert len(none.encoded) == 10
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    vocab.word_vectors(FakeModel(), fewer)
    assert len(list((tmp_path / "xdg" / "clip-explorer" / "word-vectors").glob("*.npy"))) == 1


def test_word_vectors_cancel(tmp_path):
    words = vocab.Vocabulary([f"w{i}" for i in range(1200)], "test", "test")
    asked = []
    with pytest.raises(vocab.VocabularyCancelled, match="after 512 of 1,200"):
        vocab.word_vectors(FakeModel(), words, cache_dir=tmp_path,
                           should_stop=lambda: asked.append(1) or len(asked) > 1)
    assert not list(tmp_path.glob("*.npy"))


def test_word_vectors_of_the_shapes_model(shapes_model, tmp_path):
    words = vocab.parse_vocabulary("red, circle, blue square")
    vectors = vocab.word_vectors(shapes_model, words, cache_dir=tmp_path)
    np.testing.assert_allclose(vectors, shapes_model.encode_texts(words.words), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    fake = FakeModel(dim=shapes_model.embed_dim)
    assert vocab.cache_key(shapes_model, words) != vocab.cache_key(fake, words)
