"""Searching an image index: text, image and weighted queries, duplicates, and the CLI commands."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from explorer.embed.images import ImageError
from explorer.index.build import build_index
from explorer.index.image_index import combine_vectors, open_index
from tests.shapes import CLASSES, draw_shape, make_labelled_folder

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
N_PER_CLASS = 4


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, shapes_model):
    """24 classes x 4 shapes, two exact copies of one image, and two bad files, indexed once."""
    base = tmp_path_factory.mktemp("search")
    photos = base / "photos"
    make_labelled_folder(photos, CLASSES, N_PER_CLASS, seed=1)
    (photos / "copies").mkdir()
    for name in ("copy1.png", "copy2.png"):
        shutil.copy(photos / "a_green_triangle" / "2.png", photos / "copies" / name)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (photos / "empty.webp").write_bytes(b"")
    report = build_index(shapes_model, photos, base / "idx", batch_size=16, workers=0)
    assert {f.path for f in report.failed} == {"broken.jpg", "empty.webp"}
    return base, open_index(base / "idx")


def test_text_query_finds_the_right_shapes(indexed, shapes_model):
    _, index = indexed
    for color, shape in [("red", "circle"), ("blue", "square"), ("yellow", "cross")]:
        query = index.query_vector(shapes_model, [f"a {color} {shape}"])
        hits = index.search(query, 5)[0]
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
        precision = sum(h.path.startswith(f"a_{color}_{shape}/") for h in hits) / 5
        assert precision >= 0.8, (color, shape, [h.path for h in hits])


def test_an_indexed_image_finds_itself_first(indexed, shapes_model):
    base, index = indexed
    rel = "a_purple_square/3.png"
    first = index.search(index.embedding_of(rel), 3)[0][0]
    assert first.path == rel and first.score == pytest.approx(1.0, abs=1e-4)
    assert first.absolute == (base / "photos" / rel).resolve() and first.absolute.is_file()
    # The same through the image itself, as the UI and the CLI do it.
    query = index.query_vector(shapes_model, [], [base / "photos" / rel])
    first = index.search(query, 1)[0][0]
    assert first.path == rel and first.score > 0.999


def test_batched_queries_and_k_larger_than_the_index(indexed):
    _, index = indexed
    rels = ["a_red_circle/0.png", "a_orange_cross/1.png"]
    queries = np.stack([index.embedding_of(r) for r in rels])
    results = index.search(queries, 3)
    assert [r[0].path for r in results] == rels
    everything = index.search(queries[0], 10_000)[0]
    assert len(everything) == index.count == 24 * N_PER_CLASS + 2
    with pytest.raises(ValueError, match="512-d|-d"):
        index.search(np.ones(7, dtype=np.float32), 3)


def test_query_vector_is_the_normalised_weighted_sum(indexed, shapes_model, tmp_path):
    from tests.helpers import encode_pil

    _, index = indexed
    image = draw_shape("red", "circle", size=64)
    image.save(tmp_path / "q.png")
    text = shapes_model.encode_texts(["a blue circle"])[0]
    pixels = encode_pil(shapes_model, [image])[0]
    combined = index.query_vector(shapes_model, ["a blue circle"], [tmp_path / "q.png"], [0.5, -2.0])
    expected = 0.5 * text - 2.0 * pixels
    np.testing.assert_allclose(combined, expected / np.linalg.norm(expected), atol=1e-5)
    assert np.linalg.norm(combined) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(combine_vectors(np.stack([text, pixels]), [0.5, -2.0]), combined, atol=1e-6)
    with pytest.raises(ValueError, match="2 queries"):
        index.query_vector(shapes_model, ["a"], [tmp_path / "q.png"], [1.0])
    with pytest.raises(ValueError, match="cancel out"):
        index.query_vector(shapes_model, ["a red cross", "a red cross"], [], [1.0, -1.0])
    with pytest.raises(ValueError, match="at least one"):
        index.query_vector(shapes_model, [], [])
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(ImageError, match="bad.png: not an image"):
        index.query_vector(shapes_model, [], [tmp_path / "bad.png"])


def test_weighted_query_steers_between_concepts(indexed, shapes_model):
    _, index = indexed
    # "a red circle" minus "red" plus "blue": the blue circles should win.
    query = index.query_vector(shapes_model, ["a red circle", "a red square", "a blue square"], [],
                               [1.0, -1.0, 1.0])
    hits = index.search(query, 5)[0]
    assert sum(h.path.startswith("a_blue_circle/") for h in hits) >= 3, [h.path for h in hits]


def test_duplicates_groups_exact_copies(indexed):
    _, index = indexed
    groups = [g.paths for g in index.duplicate_groups(threshold=0.9999)]
    copies = ["a_green_triangle/2.png", "copies/copy1.png", "copies/copy2.png"]
    assert copies in groups
    assert all(len(g) >= 2 and g == sorted(g) for g in groups)
    loose = [g.paths for g in index.duplicate_groups(threshold=0.5)]
    assert sum(map(len, loose)) > sum(map(len, groups))  # a lower threshold joins more images
    assert [g.paths for g in index.duplicate_groups(threshold=1.01)] == []


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_search_loads_the_index_model(indexed):
    base, _ = indexed
    result = run_cli("search", "--index", str(base / "idx"), "--text", "a red circle", "-k", "5", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [r["rank"] for r in out["results"]] == [1, 2, 3, 4, 5]
    assert sum(r["path"].startswith("a_red_circle/") for r in out["results"]) >= 4
    image = base / "photos" / "a_blue_cross" / "1.png"
    result = run_cli("search", "--index", str(base / "idx"), "--image", str(image), "--text", "a red cross",
                     "--weight", "1", "--weight", "0.1", "-k", "1", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["results"][0]["path"] == "a_blue_cross/1.png"
    assert [q["kind"] for q in out["queries"]] == ["image", "text"]
    assert [q["weight"] for q in out["queries"]] == [1.0, 0.1]


def test_cli_search_errors(indexed, tmp_path):
    base, _ = indexed
    result = run_cli("search", "--index", str(base / "idx"), "--text", "a", "--weight", "1", "--weight", "2")
    assert result.returncode == 2 and "2 --weight values for 1 queries" in result.stderr
    result = run_cli("search", "--index", str(base / "idx"))
    assert result.returncode == 2 and "at least one --text or --image" in result.stderr
    result = run_cli("search", "--index", str(tmp_path / "nothing"), "--text", "a")
    assert result.returncode == 2 and "not an index" in result.stderr
    result = run_cli("search", "--index", str(base / "idx"), "--text", "a", "--model", "ViT-B-32",
                     "--pretrained", "")
    assert result.returncode == 2 and "ViT-B-32" in result.stderr and "local-dir:" in result.stderr
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    result = run_cli("search", "--index", str(base / "idx"), "--image", str(tmp_path / "broken.jpg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    truncated = "error: broken.jpg: truncated or corrupt image (image file is truncated)"
    assert result.stderr.strip() == truncated or result.stderr.startswith("error: broken.jpg: ")


def test_cli_index_and_duplicates(tmp_path, shapes_model_dir):
    photos = tmp_path / "photos"
    make_labelled_folder(photos, CLASSES[:3], 2)
    shutil.copy(photos / "a_red_circle" / "0.png", photos / "same.png")
    (photos / "bad.png").write_bytes(b"nope")
    command = [
        "index",
        str(photos), "--index",
        str(tmp_path / "idx"), "--model", f"local-dir:{shapes_model_dir}", "--workers", "1", "--json"
    ]
    result = run_cli(*command)
    assert result.returncode == 1, result.stderr  # 1: a file failed, the rest is indexed
    out = json.loads(result.stdout)
    assert (out["added"], out["updated"], out["removed"], out["unchanged"], out["failed"]) == (7, 0, 0, 0, 1)
    assert out["failures"][0]["path"] == "bad.png" and out["index_type"] == "Flat"
    (photos / "bad.png").unlink()
    out = json.loads(run_cli(*command).stdout)
    assert (out["added"], out["removed"], out["unchanged"], out["failed"]) == (0, 1, 7, 0)

    result = run_cli("duplicates", "--index", str(tmp_path / "idx"), "--threshold", "0.9999", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["groups"] == [["a_red_circle/0.png", "same.png"]]
    result = run_cli("duplicates", "--index", str(tmp_path / "idx"), "--threshold", "0.9999")
    assert "group 1 (2 images)" in result.stdout and "same.png" in result.stdout


def test_gpu_branch_moves_the_index_and_falls_back_when_cloning_fails(indexed, monkeypatch):
    """No GPU here: stand in for faiss-gpu's cloner to check the branch that uses it (the real
    GPU kernels are unverified on these machines)."""
    import faiss

    from explorer.index import faiss_ops

    base, cpu_index = indexed
    query = cpu_index.embedding_of("a_red_circle/0.png")[None]
    expected = [(h.path, round(h.score, 5)) for h in cpu_index.search(query, 5)[0]]
    moved = []

    def fake_cpu_to_all_gpus(index):
        moved.append(type(index).__name__)
        return faiss.clone_index(index)

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", fake_cpu_to_all_gpus, raising=False)
    on_gpu = open_index(base / "idx")
    assert moved and [(h.path, round(h.score, 5)) for h in on_gpu.search(query, 5)[0]] == expected

    def refuse(index):
        raise RuntimeError("this index type has no GPU implementation")

    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", refuse)
    flat = faiss.IndexFlatIP(4)
    assert faiss_ops.to_device(flat) is flat  # stays on the CPU rather than failing


def test_combine_vectors_weighs_directions_not_lengths():
    vectors = np.array([[3.0, 0.0, 0.0], [0.0, 0.5, 0.0]], dtype=np.float32)
    half = 2 ** -0.5
    np.testing.assert_allclose(combine_vectors(vectors), [half, half, 0.0], atol=1e-6)
    np.testing.assert_allclose(combine_vectors(vectors, [1.0, -1.0]), [half, -half, 0.0], atol=1e-6)


def test_duplicates_join_images_whose_cosine_equals_the_threshold(tmp_path):
    """"At least `threshold`": a pair exactly at it is joined (cosines chosen to be exact in float32)."""
    from explorer.index.store import Store

    vectors = np.array([[1, 0, 0, 0], [0.5, 0.75 ** 0.5, 0, 0], [0, 0, 1, 0]], dtype=np.float32)
    store = Store(tmp_path / "idx", create=True)
    store.set_meta("identity", {"name": "synthetic", "pretrained": None, "embed_dim": 4, "image_size": 8,
                                "preprocess": []})
    store.set_meta("root", str(tmp_path / "photos"))
    store.write_batch([(f"{i}.png", 1, 1, v) for i, v in enumerate(vectors)])
    store.close()
    index = open_index(tmp_path / "idx")
    try:
        assert [g.paths for g in index.duplicate_groups(threshold=0.5)] == [["0.png", "1.png"]]
        assert [g.paths for g in index.duplicate_groups(threshold=0.5001)] == []
    finally:
        index.close()
