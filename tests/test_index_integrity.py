"""An index is safe to keep and to share: a damaged faiss.index is found and rebuilt, files that
failed are tried again, builds of one index take turns across processes, a damaged index.db is
reported and left alone, and an interrupted write leaves the previous files usable."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from explorer.cli import main as cli_main
from explorer.index import build as index_build_module
from explorer.index.build import build_index
from explorer.index.image_index import open_index
from explorer.index.registry import damaged_indexes, list_indexes
from explorer.index.store import IndexDamagedError, Store, folder_lock
from tests.shapes import CLASSES, make_labelled_folder

ROOT = Path(__file__).resolve().parents[1]


def make_folder(root: Path, n_per_class: int = 2, classes=CLASSES) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p, _ in make_labelled_folder(root, classes, n_per_class))


def ranked(index, query, k=10) -> list[tuple[str, float]]:
    return [(h.path, round(h.score, 5)) for h in index.search(query, k)[0]]


def damage(path: Path, n: int = 1024) -> None:
    """Overwrite `n` bytes in the middle of a file with random bytes, keeping its size."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + n] = np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


# ---- a damaged faiss.index ------------------------------------------------------------------------------
def test_garbage_in_the_faiss_file_is_found_and_repaired(tmp_path, shapes_model):
    make_folder(tmp_path / "photos")
    build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", workers=0)
    faiss_file, manifest_file = tmp_path / "idx" / "faiss.index", tmp_path / "idx" / "manifest.json"
    index = open_index(tmp_path / "idx")
    assert index.repaired is None
    query = index.embedding_of("a_red_circle/0.png")
    expected = ranked(index, query)
    index.close()
    manifest = json.loads(manifest_file.read_text())
    assert manifest["sha256"] == hashlib.sha256(faiss_file.read_bytes()).hexdigest()

    damage(faiss_file)
    # The premise: FAISS itself reads the damaged file without complaint and answers wrongly.
    trusted = faiss.deserialize_index(np.fromfile(faiss_file, dtype=np.uint8))
    scores, _ = trusted.search(query[None], 10)
    assert not np.allclose(scores[0], [s for _, s in expected], atol=1e-4)

    index = open_index(tmp_path / "idx")
    assert index.repaired and "faiss.index was damaged" in index.repaired
    assert "48 embeddings" in index.repaired
    assert ranked(index, query) == expected
    index.close()
    # The repaired file was written, with its checksum; the next open finds nothing wrong.
    assert json.loads(manifest_file.read_text())["sha256"] == hashlib.sha256(
        faiss_file.read_bytes()).hexdigest()
    again = open_index(tmp_path / "idx")
    assert again.repaired is None and ranked(again, query) == expected
    again.close()

    # A build finds it too, and says so in its report.
    damage(faiss_file)
    report = build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", workers=0)
    assert report.added == report.updated == 0 and any("faiss.index was damaged" in n for n in report.notes)
    assert ranked(open_index(tmp_path / "idx"), query) == expected


# ---- failed files are tried again -------------------------------------------------------------------------
def _break(path: Path) -> None:
    """Make `path` unreadable as an image without changing its size or mtime: chmod 000, or (as
    root, who reads it anyway) garbage bytes of the same length."""
    path.chmod(0)
    try:
        path.read_bytes()
    except PermissionError:
        return
    path.chmod(0o644)
    path.write_bytes(b"\0" * path.stat().st_size)


