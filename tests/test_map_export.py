"""The folder map as Parquet (explorer/science/map_export.py): one row per image with its place,
folder, colour, cluster and a thumbnail, and embedding-atlas's neighbours column; written atomically;
read by embedding-atlas's own command (exported as its static app, no server) when it is installed."""
from __future__ import annotations

import importlib
import importlib.util
import io
import json
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from explorer.index.build import build_index
from explorer.index.image_index import open_index
from explorer.science import folder_map as fm
from explorer.science import map_export
from tests.shapes import make_labelled_folder

pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def a_map(shapes_model, tmp_path_factory):
    """A FolderMap of a small shapes index, with a plain PCA layout (the layout is map_layout's business)."""
    base = tmp_path_factory.mktemp("map_export")
    make_labelled_folder(base / "photos", [("red", "circle"), ("blue", "square")], 4, size=32, seed=4)
    build_index(shapes_model, base / "photos", base / "idx", workers=0)
    index = open_index(base / "idx")
    names, vectors = index.all_embeddings()
    centred = vectors - vectors.mean(axis=0)
    xy = (centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T).astype(np.float32)
    layout = SimpleNamespace(names=names, xy=xy, method="pca", settings={}, fitted=len(names), placed=0,
                             seconds=0.0)
    colouring = fm.zeroshot_colours(shapes_model, vectors, "a red circle, a blue square", none_threshold=0.0)
    clusters = fm.Clustering("kmeans", 2, 0, np.array([0 if "red" in n else 1 for n in names]),
                             {0: [("red", 0.5)], 1: [("blue", 0.4)]})
    lists = {"outliers": [{"rank": 1, "row": 3}], "mistakes": [{"rank": 1, "row": 5}, {"rank": 2, "row": 3}]}
    yield fm.FolderMap(str(index.folder), str(index.root), shapes_model.identifier, names, vectors, layout,
                       colouring, clusters, lists)
    index.close()


def test_the_parquet_holds_every_column_row_for_row(a_map, tmp_path):
    path = map_export.write_parquet(a_map, tmp_path / "out" / "map.parquet", neighbors=3)
    table = pq.read_table(path)
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == list(range(8)) and [r["name"] for r in rows] == a_map.names
    assert [r["path"] for r in rows] == [str(a_map.root) + "/" + n for n in a_map.names]
    assert np.allclose([[r["x"], r["y"]] for r in rows], a_map.xy, atol=1e-6)
    assert [r["label"] for r in rows] == [n.split("/")[0] for n in a_map.names]
    assert [r["predicted"] for r in rows] == a_map.colouring.labels()  # threshold 0: none flagged
    assert np.allclose([r["p: a red circle"] for r in rows], a_map.colouring.probabilities[:, 0])
    assert [r["cluster_name"] for r in rows] == ["red" if "red" in n else "blue" for n in a_map.names]
    assert rows[3]["outlier_rank"] == 1 and rows[5]["mistake_rank"] == 1 and rows[3]["mistake_rank"] == 2
    assert rows[0]["mistake_rank"] is None
    assert all(r["image"]["bytes"][:2] == b"\xff\xd8" for r in rows)  # JPEG thumbnails
    about = json.loads(table.schema.metadata[map_export.METADATA_KEY])
    assert about["model"] == a_map.model and about["layout"]["method"] == "pca"
    assert [p.name for p in path.parent.iterdir()] == ["map.parquet"]  # no temporary file left


def test_neighbors_are_embedding_atlas_s_format_exact_cosine_distances(a_map, tmp_path):
    rows = pq.read_table(map_export.write_parquet(a_map, tmp_path / "m.parquet", neighbors=3,
                                                  images="none")).to_pylist()
    f = a_map.embeddings / np.linalg.norm(a_map.embeddings, axis=1, keepdims=True)
    for i, row in enumerate(rows):
        expected = np.argsort(-(f @ f[i]), kind="stable")[:3]
        assert set(row["neighbors"]) == {"ids", "distances"} and row["neighbors"]["ids"][0] == i
        assert sorted(row["neighbors"]["ids"]) == sorted(expected.tolist())
        assert np.allclose(row["neighbors"]["distances"], 1 - f[i] @ f[row["neighbors"]["ids"]].T, atol=1e-5)
        assert row["image"] is None


def test_a_failed_write_leaves_the_old_file(a_map, tmp_path, monkeypatch):
    path = map_export.write_parquet(a_map, tmp_path / "m.parquet", images="none")
    before = path.read_bytes()
    monkeypatch.setattr(pq, "write_table", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        map_export.write_parquet(a_map, path, images="none")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.parquet"]


def test_embedding_atlas_reads_it(a_map, tmp_path):
    """embedding-atlas's own command line loads the file, computes PageRank from our neighbours column
    and exports its static app with our rows (no server started)."""
    if importlib.util.find_spec("embedding_atlas") is None:   # setup.sh --dev installs it; elsewhere: skip
        pytest.skip("embedding-atlas is not installed (pip install --no-deps -r requirements-atlas.txt)")
    cli = importlib.import_module("embedding_atlas.cli")   # installed but broken: a failure, not a skip
    from click.testing import CliRunner

    path = map_export.write_parquet(a_map, tmp_path / "map.parquet", neighbors=4)
    out = tmp_path / "atlas.zip"
    arguments = [str(path), "--x", "x", "--y", "y", "--image", "image", "--neighbors", "neighbors",
                 "--text", "name", "--export-application", str(out)]
    result = CliRunner().invoke(cli.main, arguments)
    assert result.exit_code == 0, result.output + repr(result.exception)
    with zipfile.ZipFile(out) as z:
        props = json.loads(z.read("data/metadata.json"))["props"]
        dataset = z.read("data/dataset.parquet")
    assert props["data"]["projection"] == {"x": "x", "y": "y"} and props["data"]["neighbors"] == "neighbors"
    loaded = pq.read_table(io.BytesIO(dataset)).to_pylist()
    assert [r["name"] for r in loaded] == a_map.names
    assert all(r["pagerank"] > 0 for r in loaded)  # made from our neighbours column


def test_an_image_gone_since_indexing_has_no_thumbnail(a_map, tmp_path):
    gone = tmp_path / "gone.png"
    made = map_export._thumbnails([a_map.paths()[0], str(gone)], ["a.png", "gone.png"],
                                  map_export.DEFAULT_LIMITS, 48, None, workers=2)
    assert made[0]["path"] == "a.jpg" and made[0]["bytes"][:2] == b"\xff\xd8" and made[1] is None
