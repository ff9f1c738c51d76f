"""`explorer fewshot`: few-shot adaptation from labelled folders, end to end on the shapes model."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from explorer.science import classifier_file
from tests.shapes import CLASSES, make_labelled_folder

ROOT = Path(__file__).resolve().parents[1]


def _rename(root: Path, names: dict[str, str]) -> None:
    for old, new in names.items():
        (root / old).rename(root / new)


@pytest.fixture(scope="module")
def opaque_folders(tmp_path_factory):
    """Shapes whose class folders carry names the model cannot read ("kind 1" ...): zero-shot is
    near chance, while the images themselves separate well, so the shots must do the work."""
    base = tmp_path_factory.mktemp("fewshot")
    names = {f"a_{c}_{s}": f"kind_{i}" for i, (c, s) in enumerate(CLASSES[:4], start=1)}
    for split, n, seed in (("train", 8, 1), ("test", 6, 2)):
        make_labelled_folder(base / split, CLASSES[:4], n, seed=seed)
        _rename(base / split, names)
    return base


def _fewshot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer", "fewshot", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_shots_beat_zero_shot_and_the_json_reports_choices_and_timing(opaque_folders, shapes_model_dir,
                                                                      tmp_path):
    result = _fewshot(str(opaque_folders / "train"), "--test", str(opaque_folders / "test"), "--shots", "4",
                      "--seeds", "2", "--model", f"local-dir:{shapes_model_dir}", "--json",
                      "--save", str(tmp_path / "clf"))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    methods = doc["methods"]
    assert set(methods) == {"zero-shot", "prototype", "tip-adapter", "gda"}
    assert doc["shots"] == 4 and doc["seeds"] == 2 and doc["train_images"] == 16 and doc["test_images"] == 24
    assert methods["gda"]["top1"] > methods["zero-shot"]["top1"] + 0.3
    assert methods["prototype"]["top1"] > methods["zero-shot"]["top1"] + 0.3
    assert len(methods["gda"]["chosen"]) == 2 and "alpha" in methods["gda"]["chosen"][0]
    assert "cross-validation" in methods["tip-adapter"]["how_chosen"]
    assert set(methods["gda"]["per_class"]) == {"kind 1", "kind 2", "kind 3", "kind 4"}
    assert methods["gda"]["fit_seconds"] >= 0 and methods["gda"]["score_seconds"] >= 0
    assert doc["saved"] == [str(tmp_path / "clf.json"), str(tmp_path / "clf.safetensors")]


def test_without_test_folder_a_held_out_part_is_used_and_said(opaque_folders, shapes_model_dir):
    result = _fewshot(str(opaque_folders / "train"), "--method", "gda", "--model",
                      f"local-dir:{shapes_model_dir}", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc["methods"]) == {"zero-shot", "gda"}
    assert doc["test_images"] == 4 * 2 and doc["train_images"] == 4 * 6      # 30% of 8 per class held out
    assert any("held out for testing" in note for note in doc["notes"])


def test_a_saved_classifier_reloads_and_refuses_another_model(opaque_folders, shapes_model, tmp_path):
    from explorer.science import fewshot
    rng = np.random.default_rng(0)
    f = rng.normal(size=(6, shapes_model.embed_dim)).astype(np.float32)
    clf = fewshot.fit("tip-adapter", f, np.array([0, 0, 1, 1, 2, 2]), ["a", "b", "c"], f[::2], 40.0)
    identity = shapes_model.identity.as_dict()
    classifier_file.save(clf, tmp_path / "c.json", identity, {"use": "templates"})
    back, meta = classifier_file.load(tmp_path / "c.safetensors", identity)
    np.testing.assert_allclose(back.logits(f), clf.logits(f), rtol=1e-6)
    assert meta["prompts"] == {"use": "templates"}
    other = dict(identity, name="ViT-B-32", pretrained="openai")
    with pytest.raises(classifier_file.ClassifierFileError, match=r"made with .*shapes_clip.*but ViT-B-32"):
        classifier_file.load(tmp_path / "c.json", other, "ViT-B-32")


def _classify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer", "classify", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("method", ["tip-adapter", "gda"])
def test_classify_with_a_saved_classifier_reproduces_the_fewshot_predictions(opaque_folders, shapes_model_dir,
                                                                             sigmoid_model_dir, tmp_path,
                                                                             method):
    """Every training image fits the saved classifier (no --shots), so `classify --classifier` on the
    test folder must reproduce, class by class, the accuracy `fewshot` measured for that method; and
    with names the model cannot read, zero-shot with the same labels does far worse."""
    model = f"local-dir:{shapes_model_dir}"
    result = _fewshot(str(opaque_folders / "train"), "--test", str(opaque_folders / "test"), "--method",
                      method, "--model", model, "--json", "--save", str(tmp_path / "clf"))
    assert result.returncode == 0, result.stderr
    expected = json.loads(result.stdout)["methods"][method]["per_class"]
    images = sorted(str(p) for p in (opaque_folders / "test").rglob("*.png"))
    run = _classify(*images, "--classifier", str(tmp_path / "clf.json"), "--model", model, "--json",
                    "--top-k", "2")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["classifier"]["method"] == method and doc["labels"] == ["kind 1", "kind 2", "kind 3", "kind 4"]
    hits: dict[str, list[bool]] = {}
    for result_ in doc["results"]:
        truth = Path(result_["path"]).parent.name.replace("_", " ")
        best = result_["labels"][0]
        assert best["logit"] >= result_["labels"][1]["logit"] and 0 < best["probability"] <= 1
        hits.setdefault(truth, []).append(best["label"] == truth)
    got = {name: sum(h) / len(h) for name, h in hits.items()}
    assert got == pytest.approx(expected, abs=1e-9)
    zero_shot = json.loads(
        _classify(*images, "--labels", ", ".join(expected), "--model", model, "--json").stdout)
    zs_right = sum(r["labels"][0]["label"] == Path(r["path"]).parent.name.replace("_", " ")
                   for r in zero_shot["results"])
    assert sum(got.values()) / len(got) > zs_right / len(images) + 0.3
    # Another model's embedding space: refused, naming both models, exit 2.
    other = _classify(images[0], "--classifier", str(tmp_path / "clf.safetensors"),
                      "--model", f"local-dir:{sigmoid_model_dir}")
    assert other.returncode == 2 and "was made with" in other.stderr and str(
        sigmoid_model_dir) in other.stderr
    both = _classify(images[0], "--classifier", str(tmp_path / "clf.json"), "--labels", "a,b", "--model",
                     model)
    assert both.returncode == 2 and "brings its own classes" in both.stderr
