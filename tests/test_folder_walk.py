"""Folder walking reports what it skips, and never leaves the folder the user chose (issue 9)."""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from explorer.embed import images
from explorer.embed.images import ImageError, ImageFailure, read_file
from explorer.index.build import build_index
from explorer.inputs.folders import class_folders, walk_folder
from explorer.inputs.sources import embed_folder, single_top_folder
from tests import shapes


def picture(path: Path, color="red", shape="circle") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes.draw_shape(color, shape, size=40).save(path)
    return path


def skipped(scan, root) -> dict[str, str]:
    return {f.path: f.reason for f in scan.skipped_under(root)}


@pytest.fixture
def messy(tmp_path):
    """root/ with good images and every kind of entry a walk must skip; outside/ beside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    picture(root / "a.png")
    picture(root / "sub/b.png", "blue", "square")
    picture(outside / "secret_file.png")
    (root / "out_dir").symlink_to(outside, target_is_directory=True)
    (root / "out_file.png").symlink_to(outside / "secret_file.png")
    (root / "out_notes.txt").symlink_to(outside / "secret_file.png")  # a link out, whatever its name
    (root / "broken.jpg").symlink_to(root / "nowhere.jpg")
    (root / "loop_a").symlink_to(root / "loop_b")
    (root / "loop_b").symlink_to(root / "loop_a")
    (root / "sub/up").symlink_to(root, target_is_directory=True)  # back to an ancestor
    (root / "sub/same.png").symlink_to(root / "a.png")             # a second name inside: fine
    os.mkfifo(root / "pipe.jpg")
    os.mkfifo(root / "pipe_notes")  # not an image's name: none of the walk's business
    return root


REASONS = {
    "out_dir": "link leads outside the folder",
    "out_file.png": "link leads outside the folder",
    "out_notes.txt": "link leads outside the folder",
    "broken.jpg": "broken link",
    "loop_a": "link loop",
    "loop_b": "link loop",
    "sub/up": "link loop",
    "pipe.jpg": "not a regular file (FIFO)",
}


def walk_in_thread(*args, **kwargs):
    """walk_folder, failing (not hanging) if it ever blocks, as opening a FIFO would."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(scan=walk_folder(*args, **kwargs)), daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert "scan" in result, "the walk blocked"
    return result["scan"]


def test_walk_reports_every_skipped_entry_with_its_reason(messy):
    scan = walk_in_thread(messy)
    assert [p.relative_to(messy).as_posix() for p in scan.files] == ["a.png", "sub/b.png", "sub/same.png"]
    assert skipped(scan, messy) == REASONS
    assert all(Path(f.path).is_absolute() for f in scan.skipped)


def test_walk_reports_sockets_and_unreadable_folders(tmp_path, monkeypatch):
    root = tmp_path / "r"
    picture(root / "ok/a.png")
    picture(root / "locked/b.png")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(root / "s.png"))
    except OSError:  # a path too long for a socket address
        pytest.skip("cannot make a socket here")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":  # as root, chmod 000 would not stop us: pretend
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)
    monkeypatch.setattr(images.os, "scandir", scandir)
    try:
        scan = walk_folder(root)
    finally:
        server.close()
    assert [p.name for p in scan.files] == ["a.png"]
    assert skipped(scan, root) == {"locked": "cannot read folder (Permission denied)",
                                   "s.png": "not a regular file (socket)"}


def test_a_root_outside_within_is_not_walked(tmp_path):
    picture(tmp_path / "elsewhere/secret_file.png")
    (tmp_path / "top").mkdir()
    (tmp_path / "top/cls").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    scan = walk_folder(tmp_path / "top/cls", within=tmp_path / "top")
    assert scan.files == []
    assert scan.skipped == [ImageFailure(str(tmp_path / "top/cls"), "link leads outside the folder")]
    with pytest.raises(ImageError, match="folder not found"):
        walk_folder(tmp_path / "missing")


