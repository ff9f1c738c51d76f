"""`clip-explorer probe`: each kind's --json is the core report's as_dict (plus the model), on the shapes
model; one folder per kind, encoded once by the fixture and once by each command."""
from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.cli import main
from explorer.inputs.sources import embed_folder
from explorer.science import binding, counting, synonyms
from explorer.science.prompts import builtin_template_set
from tests.shapes import draw_pair, draw_shapes, make_labelled_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root, rng = tmp_path_factory.mktemp("probe-command"), np.random.default_rng(2)
    for k, name in ((1, "one"), (2, "two_circles"), (3, "3")):
        (root / "count" / name).mkdir(parents=True)
        for i in range(3):
            draw_shapes("red", "circle", k, rng=rng).save(root / "count" / name / f"{i}.png")
    for name in ("red_circle_and_blue_square", "blue_circle_and_red_square"):
        b = binding.parse_binding(name)
        (root / "pairs" / name).mkdir(parents=True)
        for i in range(3):
            draw_pair((b.a1, b.o1), (b.a2, b.o2), rng=rng)[0].save(root / "pairs" / name / f"{i}.png")
    make_labelled_folder(root / "named", [("red", "circle"), ("blue", "square"), ("green", "circle")], 3,
                         seed=4)
    (root / "named" / "a_red_circle").rename(root / "named" / "zqxv")
    return root


def _probe(capsys, model_dir, *args: str) -> dict:
    code = main(["probe", *args, "--model", f"local-dir:{model_dir}", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def _close(a, b, where: str = "") -> None:
    """Equal JSON, floats within 1e-5 (a text batched with other texts may differ in the last bits:
    the model's packed text encoding is exact to 1e-5, and the fixture's model may have cached it)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5), where
    else:
        assert a == b, where


def _same(doc: dict, report) -> None:
    core = json.loads(json.dumps(report.as_dict()))
    _close({k: doc[k] for k in core}, core)
    assert doc["failures"] == [] and doc["model"].startswith("local-dir:")


def test_counting_json_is_the_cores(capsys, shapes_model, shapes_model_dir, folders):
    doc = _probe(capsys, shapes_model_dir, "counting", str(folders / "count"), "--object", "red circle")
    images = embed_folder(shapes_model, folders / "count")
    _same(doc, counting.counting_probe(shapes_model, images, "red circle"))
    assert doc["true"] == [3, 3, 3, 1, 1, 1, 2, 2, 2]   # class folders in name order: 3, one, two_circles

def test_grid_and_binding_json_are_the_cores(capsys, shapes_model, shapes_model_dir, folders):
    images = embed_folder(shapes_model, folders / "pairs")
    doc = _probe(capsys, shapes_model_dir, "binding", str(folders / "pairs"))
    _same(doc, binding.binding_test(shapes_model, images, None))
    doc = _probe(capsys, shapes_model_dir, "grid", str(folders / "pairs"), "--attributes", "red, blue",
                 "--objects", "circle,square")
    _same(doc, binding.attribute_grid(shapes_model, images, ["red", "blue"], ["circle", "square"]))


def test_synonyms_json_is_the_cores(capsys, shapes_model, shapes_model_dir, folders, tmp_path):
    typed = tmp_path / "typed.txt"
    typed.write_text("zqxv: a red circle, blicket\n", encoding="utf-8")
    doc = _probe(capsys, shapes_model_dir, "synonyms", str(folders / "named"), "--synonyms", str(typed),
                 "--templates", "simple")
    images = embed_folder(shapes_model, folders / "named")
    _same(doc, synonyms.synonym_swap(shapes_model, images, None, {"zqxv": ["a red circle", "blicket"]},
                                     builtin_template_set("simple")))
    assert [row["candidate"] for row in doc["scores"]["zqxv"]] == ["zqxv", "a red circle", "blicket"]


def test_usage_errors_are_clear_and_come_before_the_model_loads(capsys, folders):
    unloadable = ["--model", "local-dir:/nonexistent"]   # never reached: the arguments are checked first
    assert main(["probe", "counting", str(folders / "count"), *unloadable]) == 2
    assert "--object" in capsys.readouterr().err
    assert main(["probe", "binding", str(folders / "pairs"), "--binding", "red circle", *unloadable]) == 2
    assert "red circle and blue square" in capsys.readouterr().err
    assert main(["probe", "grid", str(folders / "pairs"), "--attributes", "red", *unloadable]) == 2
    assert "--objects" in capsys.readouterr().err


def test_loki_json_is_the_cores(capsys, shapes_model, shapes_model_dir, folders):
    loki = pytest.importorskip("explorer.science.loki")
    doc = _probe(capsys, shapes_model_dir, "loki", str(folders / "named"), "--extra", "a purple circle")
    images = embed_folder(shapes_model, folders / "named")
    _same(doc, loki.loki_probe(shapes_model, images, [], ["a purple circle"], ["a photo of a {}."]))
