"""Zero-shot counting (Paiss et al. 2023) on the shapes model: pictures of 1-4 red circles in class folders
named by their counts. The tiny model was never taught to count, so its answers are poor; the probe must
report them as they are: the test encodes the ten prompts itself and computes the truth from the
model's own cosines and the known counts."""
from __future__ import annotations

import numpy as np
import pytest

from explorer.embed.probability import softmax
from explorer.inputs.gate import Refused, TextLimits
from explorer.inputs.sources import embed_files, embed_folder
from explorer.science import counting
from explorer.science.evaluate import paired_difference
from explorer.science.prompts import PromptError
from tests.shapes import draw_shapes

FOLDERS = {"one": 1, "2": 2, "3 circles": 3, "four_red_circles": 4}   # the names count_of_folder reads
WORDS = ["a photo of one red circle.", "a photo of two red circles.", "a photo of three red circles.",
         "a photo of four red circles.", "a photo of five red circles.", "a photo of six red circles.",
         "a photo of seven red circles.", "a photo of eight red circles.", "a photo of nine red circles.",
         "a photo of ten red circles."]
DIGITS = ["a photo of 1 red circle."] + [f"a photo of {n} red circles." for n in range(2, 11)]


@pytest.fixture(scope="module")
def counted(shapes_model, tmp_path_factory):
    """(images, report): 4 counts x 5 images, encoded once."""
    root, rng = tmp_path_factory.mktemp("counting"), np.random.default_rng(5)
    for folder, k in FOLDERS.items():
        (root / folder).mkdir()
        for i in range(5):
            draw_shapes("red", "circle", k, rng=rng).save(root / folder / f"{i}.png")
    images = embed_folder(shapes_model, root)
    return images, counting.counting_probe(shapes_model, images, "red circle")


def test_prompts_forms_and_folder_counts():
    assert counting.count_prompts("red circle") == WORDS
    assert counting.count_prompts("red circle", "digits") == DIGITS
    assert counting.count_prompts("mouse|mice", template="{n} {object}")[:3] == ["one mouse", "two mice",
                                                                                "three mice"]
    assert [counting.count_of_folder(n) for n in ("3", "three", "3 apples", "three_dogs", "10", "11", "cats",
                                                  "")] == [3, 3, 3, 3, 10, None, None, None]
    with pytest.raises(PromptError, match="needs both"):
        counting.count_prompts("dog", template="a photo of {object}")
    with pytest.raises(PromptError, match="name of the objects"):
        counting.count_prompts("  ")


def test_report_is_the_models_own_answer_on_the_known_counts(shapes_model, counted):
    images, report = counted
    true = np.asarray([FOLDERS[images.class_folders[k]] for k in images.labels])
    np.testing.assert_array_equal(report.true, true)
    scale = shapes_model.logit_scale
    for form, texts in (("words", WORDS), ("digits", DIGITS)):
        assert report.prompts[form] == texts
        cosines = images.embeddings @ shapes_model.encode_texts(texts).T
        np.testing.assert_allclose(report.cosines[form], cosines, atol=1e-6)
        probs = softmax(scale * cosines.astype(np.float64))
        np.testing.assert_allclose(report.probabilities[form], probs, atol=1e-5)
        predicted = probs.argmax(axis=1) + 1
        np.testing.assert_array_equal(report.predicted[form], predicted)
        assert report.accuracy[form] == pytest.approx(np.mean(predicted == true))
        wrong = predicted != true
        off_by_one = np.mean(np.abs(predicted - true)[wrong] == 1) if wrong.any() else None
        assert report.neighbour_confusion[form] == pytest.approx(off_by_one)
        for t, p in ((1, 1), (2, 1), (4, 2)):
            assert report.confusion[form][t - 1, p - 1] == np.sum((true == t) & (predicted == p))
        assert report.confusion[form].sum() == len(true)
    assert report.majority == pytest.approx(0.25) and report.chance == pytest.approx(0.1)
    expected = paired_difference(report.predicted["words"] == true, report.predicted["digits"] == true)
    assert report.words_vs_digits.as_dict() == expected.as_dict()
    print("counting on shapes:", report.accuracy, report.neighbour_confusion)


def test_as_dict_carries_method_source_params_and_differs(counted):
    doc = counted[1].as_dict()
    assert doc["method"] == "zero-shot counting" and "Paiss" in doc["source"] and "2 to 10" in doc["differs"]
    assert doc["params"] == {"object": "red circle", "template": counting.TEMPLATE,
                             "counts": list(range(1, 11)), "forms": ["words", "digits"]}
    assert doc["labelled"] and len(doc["predicted"]["words"]) == 20 and doc["words_vs_digits"]["n"] == 20


def test_unlabelled_images_give_curves_only(shapes_model, counted):
    images = counted[0]
    plain = embed_files(shapes_model, images.paths[:3])
    report = counting.counting_probe(shapes_model, plain, "red circle")
    assert report.true is None and report.accuracy == {} and report.words_vs_digits is None
    np.testing.assert_allclose(report.cosines["words"], counted[1].cosines["words"][:3], atol=1e-6)
    doc = report.as_dict()
    assert doc["accuracy"] is None and doc["confusion"] is None and len(doc["probabilities"]["digits"]) == 3


def test_prompt_limit_refuses_before_encoding(shapes_model, counted):
    with pytest.raises(Refused, match="max-prompts"):
        counting.counting_probe(shapes_model, counted[0], "dog", limits=TextLimits(max_prompts=10))
