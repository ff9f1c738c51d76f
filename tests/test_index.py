"""Building image indexes: bad files, incremental updates, crash safety, model checks, FAISS types."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from explorer.index import build as index_module
from explorer.index import faiss_ops
from explorer.index.build import build_index
from explorer.index.image_index import IndexMismatchError, open_index
from explorer.index.store import IndexFormatError
from tests.shapes import CLASSES, draw_shape, make_labelled_folder

HERE = Path(__file__).resolve().parent

ROOT = HERE.parent


def add_bad_files(folder: Path) -> set[str]:
    """Files with image names that cannot be decoded; returns their relative paths."""
    bad = folder / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "garbage.jpg").write_bytes(b"this is not a jpeg")
    (bad / "empty.png").write_bytes(b"")
    good = folder / "bad" / "tmp.png"
    draw_shape("red", "circle", size=64).save(good)
    data = good.read_bytes()
    good.unlink()
    (bad / "truncated.png").write_bytes(data[: len(data) // 2])
    (bad / "notes.txt").write_text("not an image name: never looked at")
    return {"bad/garbage.jpg", "bad/empty.png", "bad/truncated.png"}


def make_folder(root: Path, n_per_class: int = 2, classes=CLASSES) -> list[str]:
    files = make_labelled_folder(root, classes, n_per_class)
    return sorted(p.relative_to(root).as_posix() for p, _ in files)


@pytest.fixture()
def count_decodes(monkeypatch):
    """Count images decoded by the indexer (workers=0 runs the decoding in this process)."""
    calls: list[str] = []
    real = index_module.prepare

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(index_module, "prepare", counting)
    return calls


def test_bad_files_are_reported_and_no_good_file_is_lost(tmp_path, shapes_model):
    good = make_folder(tmp_path / "photos")
    bad = add_bad_files(tmp_path / "photos")
    seen = []
    report = build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", batch_size=8, workers=0,
                         progress=lambda done, total: seen.append((done, total)))
    assert {f.path for f in report.failed} == bad
    assert all(f.reason for f in report.failed)
    assert report.added == len(good) == report.total and report.unchanged == report.removed == 0
    assert seen[0] == (0, len(good) + len(bad)) and seen[-1] == (len(good) + len(bad),) * 2
    index = open_index(tmp_path / "idx")
    assert index.count == len(good) and index.root == (tmp_path / "photos").resolve()
    assert all(index.embedding_of(rel) is not None for rel in good)
    assert all(index.embedding_of(rel) is None for rel in bad)
    assert {f.path for f in index.failures()} == bad


def test_worker_processes_give_the_same_embeddings_as_inline(tmp_path, shapes_model):
    good = make_folder(tmp_path / "photos", n_per_class=1)
    bad = add_bad_files(tmp_path / "photos")
    inline = build_index(shapes_model, tmp_path / "photos", tmp_path / "a", batch_size=5, workers=0)
    forked = build_index(shapes_model, tmp_path / "photos", tmp_path / "b", batch_size=5, workers=2)
    assert {f.path for f in forked.failed} == {f.path for f in inline.failed} == bad
    a, b = open_index(tmp_path / "a"), open_index(tmp_path / "b")
    for rel in good:
        np.testing.assert_allclose(a.embedding_of(rel), b.embedding_of(rel), atol=1e-6)


def test_rerun_does_only_the_new_work(tmp_path, shapes_model, count_decodes):
    photos = tmp_path / "photos"
    good = make_folder(photos)
    bad = add_bad_files(photos)
    build_index(shapes_model, photos, tmp_path / "idx", batch_size=8, workers=0)
    assert len(count_decodes) == len(good) + len(bad)

    count_decodes.clear()
    again = build_index(shapes_model, photos, tmp_path / "idx", batch_size=8, workers=0)
    decoded = sorted(Path(p).relative_to(photos).as_posix() for p in count_decodes)
    assert decoded == sorted(bad)  # only the files that failed are tried again (they may have been fixed)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, len(good))
    assert {f.path for f in again.failed} == bad  # still reported

    changed, deleted = good[0], good[1]
    old = open_index(tmp_path / "idx").embedding_of(changed)
    draw_shape("blue", "square", size=64).save(photos / changed)  # other content, new size/mtime
    os.utime(photos / changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    (photos / deleted).unlink()
    draw_shape("green", "cross", size=64).save(photos / "new.png")
    (photos / "bad" / "garbage.jpg").unlink()
    count_decodes.clear()
    report = build_index(shapes_model, photos, tmp_path / "idx", batch_size=8, workers=0)
    decoded = sorted(Path(p).relative_to(photos).as_posix() for p in count_decodes)
    assert decoded == sorted([changed, "new.png", *bad - {"bad/garbage.jpg"}])
    assert (report.added, report.updated, report.removed) == (1, 1, 2)
    assert report.unchanged == len(good) - 2 and report.total == len(good)
    assert {f.path for f in report.failed} == bad - {"bad/garbage.jpg"}
    index = open_index(tmp_path / "idx")
    assert index.embedding_of(deleted) is None
    new = index.embedding_of(changed)
    assert float(new @ old) < 0.99  # re-embedded from the new content
    hits = index.search(new, index.count)[0]
    assert deleted not in {h.path for h in hits} and hits[0].path == changed


def test_model_mismatch_is_refused_naming_both(tmp_path, shapes_model, random_vit):
    make_folder(tmp_path / "photos", n_per_class=1, classes=CLASSES[:4])
    build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", workers=0)
    with pytest.raises(IndexMismatchError) as info:
        build_index(random_vit, tmp_path / "photos", tmp_path / "idx", workers=0)
    assert shapes_model.identifier in str(info.value) and random_vit.identifier in str(info.value)
    index = open_index(tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="ViT-B-32"):
        index.check_model(random_vit)
    index.check_model(shapes_model)  # the right one passes
    assert index.count == 4  # the refused run changed nothing


def test_another_folder_is_refused(tmp_path, shapes_model):
    make_folder(tmp_path / "a", n_per_class=1, classes=CLASSES[:2])
    make_folder(tmp_path / "b", n_per_class=1, classes=CLASSES[:2])
    build_index(shapes_model, tmp_path / "a", tmp_path / "idx", workers=0)
    with pytest.raises(IndexMismatchError, match="give each folder its own"):
        build_index(shapes_model, tmp_path / "b", tmp_path / "idx", workers=0)


def test_bad_arguments_fail_before_any_work(tmp_path, shapes_model):
    make_folder(tmp_path / "photos", n_per_class=1, classes=CLASSES[:2])
    with pytest.raises(ValueError, match="folder not found"):
        build_index(shapes_model, tmp_path / "missing", tmp_path / "idx")
    with pytest.raises(ValueError, match="bad FAISS index type 'IVFx,Flat'"):
        build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", index_type="IVFx,Flat")
    assert not (tmp_path / "idx").exists()
    with pytest.raises(IndexFormatError, match="not an index"):
        open_index(tmp_path / "photos")


def test_faiss_file_lost_or_stale_is_rebuilt(tmp_path, shapes_model):
    make_folder(tmp_path / "photos", n_per_class=1)
    build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", workers=0)
    query = open_index(tmp_path / "idx").embedding_of("a_red_circle/0.png")
    expected = [(h.path, round(h.score, 5)) for h in open_index(tmp_path / "idx").search(query, 5)[0]]

    (tmp_path / "idx" / "faiss.index").write_bytes(b"garbage, as after a disk error")
    assert [(h.path, round(h.score, 5)) for h in open_index(tmp_path / "idx").search(query, 5)[0]] == expected
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())

    # A crash after a commit but before the FAISS write leaves an older manifest behind.
    with sqlite3.connect(tmp_path / "idx" / "index.db") as db:
        db.execute("DELETE FROM files WHERE path = 'a_red_circle/0.png'")
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
    index = open_index(tmp_path / "idx")
    assert index.count == manifest["count"] - 1
    assert "a_red_circle/0.png" not in {h.path for h in index.search(query, index.count)[0]}


def test_index_type_override(tmp_path, shapes_model, count_decodes):
    make_folder(tmp_path / "photos", n_per_class=2)
    report = build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", workers=0,
                         index_type="IVF4,Flat")
    assert report.index_type == "IVF4,Flat" and "nprobe" in report.params
    index = open_index(tmp_path / "idx")
    assert index.index_type == "IVF4,Flat"
    query = index.embedding_of("a_blue_cross/1.png")
    assert index.search(query, 1)[0][0].path == "a_blue_cross/1.png"
    # The choice sticks for later runs, and can be changed; the embeddings are reused.
    again = build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", workers=0)
    assert again.index_type == "IVF4,Flat"
    flat = build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", workers=0, index_type="Flat")
    assert flat.index_type == "Flat" and flat.added == 0 and flat.unchanged == 48
    count_decodes.clear()
    with pytest.raises(ValueError, match="needs at least 1024 images"):
        build_index(shapes_model, tmp_path / "photos", tmp_path / "idx2", workers=0,
                    index_type="IVF1024,Flat")
    assert count_decodes == []  # refused before any work


def clustered(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Normalised vectors around random centres: embeddings of real photo collections are clustered."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("factory", ["IVF64,Flat", "HNSW16,Flat"])
def test_approximate_indexes_are_tuned_to_the_recall_target(factory):
    vectors = clustered(6000, 32, 50)
    ids = np.arange(6000, dtype=np.int64) * 7 + 3  # ids need not be positions
    index, params = faiss_ops.build(ids, vectors, factory)
    assert len(params) == 1
    queries = vectors[:300] + vectors[300:600]
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    _, found = index.search(queries, 10)
    assert faiss_ops.recall(found, ids[exact]) >= 0.95


def test_auto_index_type_by_size():
    assert faiss_ops.auto_factory(10) == "Flat"
    assert faiss_ops.auto_factory(faiss_ops.EXACT_LIMIT) == "Flat"
    assert faiss_ops.auto_factory(1_000_000, 512, 2**36) == "IVF4096,Flat"
    assert faiss_ops.auto_factory(faiss_ops.EXACT_LIMIT + 1).startswith("IVF")


def test_write_atomic_replaces_whole_files(tmp_path):
    target = tmp_path / "f.bin"
    faiss_ops.write_atomic(target, b"old")
    faiss_ops.write_atomic(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temp files left behind


def _rows(db_path: Path) -> dict[str, tuple[int, bytes | None]]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        return {p: (i, e) for i, p, e in db.execute("SELECT id, path, embedding FROM files")}


def test_sigkill_mid_run_then_resume_embeds_each_file_once(tmp_path):
    """A real `kill -9` of `python -m explorer index` part-way; the next run finishes the job."""
    photos = tmp_path / "photos"
    good = make_folder(photos, n_per_class=2, classes=CLASSES[:12])  # 24 images
    bad = add_bad_files(photos)
    # ViT-B-32 with random weights: slow enough on a CPU (several batches a second at most)
    # that the kill lands mid-run.
    command = [sys.executable, "-m", "explorer", "index", str(photos), "--index", str(tmp_path / "idx"),
               "--model", "ViT-B-32", "--pretrained", "", "--device", "cpu", "--batch-size", "4",
               "--workers", "0", "--json"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db_path = tmp_path / "idx" / "index.db"
    deadline = time.monotonic() + 120
    committed: dict = {}
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db_path.exists():
                try:
                    committed = _rows(db_path)
                except sqlite3.DatabaseError:  # not created yet, or mid-creation
                    committed = {}
                if len(committed) >= 8:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, "the indexing run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    before = _rows(db_path)  # what survived the kill
    done = {p for p, (_, e) in before.items() if e is not None}
    assert 8 <= len(before) < len(good) + len(bad)
    partial = open_index(tmp_path / "idx")  # the partial state is usable, not corrupt
    assert partial.count == len(done)
    partial.close()

    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr  # 1: some files failed
    report = json.loads(result.stdout)
    assert report["added"] == len(good) - len(done)  # only what was not done before
    assert report["unchanged"] == len(done)
    assert {f["path"] for f in report["failures"]} == bad and report["failed"] == len(bad)
    after = _rows(db_path)
    assert sorted(after) == sorted(good + list(bad))  # every file exactly once (paths are unique)
    assert all(after[p] == before[p] for p in done)  # same row id and bytes: not re-embedded
    assert open_index(tmp_path / "idx").count == len(good)


def test_a_file_edited_behind_the_same_size_is_embedded_again(tmp_path, shapes_model, count_decodes):
    photos = tmp_path / "photos"
    photos.mkdir()
    draw_shape("red", "circle", size=48, rng=1).save(photos / "a.bmp")
    draw_shape("blue", "square", size=48, rng=2).save(photos / "b.bmp")
    build_index(shapes_model, photos, tmp_path / "idx", workers=0)
    old = open_index(tmp_path / "idx").embedding_of("a.bmp")
    size = (photos / "a.bmp").stat().st_size
    draw_shape("green", "cross", size=48,
               rng=3).save(photos / "a.bmp")  # edited in place: a BMP keeps its size
    assert (photos / "a.bmp").stat().st_size == size
    os.utime(photos / "a.bmp", ns=(time.time_ns(), time.time_ns() + 10**9))
    count_decodes.clear()
    report = build_index(shapes_model, photos, tmp_path / "idx", workers=0)
    assert [Path(p).name for p in count_decodes] == ["a.bmp"]
    assert (report.added, report.updated, report.unchanged) == (0, 1, 1)
    assert float(open_index(tmp_path / "idx").embedding_of("a.bmp") @ old) < 0.99


@pytest.mark.parametrize("device, decode, cpus, expected", [
    ("cpu", "cpu", 2, 1),     # the model is the bottleneck: one draft-decoding worker keeps up
    ("cpu", "cpu", 64, 4),
    ("cuda", "cpu", 16, 15),  # decoding is the bottleneck: every CPU but one
    ("cuda", "gpu", 16, 4),   # the GPU decodes: the workers only read files
    ("cuda", "gpu", 1, 1),
])
def test_decoding_workers_are_chosen_by_cpus_and_where_the_model_runs(device, decode, cpus, expected):
    import torch

    assert index_module.auto_workers(torch.device(device), decode, cpus=cpus) == expected


def test_index_takes_workers_auto_or_a_count(tmp_path):
    from explorer.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["index", str(tmp_path), "--index", "i"]).workers is None
    assert parse(["index", str(tmp_path), "--index", "i", "--workers", "auto"]).workers is None
    assert parse(["index", str(tmp_path), "--index", "i", "--workers", "0"]).workers == 0
    for bad in ("-1", "many"):
        with pytest.raises(SystemExit):
            parse(["index", str(tmp_path), "--index", "i", "--workers", bad])
