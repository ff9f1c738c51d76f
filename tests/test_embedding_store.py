"""The embedding store of a comparison: the app's index of the folder for the model, re-used whole."""
from __future__ import annotations

from contextlib import closing

import numpy as np
import pytest

from explorer.index.build import SPEED_META, build_index
from explorer.index.embedding_store import stored_embeddings
from explorer.index.registry import IndexRegistry
from explorer.index.store import Store
from explorer.inputs.sources import embed_folder
from tests.shapes import CLASSES, make_labelled_folder


def test_the_store_is_the_registrys_index_and_a_second_call_encodes_nothing(shapes_model, tmp_path):
    photos = tmp_path / "photos"
    make_labelled_folder(photos, CLASSES[:4], 3, seed=3)
    registry = IndexRegistry(tmp_path / "idx")
    before = shapes_model.image_encodes
    first = stored_embeddings(shapes_model, photos, registry, labelled=True, workers=0)
    assert first.index_folder == registry.path_for(photos, shapes_model)
    assert first.encoded == 12 == shapes_model.image_encodes - before
    assert first.timed_now and first.seconds_per_image > 0 and not first.cancelled
    assert first.store_bytes >= (first.index_folder / "index.db").stat().st_size > 0
    with closing(Store(first.index_folder)) as store:
        assert store.get_meta(SPEED_META) == pytest.approx(first.seconds_per_image)
    # the same embeddings, classes and labels a direct read of the folder gives
    direct = embed_folder(shapes_model, photos, labelled=True)
    assert first.images.class_names == direct.class_names
    order = [first.images.names.index(n) for n in direct.names]
    np.testing.assert_allclose(first.images.embeddings[order], direct.embeddings, atol=1e-5)
    assert [first.images.class_names[k] for k in first.images.labels[order]] == \
        [direct.class_names[k] for k in direct.labels]
    assert registry.find_for(photos, shapes_model) is not None  # Search and the labs find it
    before = shapes_model.image_encodes
    again = stored_embeddings(shapes_model, photos, registry, labelled=True, workers=0)
    assert again.encoded == 0 and shapes_model.image_encodes == before
    assert not again.timed_now and again.seconds_per_image == pytest.approx(first.seconds_per_image)
    assert again.images.names == first.images.names


def test_without_an_index_folder_nothing_can_be_stored(shapes_model, tmp_path):
    with pytest.raises(ValueError, match="index_dir"):
        stored_embeddings(shapes_model, tmp_path, IndexRegistry(None))


def test_a_search_build_records_the_speed_a_comparison_reports(shapes_model, tmp_path):
    photos = tmp_path / "photos"
    make_labelled_folder(photos, CLASSES[:2], 2, seed=3)
    registry = IndexRegistry(tmp_path / "idx")
    build_index(shapes_model, photos, registry.path_for(photos, shapes_model), workers=0)  # as Search builds
    with closing(Store(registry.path_for(photos, shapes_model))) as store:
        measured = store.get_meta(SPEED_META)
    assert measured > 0
    later = stored_embeddings(shapes_model, photos, registry, labelled=True, workers=0)
    assert later.encoded == 0 and not later.timed_now and later.seconds_per_image == pytest.approx(measured)
