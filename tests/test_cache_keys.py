"""Every cache is keyed by everything that changes what it holds (issue 24): a model's text and
token caches, the image-embedding cache (sources.EmbeddingCache), and the weights fingerprint that
tells apart two models with the same name or the same embedding size but other weights. (The gap
maps' caches are tested in test_gap.py.)"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.embed.model import load_model
from explorer.inputs.sources import EmbeddingCache, embed_files
from tests.helpers import encode_pil
from tests.shapes import CLASSES, draw_shape

TEXTS = ["a red circle", "a photo of a blue square.", "a green cross"]


def _weights_file(folder):
    return folder / "open_clip_model.safetensors"


def _perturb(source, target, seed: int):
    """The same weights file with every floating tensor nudged: same config, same embedding size."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(_weights_file(source)))
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in weights.items():
        if tensor.is_floating_point() and name != "logit_scale":
            weights[name] = tensor + 0.05 * tensor.std().nan_to_num(0.02) * torch.randn(
                tensor.shape, generator=generator)
    save_file(weights, str(_weights_file(target)), metadata={"format": "pt"})


@pytest.fixture(scope="module")
def twins(shapes_model_dir, tmp_path_factory):
    """Two model folders with one config and other weights: (original, perturbed)."""
    root = tmp_path_factory.mktemp("twins")
    first, second = root / "first", root / "second"
    shutil.copytree(shapes_model_dir, first)
    shutil.copytree(shapes_model_dir, second)
    _perturb(shapes_model_dir, second, seed=1)
    return first, second


def _files(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        draw_shape(*CLASSES[i], size=40, rng=i).save(path)
        paths.append(path)
    return paths


def _own_texts(model):
    return model._encode_uncached(list(TEXTS), 256)


def _own_images(model, files):
    return encode_pil(model, [Image.open(p).convert("RGB") for p in files])


def test_same_embedding_size_other_weights_share_no_cache_entry(twins, tmp_path):
    a, b = (load_model(f"local-dir:{folder}", device="cpu") for folder in twins)
    assert a.embed_dim == b.embed_dim and a.identity.preprocess == b.identity.preprocess
    assert a.weights_digest != b.weights_digest
    files, cache = _files(tmp_path / "images"), EmbeddingCache()
    text_a, found_a = a.encode_texts(TEXTS), embed_files(a, files, cache=cache)
    before = b.text_encodes
    text_b, found_b = b.encode_texts(TEXTS), embed_files(b, files, cache=cache)
    assert b.text_encodes == before + len(TEXTS) and found_b.encoded == len(files) and found_b.cached == 0
    np.testing.assert_allclose(text_b, _own_texts(b), atol=1e-6)
    np.testing.assert_allclose(found_b.embeddings, _own_images(b, files), atol=1e-5)
    assert not np.allclose(text_a, text_b, atol=1e-3)
    assert not np.allclose(found_a.embeddings, found_b.embeddings, atol=1e-3)
    again = embed_files(a, files, cache=cache)  # each model still finds its own entries
    assert again.cached == len(files) and np.array_equal(again.embeddings, found_a.embeddings)


def test_same_name_reloaded_with_other_weights_shares_no_cache_entry(twins, tmp_path):
    """One `local-dir:` name whose weights file is replaced between two loads: the name, tag, size and
    preprocessing (the identity) are the same, and still nothing the first load cached reaches the second."""
    folder = tmp_path / "model"
    shutil.copytree(twins[0], folder)
    first = load_model(f"local-dir:{folder}", device="cpu")
    files, cache = _files(tmp_path / "images"), EmbeddingCache()
    text_first, found_first = first.encode_texts(TEXTS), embed_files(first, files, cache=cache)
    shutil.copy(_weights_file(twins[1]), _weights_file(folder))
    second = load_model(f"local-dir:{folder}", device="cpu")
    assert second.identifier == first.identifier and second.identity == first.identity
    assert second.weights_digest != first.weights_digest
    text_second, found_second = second.encode_texts(TEXTS), embed_files(second, files, cache=cache)
    assert second.text_encodes == len(TEXTS) and found_second.encoded == len(files)
    np.testing.assert_allclose(text_second, _own_texts(second), atol=1e-6)
    np.testing.assert_allclose(found_second.embeddings, _own_images(second, files), atol=1e-5)
    assert not np.allclose(text_first, text_second, atol=1e-3)
    assert not np.allclose(found_first.embeddings, found_second.embeddings, atol=1e-3)


def test_weights_digest_names_the_weights_not_the_load(twins, shapes_model):
    reload = load_model(f"local-dir:{twins[0]}", device="cpu")   # other folder, same weights
    assert reload.weights_digest == shapes_model.weights_digest
    assert reload.instance != shapes_model.instance              # while the caches stay per load
    other = load_model(f"local-dir:{twins[1]}", device="cpu")
    assert other.weights_digest != shapes_model.weights_digest
    assert len(shapes_model.weights_digest) == 64


def test_token_cache_is_per_model(twins):
    a, b = (load_model(f"local-dir:{folder}", device="cpu") for folder in twins)
    a.token_counts(TEXTS)
    assert all(text in a._token_cache for text in TEXTS)
    assert not any(text in b._token_cache for text in TEXTS)
    assert b.token_counts(TEXTS) == a.token_counts(TEXTS)  # the same tokenizer counts the same


def test_an_index_refuses_other_weights_under_the_same_name(twins, tmp_path):
    """The index is a cache of embeddings too: it records the weights fingerprint, and a model with the
    same name, tag and size but other weights may neither search it, reuse its embeddings, nor add to it;
    the app keeps a separate index for it (registry path by identity and fingerprint)."""
    from explorer.index.build import build_index
    from explorer.index.image_index import IndexMismatchError, open_index
    from explorer.index.registry import default_index_path, list_indexes
    from explorer.inputs.sources import embed_folder

    folder = tmp_path / "model"
    shutil.copytree(twins[0], folder)
    first = load_model(f"local-dir:{folder}", device="cpu")
    photos = tmp_path / "photos"
    _files(photos)
    build_index(first, photos, tmp_path / "idx", workers=0, batch_size=2)
    shutil.copy(_weights_file(twins[1]), _weights_file(folder))  # the same path, other weights
    second = load_model(f"local-dir:{folder}", device="cpu")
    assert second.identity == first.identity and second.weights_digest != first.weights_digest
    index = open_index(tmp_path / "idx")
    index.check_model(first)
    with pytest.raises(IndexMismatchError, match="other weights"):
        index.check_model(second)
    with pytest.raises(IndexMismatchError, match="other weights"):
        build_index(second, photos, tmp_path / "idx", workers=0, batch_size=2)
    with pytest.raises(IndexMismatchError, match="other weights"):  # never the index's embeddings
        embed_folder(second, photos, index=index)
    assert embed_folder(first, photos, index=index).reused == 3
    assert [info.folder for info in list_indexes(tmp_path, second)] == []
    assert [info.folder for info in list_indexes(tmp_path, first)] == [tmp_path / "idx"]
    assert default_index_path(tmp_path, photos, first) != default_index_path(tmp_path, photos, second)
    index.close()
