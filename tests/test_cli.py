"""The command line end to end, in a subprocess, as a script would call it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests import shapes

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})


def test_classify_json_picks_the_right_labels_and_reports_bad_files(shapes_model_dir, tmp_path):
    rng = np.random.default_rng(99)
    classes = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross"),
               ("purple", "triangle"), ("orange", "circle")]
    paths, truth = [], {}
    for i in range(24):
        color, shape = classes[i % len(classes)]
        path = tmp_path / f"img{i}.png"
        shapes.draw_shape(color, shape, size=80, rng=rng).save(path)
        paths.append(str(path))
        truth[str(path)] = shapes.caption(color, shape)
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    labels = ",".join(shapes.caption(*c) for c in classes)
    result = _run("classify", *paths, str(bad), "--labels", labels, "--model",
                  f"local-dir:{shapes_model_dir}", "--templates", "simple", "--top-k", "3", "--json")
    assert result.returncode == 1, result.stderr  # one image failed; the others are still reported
    doc = json.loads(result.stdout)
    assert doc["templates"] == 7 and len(doc["labels"]) == 6
    assert [e["path"] for e in doc["errors"]] == [str(bad)] and "empty" in doc["errors"][0]["error"]
    assert len(doc["results"]) == 24
    for entry in doc["results"]:
        assert len(entry["labels"]) == 3
        probs = [label["probability"] for label in entry["labels"]]
        assert probs == sorted(probs, reverse=True)
        assert all(-1 <= label["cosine"] <= 1 for label in entry["labels"])
    correct = sum(entry["labels"][0]["label"] == truth[entry["path"]] for entry in doc["results"])
    assert correct / 24 >= 0.9


def test_classify_exit_codes(shapes_model_dir, tmp_path):
    image = tmp_path / "a.png"
    shapes.draw_shape("red", "circle", rng=np.random.default_rng(0)).save(image)
    ok = _run("classify", str(image), "--labels", "a red circle, a blue square",
              "--model", f"local-dir:{shapes_model_dir}")
    assert ok.returncode == 0 and "a red circle" in ok.stdout.splitlines()[1]
    missing_model = _run("classify", str(image), "--labels", "a, b", "--model", f"local-dir:{tmp_path}/nope")
    assert missing_model.returncode == 2 and "folder not found" in missing_model.stderr
    one_label = _run("classify", str(image), "--labels", "cat, cat", "--model",
                     f"local-dir:{shapes_model_dir}")
    assert one_label.returncode == 2 and "at least two" in one_label.stderr


def test_the_installed_command_works_from_any_folder(shapes_model_dir, tmp_path):
    """`pip install -e .` (the set-up script) puts `clip-explorer` beside the interpreter; it and
    `python -m explorer` find the package and its built-in template sets from any folder."""
    image = tmp_path / "a.png"
    shapes.draw_shape("blue", "square", rng=np.random.default_rng(1)).save(image)
    args = ["classify", str(image), "--labels", "a red circle, a blue square", "--templates", "openai",
            "--model", f"local-dir:{shapes_model_dir}", "--json"]
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    command = Path(sys.executable).with_name("clip-explorer")
    for argv in ([str(command), *args], [sys.executable, "-m", "explorer", *args]):
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["templates"] == 80 and doc["results"][0]["labels"][0]["label"] == "a blue square"


def test_indexes_command_lists_what_the_app_and_the_cli_built(shapes_model_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        shapes.draw_shape("red", "circle", size=32, rng=np.random.default_rng(i)).save(photos / f"{i}.png")
    index_dir = tmp_path / "indexes"
    built = _run("index", str(photos), "--index", str(index_dir / "mine"), "--model",
                 f"local-dir:{shapes_model_dir}", "--workers", "0", "--json")
    assert built.returncode == 0, built.stderr
    listed = _run("indexes", "--index-dir", str(index_dir), "--json")
    doc = json.loads(listed.stdout)
    assert [(i["root"], i["images"]) for i in doc["indexes"]] == [(str(photos.resolve()), 3)]
    assert doc["indexes"][0]["model"].startswith("local-dir:")
