"""Synonym swap (REAL-Prompt, Parashar et al. 2024) on the shapes model: the red circles' class folder is
named "zqxv", a word the text tower cannot read, and its real name "a red circle" is typed among its
synonyms: the probe must find it, on labelled images by accuracy and on the same images unlabelled by
ZPE's score. The truth is the test's own computation from the model's cosines."""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from explorer.embed.probability import softmax
from explorer.embed.vectors import normalize
from explorer.inputs.gate import Refused, TextLimits
from explorer.inputs.sources import embed_files, embed_folder
from explorer.science import synonyms
from explorer.science.prompts import PromptError
from tests.shapes import make_labelled_folder

CLASSES = [("red", "circle"), ("red", "square"), ("blue", "circle"), ("red", "triangle"), ("green", "circle")]
TEMPLATES = ["a photo of {}.", "{}"]
TYPED = {"zqxv": ["a red circle", "blicket"]}


@pytest.fixture(scope="module")
def labelled(shapes_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("synonyms")
    make_labelled_folder(root, CLASSES, 4, seed=9)
    (root / "a_red_circle").rename(root / "zqxv")
    return embed_folder(shapes_model, root)


def _classifier(model, names: list[str]) -> np.ndarray:
    """open_clip's ensembling, written out: each name's prompts normalised, averaged, renormalised."""
    prompts = model.encode_texts([t.format(n) for n in names for t in TEMPLATES]).reshape(len(names), 2, -1)
    return normalize(normalize(prompts).mean(axis=1))


def test_labelled_finds_the_planted_name_and_scores_as_the_model_does(shapes_model, labelled):
    report = synonyms.synonym_swap(shapes_model, labelled, None, TYPED, TEMPLATES)
    classes = list(labelled.class_names)
    assert "zqxv" in classes and report.labelled and report.classes == classes
    rows = report.scores["zqxv"]
    assert [(r.candidate, r.source, r.original) for r in rows] == [
        ("zqxv", "folder", True), ("a red circle", "typed", False), ("blicket", "typed", False)]
    c, scale = classes.index("zqxv"), shapes_model.logit_scale
    for row in rows:
        names = [row.candidate if k == c else name for k, name in enumerate(classes)]
        predicted = softmax(scale * labelled.embeddings @ _classifier(shapes_model, names).T).argmax(axis=1)
        correct = predicted == labelled.labels
        assert row.accuracy == pytest.approx(correct.mean())
        assert row.class_recall == pytest.approx(correct[labelled.labels == c].mean())
    assert report.best["zqxv"] == "a red circle"
    assert rows[1].accuracy > rows[0].accuracy and rows[1].evidence.difference > 0
    assert rows[0].evidence is None and rows[1].evidence.n == len(labelled)
    assert rows[1].zipf > rows[0].zipf == 0.0 and report.frequent["zqxv"] == "a red circle"
    print("synonym swap, labelled:", [(r.candidate, r.accuracy) for r in rows])


def zpe_score_transcribed(images: np.ndarray, classes: np.ndarray, scale: float) -> float:
    """ZPE's score of one classifier [C, D] (uncertainty-baselines notebook, get_weights with the test
    images as the bias sample): mean over images of max over classes of (logit - its mean logit)."""
    logits = scale * images @ classes.T
    return float(np.mean(np.max(logits - logits.mean(axis=0), axis=1)))


def test_unlabelled_uses_zpe_scores_and_finds_the_planted_name(shapes_model, labelled):
    plain = embed_files(shapes_model, labelled.paths)
    classes = list(labelled.class_names)
    report = synonyms.synonym_swap(shapes_model, plain, classes, TYPED, TEMPLATES, wordnet=False)
    assert not report.labelled
    c = classes.index("zqxv")
    for row in report.scores["zqxv"]:
        names = [row.candidate if k == c else name for k, name in enumerate(classes)]
        expected = zpe_score_transcribed(plain.embeddings, _classifier(shapes_model, names),
                                         shapes_model.logit_scale)
        assert row.zpe_score == pytest.approx(expected, rel=1e-4)
        assert row.accuracy is None
    assert report.best["zqxv"] == "a red circle"
    assert all(report.best[name] == name for name in classes if name != "zqxv")   # nothing else to try
    doc = report.as_dict()
    assert doc["params"]["score"] == "ZPE score" and "NeglectedTailsVLM" in doc["source"] and doc["differs"]


def find_most_common_name(metrics: dict, matching_strategy: str = "RELAXED") -> str:
    """The authors' function (NeglectedTailsVLM analysis/laion/laion_parser.py), line for line, with its
    undefined `official_name` read from metrics['name'] as intended."""
    def clean_text(text):
        return text.strip().replace("'", "").replace('"', "").replace("-", " ").replace("_", " ").replace(
            "  ", " ").lower()
    official_name = metrics["name"]
    official_name_og = "".join(official_name)
    alternates_ordered = dict(sorted(metrics["alternates"].items(), key=lambda x: x[1], reverse=True))
    most_common_name = "".join(official_name)
    if official_name not in alternates_ordered:
        most_common_name_freq = alternates_ordered[clean_text(official_name)]
    else:
        most_common_name_freq = alternates_ordered[official_name]
    official_name = re.sub(r"[^\w\s]", "", clean_text(official_name))
    official_name_split = set(official_name.split())
    for alternate_name in alternates_ordered.keys():
        alternate_name_freq = alternates_ordered[alternate_name]
        alternate_name_og = "".join(alternate_name)
        alternate_name_split = set(re.sub(r"[^\w\s]", "", clean_text(alternate_name)).split())
        if most_common_name_freq < alternate_name_freq:
            if matching_strategy == "STRICT":
                most_common_name = alternate_name_og
            elif matching_strategy == "RELAXED" and alternate_name_split == official_name_split:
                most_common_name = alternate_name_og
            elif matching_strategy == "RELAXED" and not alternate_name_split.issubset(official_name_split):
                most_common_name = alternate_name_og
            most_common_name_freq = alternate_name_freq
    assert official_name_og  # (the authors print when it changes)
    return most_common_name


@pytest.mark.parametrize("official, counts", [
    ("Honda Accord 2012", {"Honda Accord 2012": 5, "Honda": 900, "2012 Honda Accord": 40, "Accord": 30}),
    ("Honda Accord 2012", {"Honda Accord 2012": 5, "Honda": 900, "Civic": 300}),
    ("tench", {"tench": 3.1, "Tinca tinca": 1.0}),
    ("pug", {"pug": 2.0, "pug-dog": 2.5, "pug dog": 2.5}),
    ("a", {"a": 1.0, "b": 1.0, "c": 0.5}),
])
def test_most_common_name_is_the_authors_rule(official, counts):
    for strategy in ("RELAXED", "STRICT"):
        expected = find_most_common_name({"name": official, "alternates": dict(counts)}, strategy)
        assert synonyms.most_common_name(official, counts, strategy) == expected


def test_shipped_wordnet_list_and_frequencies():
    assert synonyms.synonyms_of("car")[:3] == ["auto", "automobile", "machine"]
    assert synonyms.synonyms_of("Railway_Car") == synonyms.synonyms_of("railway car") != []
    assert synonyms.synonyms_of("zqxv") == [] and len(synonyms.synonyms_of("car", limit=2)) == 2
    assert synonyms.word_frequency("dog") > synonyms.word_frequency("canis familiaris") > 0
    data = synonyms.SYNONYMS_FILE.read_bytes()
    assert len(data) < 1.5e6
    source = (synonyms.SYNONYMS_FILE.parent / "synonyms.SOURCE.md").read_text(encoding="utf-8")
    assert hashlib.sha256(data).hexdigest() in source and "Princeton" in source


def test_typed_synonyms_parse_and_refusals(shapes_model, labelled):
    assert synonyms.parse_typed_synonyms("cat: kitty, feline\n\ndog: puppy\ncat: moggy") == {
        "cat": ["kitty", "feline", "moggy"], "dog": ["puppy"]}
    with pytest.raises(PromptError, match="line 1"):
        synonyms.parse_typed_synonyms("kitty, feline")
    with pytest.raises(PromptError, match="not one of the classes"):
        synonyms.synonym_swap(shapes_model, labelled, None, {"horse": ["pony"]}, TEMPLATES)
    with pytest.raises(PromptError, match="at least two"):
        synonyms.synonym_swap(shapes_model, embed_files(shapes_model, labelled.paths[:2]), ["zqxv"], {},
                              TEMPLATES)
    with pytest.raises(Refused, match="max-prompts"):
        synonyms.synonym_swap(shapes_model, labelled, None, TYPED, TEMPLATES,
                              limits=TextLimits(max_prompts=8))
