"""`clip-explorer map INDEX`: the folder map from the terminal, the same numbers as folder_map.build_map
(what the Map tab shows), and --export writes the Parquet file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.cli import main
from explorer.commands import map as map_command
from explorer.index.build import build_index
from explorer.index.image_index import open_index
from explorer.science import folder_map as fm
from tests.shapes import draw_shape, make_labelled_folder

CLASSES = [("red", "circle"), ("blue", "square"), ("green", "triangle")]
LABELS = "a red circle, a blue square, a green triangle"


@pytest.fixture(autouse=True)
def word_cache(monkeypatch, tmp_path_factory):
    """Word vectors cached under the test run's folder, not the user's ~/.cache (vocabulary.py)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg"))


@pytest.fixture(scope="module")
def shapes_index(shapes_model, shapes_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("map_command")
    make_labelled_folder(base / "photos", CLASSES, 3, size=32, seed=11)
    odd = draw_shape("green", "triangle", size=32, rng=np.random.default_rng(12))
    odd.save(base / "photos" / "a_blue_square" / "odd.png")
    build_index(shapes_model, base / "photos", base / "idx", workers=0)
    (base / "words.txt").write_text("red\nblue\ngreen\ncircle\nsquare\ntriangle\n")
    return base


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["map", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_is_what_build_map_gives_and_export_writes_the_parquet(shapes_model, shapes_model_dir,
                                                                    shapes_index, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    base = shapes_index
    code, out, _ = _run(capsys, base / "idx", "--method", "pca", "--labels", LABELS, "--clusters", "3",
                        "--vocabulary", base / "words.txt", "--model", f"local-dir:{shapes_model_dir}",
                        "--json", "--export", base / "map.parquet", "--no-images")
    assert code == 0
    doc = json.loads(out)
    index = open_index(base / "idx")
    try:
        direct = fm.build_map(shapes_model, index, fm.MapRequest(
            method="pca", colour_by="zeroshot", labels=LABELS, clusters=3, vocabulary=str(base / "words.txt"),
            templates=["a photo of a {}."])).as_dict()
    finally:
        index.close()
    for key in ("points", "colouring", "clusters", "lists", "count", "model"):
        assert doc[key] == direct[key], key
    odd = [p["name"] for p in doc["points"]].index("a_blue_square/odd.png")
    assert doc["points"][odd]["colour"] == "a green triangle" and doc["lists"]["mistakes"][0]["row"] == odd
    rows = pq.read_table(doc["export"]).to_pylist()
    assert [r["name"] for r in rows] == [p["name"] for p in doc["points"]]
    assert [r["colour"] for r in rows] == [p["colour"] for p in doc["points"]]


def test_text_summary_and_refusals(shapes_model_dir, shapes_index, capsys, monkeypatch):
    base = shapes_index
    model = ["--model", f"local-dir:{shapes_model_dir}"]
    code, out, _ = _run(capsys, base / "idx", "--method", "pca", "--query", "a red circle", "--clusters", "3",
                        "--vocabulary", base / "words.txt", "--no-lists", *model)
    assert code == 0 and "each image by its cosine with the query “a red circle”" in out
    assert "clusters (kmeans):" in out
    loads = []
    monkeypatch.setattr(map_command, "model_from", lambda settings: loads.append(settings))  # refused first
    code, _, err = _run(capsys, base / "idx", "--method", "pca", "--colour-by", "taught", *model)
    assert code == 2 and "taught classifier" in err
    code, _, err = _run(capsys, base / "idx", "--method", "pca", "--labels", "just one", *model)
    assert code == 2 and "at least two" in err and loads == []


def test_flags_become_the_request(tmp_path):
    from explorer.cli import build_parser

    args = build_parser().parse_args(["map", "idx", "--query", "a dog", "--query-image", "a/1.png",
                                      "--query-image", str(tmp_path / "new.jpg"), "--templates", "simple"])
    request = map_command._request(args, {"a/1.png", "b/2.png"})
    assert request.colour_by == "query" and request.query_text == "a dog"
    assert request.query_names == ["a/1.png"] and request.query_images == [str(tmp_path / "new.jpg")]
    assert len(request.templates) == 7 and request.method == "umap" and request.lists
    args = build_parser().parse_args(["map", "idx", "--labels", "a, b", "--no-lists", "--method", "pca"])
    request = map_command._request(args, set())
    assert (request.colour_by, request.labels, request.lists) == ("zeroshot", "a, b", False)
    assert request.method == "pca"


def test_explain_adds_each_named_images_words(shapes_model, shapes_model_dir, shapes_index, capsys):
    base = shapes_index
    common = [base / "idx", "--method", "pca", "--no-lists", "--clusters", "3", "--vocabulary",
              base / "words.txt", "--model", f"local-dir:{shapes_model_dir}"]
    code, out, _ = _run(capsys, *common, "--json", "--explain", "a_blue_square/odd.png", "a_red_circle/0.png")
    assert code == 0
    doc = json.loads(out)
    odd, red = doc["explanations"]
    assert odd["name"] == "a_blue_square/odd.png" and red["name"] == "a_red_circle/0.png"
    assert {w for w, _ in odd["words"][:2]} == {"green", "triangle"}, odd    # what it shows, not its folder
    assert {w for w, _ in red["words"][:2]} == {"red", "circle"}, red
    index = open_index(base / "idx")
    try:
        names, vectors = index.all_embeddings()
    finally:
        index.close()
    words = fm.load_words(shapes_model, str(base / "words.txt"))
    direct = fm.explain(words, vectors, names.index("a_red_circle/0.png"), name="a_red_circle/0.png")
    assert red == json.loads(json.dumps(direct.as_dict()))
    code, out, _ = _run(capsys, *common, "--explain", "a_red_circle/0.png")
    assert code == 0 and "a_red_circle/0.png in words (SpLiCE, cosine" in out
    code, _, err = _run(capsys, *common, "--explain", "no/such.png")
    assert code == 2 and "not an image of this index" in err
