"""explorer/teach.py: the Teach by example core (no gradio), on synthetic embeddings."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from explorer.inputs.sources import Embedded
from explorer.science import classifier_file, fewshot, teach


def clusters(per_class: list[int], dim: int = 16, seed: int = 0, noise: float = 0.35):
    """Well separated class clusters, and class text embeddings that point the wrong way (zero-shot
    is poor: text i sits on class (i + 1) % C), so the shots must do the work."""
    rng = np.random.default_rng(seed)
    centres = np.eye(len(per_class), dim)
    f = np.concatenate([centres[c] + noise * rng.normal(size=(n, dim)) for c, n in enumerate(per_class)])
    y = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    f = (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)
    text = np.roll(centres, 1, axis=0).astype(np.float32)
    return f, y, text


def test_confusion_counts_true_rows_and_predicted_columns():
    m = teach.confusion([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert m.sum() == 6


def test_fixes_and_breaks_against_zero_shot():
    truth = np.array([0, 1, 2, 0, 1])
    zs = np.array([0, 0, 2, 1, 1])       # right on 0, 2, 4
    method = np.array([1, 1, 2, 0, 1])   # right on 1, 2, 3, 4
    fixed, broken = teach.fixes_and_breaks(truth, zs, method)
    assert fixed.tolist() == [1, 3] and broken.tolist() == [0]


def test_shots_curve_means_spread_and_skips_counts_above_the_smallest_class():
    f, y, text = clusters([6, 5, 9])
    test = clusters([4, 4, 4], seed=1)[:2]
    curve = teach.shots_curve((f, y), test, ["a", "b", "c"], text, 50.0, ("zero-shot", "prototype"), seeds=3)
    assert curve.shots == [1, 2, 4] and curve.skipped == [8, 16]
    assert any("smallest class (b) has only 5" in n for n in curve.notes)
    assert len(curve.mean["prototype"]) == 3 and len(curve.std["prototype"]) == 3
    assert all(s == 0 for s in curve.std["zero-shot"])              # no shots: nothing varies over seeds
    assert curve.mean["prototype"][-1] > curve.mean["zero-shot"][-1] + 0.5
    assert curve.mean["zero-shot"][0] < 0.2


def test_teach_holds_out_a_part_fits_classifiers_and_beats_zero_shot():
    f, y, text = clusters([10, 10, 10])
    names = [f"{'abc'[c]}/{i}.png" for i, c in enumerate(y)]
    images = Embedded(names, [Path(n) for n in names], f, class_names=["a", "b", "c"], labels=y)
    result = teach.teach(images, text, 50.0, ("prototype", "gda"), shots=None, seeds=2, curve_shots=(1, 2))
    assert list(result.report.methods) == ["zero-shot", "prototype", "gda"]
    assert result.report.test_images == 9 and len(result.test_names) == 9
    assert any("held out for testing" in n for n in result.notes)
    assert result.report.methods["prototype"].top1 > result.report.methods["zero-shot"].top1 + 0.5
    assert result.best() in ("prototype", "gda")
    fixed, broken = result.changes("prototype")
    assert len(fixed) > 5 and len(broken) == 0
    assert result.confusions["prototype"].trace() == (result.predictions["prototype"] == result.truth).sum()
    assert result.curve.shots == [1, 2]
    with pytest.raises(ValueError, match="labelled"):
        teach.teach(Embedded(names, [], f), text, 50.0, ("gda",), None)


def test_sort_puts_unsure_images_in_none_of_these_with_the_softmax_default():
    f, y, text = clusters([5, 5])
    clf = fewshot.fit("prototype", f, y, ["a", "b"], text, 50.0, {"weight": 1.0})
    between = clf.arrays["prototypes"].sum(axis=0)    # as near one class as the other
    sorted_ = teach.sort_embeddings(clf, np.vstack([f[[0, 1, 6]], between]), ["x", "y", "z", "mid"])
    assert sorted_.threshold == pytest.approx(0.75)   # (1 + 1/2) / 2 for two classes
    assert "softmax" in sorted_.why
    assert [n for n, _ in sorted_.classes["a"]] in (["x", "y"], ["y", "x"])
    assert [n for n, _ in sorted_.classes["b"]] == ["z"]
    assert [n for n, _, _ in sorted_.none] == ["mid"]
    probs = [p for n, p in sorted_.classes["a"]]
    assert probs == sorted(probs, reverse=True)
    everyone = teach.sort_embeddings(clf, f[[0, 6]], ["x", "z"], none_threshold_value=1.01)
    assert len(everyone.none) == 2 and "chosen" in everyone.why


def test_export_zip_holds_the_classifier_pair_that_reloads(tmp_path):
    f, y, text = clusters([4, 4])
    clf = fewshot.fit("gda", f, y, ["a", "b"], text, 50.0)
    path = teach.export_zip(clf, tmp_path / "out", {"name": "m"}, {"use": "templates"})
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["classifier-gda.json", "classifier-gda.safetensors"]
        z.extractall(tmp_path / "back")
    assert json.loads((tmp_path / "back" / "classifier-gda.json").read_text())["method"] == "gda"
    back, _ = classifier_file.load(tmp_path / "back" / "classifier-gda.json", {"name": "m"})
    np.testing.assert_allclose(back.logits(f), clf.logits(f), rtol=1e-5)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["classifier-gda.zip"]   # nothing left beside it