def test_a_failed_file_fixed_behind_the_same_size_and_mtime_is_indexed(tmp_path, shapes_model):
    photos = tmp_path / "photos"
    good = make_folder(photos, n_per_class=1, classes=CLASSES[:4])
    victim = photos / good[0]
    data, st = victim.read_bytes(), victim.stat()
    _break(victim)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    first = build_index(shapes_model, photos, tmp_path / "idx", workers=0)
    assert [f.path for f in first.failed] == [good[0]] and first.total == 3

    # A second run while it is still broken: tried again, still failed, and no FAISS rebuild.
    generation = Store(tmp_path / "idx").generation
    still = build_index(shapes_model, photos, tmp_path / "idx", workers=0)
    assert [f.path for f in still.failed] == [good[0]] and (still.added, still.updated) == (0, 0)
    assert Store(tmp_path / "idx").generation == generation

    victim.chmod(0o644)
    victim.write_bytes(data)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (victim.stat().st_size, victim.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    fixed = build_index(shapes_model, photos, tmp_path / "idx", workers=0)
    assert fixed.failed == [] and (fixed.added, fixed.updated, fixed.unchanged) == (1, 0,
                                                                                    3) and fixed.total == 4
    index = open_index(tmp_path / "idx")
    assert index.failures() == [] and index.search(index.embedding_of(good[0]), 1)[0][0].path == good[0]


# ---- builds of one index take turns ------------------------------------------------------------------------
# `python -m explorer index` that notes its arrival at the index lock (a file in ARRIVALS) and, once
# holding it, decodes nothing until two runs have arrived (or a minute has passed): the second surely
# finds the lock taken.
_CLI = """
import os, sys, time
from pathlib import Path
from explorer.index import build as index_build
arrivals, real_lock, real_prepare = Path(sys.argv[1]), index_build.folder_lock, index_build.prepare
deadline = time.monotonic() + 60

def arriving(folder, **kwargs):
    (arrivals / str(os.getpid())).touch()
    return real_lock(folder, **kwargs)

def prepare(*args, **kwargs):
    while len(list(arrivals.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.02)
    return real_prepare(*args, **kwargs)

index_build.folder_lock, index_build.prepare = arriving, prepare
from explorer.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_two_processes_building_one_index_take_turns(tmp_path, shapes_model_dir):
    photos, arrivals = tmp_path / "photos", tmp_path / "arrivals"
    good = make_folder(photos)
    arrivals.mkdir()
    command = [
        sys.executable, "-c", _CLI,
        str(arrivals), "index",
        str(photos), "--index",
        str(tmp_path / "idx"), "--model", f"local-dir:{shapes_model_dir}", "--workers", "0", "--batch-size",
        "8", "--json"
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    first, second = sorted((json.loads(out) for out, _ in outputs), key=lambda r: r["waited"])
    assert first["waited"] == 0 and first["added"] == len(good) and first["notes"] == []
    # The second waited for the whole first build, then found everything done: nothing encoded twice.
    assert second["waited"] > 0.5 and (second["added"], second["updated"], second["unchanged"]) == (0, 0,
                                                                                                    len(good))
    assert second["notes"] == [f"waited {second['waited']:.1f} s for another build of this index to finish"]
    with sqlite3.connect(tmp_path / "idx" / "index.db") as db:
        ids = sorted(i for (i,) in db.execute("SELECT id FROM files"))
    assert ids == list(range(1, len(good) + 1))  # one row each, never re-written
    index = open_index(tmp_path / "idx")
    assert index.count == len(good) and index.repaired is None


def test_a_build_waits_for_the_lock_and_the_cli_says_so(tmp_path, shapes_model_dir, capsys, monkeypatch):
    photos = tmp_path / "photos"
    make_folder(photos, n_per_class=1, classes=CLASSES[:3])
    (tmp_path / "idx").mkdir()
    held, arrived = threading.Event(), threading.Event()
    real_lock = index_build_module.folder_lock

    def arriving(folder, **kwargs):
        arrived.set()
        return real_lock(folder, **kwargs)

    def hold():  # another build, as far as the lock can tell (a flock per open file, so threads conflict too)
        with folder_lock(tmp_path / "idx"):
            held.set()
            arrived.wait(60)
            time.sleep(1.0)

    monkeypatch.setattr(index_build_module, "folder_lock", arriving)
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    code = cli_main([
        "index",
        str(photos), "--index",
        str(tmp_path / "idx"), "--model", f"local-dir:{shapes_model_dir}", "--workers", "0"
    ])
    holder.join()
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("3 added")
    waited = [line for line in err.splitlines() if line.startswith("note: waited ")]
    assert len(waited) == 1 and waited[0].endswith("s for another build of this index to finish")
    assert float(waited[0].split()[2]) >= 0.9


# ---- a damaged index.db ------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"not an SQLite database, just some text. " * 50],
                         ids=["empty", "garbage"])
def test_a_damaged_database_is_reported_and_left_alone(tmp_path, shapes_model, content):
    photos = tmp_path / "photos"
    make_folder(photos, n_per_class=1, classes=CLASSES[:2])
    index_dir = tmp_path / "indexes"
    build_index(shapes_model, photos, index_dir / "good", workers=0)
    build_index(shapes_model, photos, index_dir / "bad", workers=0)
    db = index_dir / "bad" / "index.db"
    db.write_bytes(content)
    st = db.stat()

    for attempt in (lambda: open_index(index_dir / "bad"),
                    lambda: build_index(shapes_model, photos, index_dir / "bad", workers=0)):
        with pytest.raises(IndexDamagedError) as info:
            attempt()
        message = str(info.value)
        assert str(db) in message and "empty or damaged" in message
        assert f"Delete the folder {index_dir / 'bad'} to rebuild" in message
    assert db.read_bytes() == content and db.stat().st_mtime_ns == st.st_mtime_ns  # untouched
    assert not (index_dir / "bad" / "index.db-wal").exists()

    assert [i.folder.name for i in list_indexes(index_dir)] == ["good"]
    assert [(folder.name, "empty or damaged" in why)
            for folder, why in damaged_indexes(index_dir)] == [("bad", True)]
    assert db.read_bytes() == content


def test_the_cli_names_the_damaged_database_and_exits_2(tmp_path, shapes_model_dir, capsys):
    photos = tmp_path / "photos"
    make_folder(photos, n_per_class=1, classes=CLASSES[:2])
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "index.db").write_bytes(b"")
    code = cli_main([
        "index",
        str(photos), "--index",
        str(tmp_path / "idx"), "--model", f"local-dir:{shapes_model_dir}", "--workers", "0"
    ])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'idx' / 'index.db'} is empty or damaged" in err and "Delete the folder" in err
    assert (tmp_path / "idx" / "index.db").stat().st_size == 0


# ---- an interrupted write ---------------------------------------------------------------------------------
def test_a_build_interrupted_while_writing_faiss_leaves_the_previous_files(tmp_path, shapes_model,
                                                                           monkeypatch):
    photos = tmp_path / "photos"
    make_folder(photos, n_per_class=1, classes=CLASSES[:4])
    build_index(shapes_model, photos, tmp_path / "idx", workers=0)
    files = {name: (tmp_path / "idx" / name).read_bytes() for name in ("faiss.index", "manifest.json")}
    make_labelled_folder(photos / "more", CLASSES[4:6], 1)

    real_fsync = os.fsync

    def crash(fd):  # the new faiss.index is half on disk, under its temporary name
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        build_index(shapes_model, photos, tmp_path / "idx", workers=0)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert {name: (tmp_path / "idx" / name).read_bytes() for name in files} == files
    assert not [p.name for p in (tmp_path / "idx").iterdir() if p.name.endswith(".tmp")]
    # The embeddings committed before the crash are kept; the stale FAISS file is rebuilt, not "repaired".
    index = open_index(tmp_path / "idx")
    assert index.count == 6 and index.repaired is None
