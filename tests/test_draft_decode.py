"""JPEGs are decoded at the smallest DCT scale that still covers the model's input (images.DRAFT_GAP):
the embeddings must agree with those of a full decode, on photo-like JPEGs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.bench_index import photo
from explorer.embed import images


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    folder, rng = tmp_path_factory.mktemp("draft"), np.random.default_rng(3)
    out = []
    for i, (w, h) in enumerate([(1024, 768), (768, 1024), (2000, 1500), (1600, 900)]):
        path = folder / f"{i}.jpg"
        photo(rng, w, h).save(path, quality=90)
        out.append(path)
    return out


def _embeddings(model, paths, draft_gap, monkeypatch):
    monkeypatch.setattr(images, "DRAFT_GAP", draft_gap)
    return model.encode_pixels(torch.stack([images.prepare(p, model.preprocess) for p in paths]))


@pytest.mark.parametrize("model_name", ["random_vit", "shapes_model"])
def test_draft_decoding_agrees_with_a_full_decode(jpegs, model_name, request, monkeypatch):
    model = request.getfixturevalue(model_name)
    fit = images.fit_of(model.preprocess)
    for path in jpegs:   # the draft really happens: below 2x the model's resize, or at the DCT's 1/8 limit
        with Image.open(path) as original:
            width = original.width
        decoded = images.load_image(path, fit=fit)
        assert decoded.width < 2 * fit.resized(*decoded.size)[0] or decoded.width == -(-width //
                                                                                       8), decoded.size
    full = _embeddings(model, jpegs, None, monkeypatch)
    draft = _embeddings(model, jpegs, 1, monkeypatch)
    cosine = (full * draft).sum(axis=1)
    assert cosine.min() > 0.99, cosine
    assert not np.allclose(full, draft, atol=1e-7)      # different pixels, nearly the same embedding