def test_read_file_never_blocks_on_a_fifo_swapped_in_after_the_check(tmp_path, monkeypatch):
    fifo, real_file = tmp_path / "swap.png", picture(tmp_path / "real.png")
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(images.os, "stat", lambda p, *a, **k: real_stat(real_file
                                                                        if Path(p) == fifo else p, *a, **k))
    outcome = {}

    def read():
        try:
            read_file(fifo)
        except ImageError as exc:
            outcome["reason"] = exc.reason
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():  # unblock the open so the thread can end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("read_file blocked opening a FIFO")
    assert outcome == {"reason": "not a regular file"}


# --- sources: the skipped entries are failures of the source --------------------------------------------

def test_embed_folder_lists_the_skipped_entries_among_its_failures(shapes_model, messy):
    found = embed_folder(shapes_model, messy, labelled=False)
    assert found.names == ["a.png", "sub/b.png", "sub/same.png"]
    assert {f.path: f.reason for f in found.failures} == REASONS
    assert "secret_file" not in repr(found)


@pytest.fixture
def allowed(tmp_path):
    """allowed/ with two real class folders and a link to a secret folder elsewhere."""
    top, secret = tmp_path / "allowed", tmp_path / "elsewhere" / "secret"
    picture(top / "cat/c1.png", "red", "circle")
    picture(top / "cat/c2.png", "red", "circle")
    picture(top / "dog/d1.png", "blue", "square")
    picture(secret / "topsecret_kitten.png", "green", "cross")
    picture(secret / "inner/topsecret_puppy.png", "green", "cross")
    (top / "secret").symlink_to(secret, target_is_directory=True)
    (top / "dog/sneaky").symlink_to(secret, target_is_directory=True)  # a link out from inside a class
    return top


@pytest.mark.parametrize("labelled", [None, True])
def test_a_class_folder_linking_outside_is_no_class_and_nothing_of_it_is_read(
        shapes_model, allowed, labelled):
    found = embed_folder(shapes_model, allowed, labelled=labelled)
    assert found.labelled and found.class_folders == ["cat", "dog"] and found.class_names == ["cat", "dog"]
    assert found.names == ["cat/c1.png", "cat/c2.png", "dog/d1.png"] and found.labels.tolist() == [0, 0, 1]
    assert {f.path: f.reason for f in found.failures} == {"secret": "link leads outside the folder",
                                                         "dog/sneaky": "link leads outside the folder"}
    assert "topsecret" not in repr(found) and "elsewhere" not in repr(found)
    assert class_folders(allowed) == ["cat", "dog"]


def test_class_links_that_stay_inside_are_classes(shapes_model, allowed):
    (allowed / "kitten").symlink_to(allowed / "cat", target_is_directory=True)
    (allowed / "everything").symlink_to(allowed, target_is_directory=True)
    (allowed / "gone").symlink_to(allowed / "nowhere", target_is_directory=True)
    found = embed_folder(shapes_model, allowed)
    assert found.class_folders == ["cat", "dog", "kitten"]
    reasons = {f.path: f.reason for f in found.failures}
    assert reasons["everything"] == "link loop" and reasons["gone"] == "broken link"


def test_single_top_folder_never_steps_into_a_link(tmp_path):
    picture(tmp_path / "elsewhere/x.png")
    (tmp_path / "upload").mkdir()
    (tmp_path / "upload/data").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert single_top_folder(tmp_path / "upload") == tmp_path / "upload"
    picture(tmp_path / "zip/data/cat/a.png")
    picture(tmp_path / "zip/data/dog/b.png")
    assert single_top_folder(tmp_path / "zip") == tmp_path / "zip/data"


def test_build_index_reports_the_skipped_entries(shapes_model, messy, tmp_path):
    report = build_index(shapes_model, messy, tmp_path / "idx", batch_size=4, workers=0)
    assert report.total == 3
    assert {f.path: f.reason for f in report.failed} == REASONS
