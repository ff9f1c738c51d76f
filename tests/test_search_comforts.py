"""Search comforts (issue 12), without a browser: an index build that is cancelled part-way keeps what
it did, stays usable and resumes; a result opens full size with its path and score; near-duplicate
groups are listed with their cosines and thumbnails; and an index made by `clip-explorer index`
anywhere under the allowed roots can be opened in the app (tests/browser/test_search_comforts_page.py
drives the same through the page)."""
from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer.app.ui import common, gap_tab, search_html, search_tab
from explorer.index import build as index_build
from explorer.index.build import build_index
from explorer.index.image_index import IndexMismatchError, open_index
from explorer.index.store import folder_lock
from explorer.inputs.roots import PathRefused
from tests.helpers import local_context
from tests.shapes import CLASSES, draw_shape, make_labelled_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ctx(shapes_model, tmp_path, tmp_path_factory):
    return local_context(shapes_model, tmp_path, tmp_path_factory.getbasetemp()).scoped(None)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("comforts") / "photos"
    make_labelled_folder(root, CLASSES[:5], 4, size=48, seed=2)  # 20 images
    return root


def stop_after(batches: int):
    """A should_stop that says yes once asked `batches` times after a commit (the first ask is before any)."""
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > batches
    return should_stop


# ---- cancelling a build -------------------------------------------------------------------------------
def test_a_cancelled_build_keeps_its_batches_is_usable_and_resumes(shapes_model, photos, tmp_path,
                                                                   monkeypatch):
    decoded: list[str] = []
    real = index_build.prepare
    monkeypatch.setattr(index_build, "prepare",
                        lambda path, *a, **k: decoded.append(str(path)) or real(path, *a, **k))
    report = build_index(shapes_model, photos, tmp_path / "idx", batch_size=4, workers=0,
                         should_stop=stop_after(2))
    assert report.cancelled and (report.done, report.todo) == (8, 20) and report.added == 8
    assert report.total == 8 and "cancelled after 8 of 20" in report.cancel_text()
    assert "build again to resume" in report.cancel_text()
    # Never half-written: the FAISS file matches the store, and the lock is free again.
    index = open_index(tmp_path / "idx")
    assert index.count == 8 and index.repaired is None
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["count"] == 8 and manifest["generation"] == index.store.generation
    index.close()
    with folder_lock(tmp_path / "idx", wait=False) as held:
        assert held is not None
    decoded.clear()
    again = build_index(shapes_model, photos, tmp_path / "idx", batch_size=4, workers=0)
    assert not again.cancelled and (again.added, again.unchanged, again.todo, again.done) == (12, 8, 12, 12)
    assert len(decoded) == 12 and again.total == 20  # only the rest was read


def test_a_build_stopped_before_its_first_batch_reads_nothing(shapes_model, photos, tmp_path):
    report = build_index(shapes_model, photos, tmp_path / "idx", batch_size=4, workers=2,
                         should_stop=lambda: True)
    assert report.cancelled and (report.done, report.total) == (0, 0)
    assert open_index(tmp_path / "idx").count == 0
    assert build_index(shapes_model, photos, tmp_path / "idx", workers=2).added == 20


def test_a_stop_asked_after_the_last_batch_is_no_cancel(shapes_model, photos, tmp_path):
    report = build_index(shapes_model, photos, tmp_path / "idx", batch_size=32, workers=0,
                         should_stop=stop_after(1))
    assert not report.cancelled and report.added == 20


def test_build_stops_stop_only_builds_asked_before_the_cancel():
    stops = common.Stops()
    stops.cancel("a")
    later = time.monotonic()
    assert not stops.checker("a", later)()  # a cancel before the build was asked does not stop it
    stops.cancel("a")
    assert stops.checker("a", later)() and not stops.checker("b", later)()  # per session


def test_the_search_tab_reports_a_cancelled_build_and_releases_its_locks(ctx, photos):
    html, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(photos), None, None,
                                                should_stop=lambda: True)
    assert "cancelled after 0 of 20" in html and "build again to resume" in html
    lock = ctx.indexes.build_lock(state.index)
    assert lock.acquire(blocking=False)
    lock.release()
    html, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(photos), None, None)
    assert "20 added" in html and "cancelled" not in html


def test_ctrl_c_stops_the_index_command_after_a_batch_and_a_rerun_resumes(tmp_path):
    photos = tmp_path / "photos"
    make_labelled_folder(photos, CLASSES[:12], 2, size=64)  # 24 images
    # ViT-B-32 with random weights: a few batches a second on a CPU, so the Ctrl-C lands mid-run.
    command = [sys.executable, "-m", "explorer", "index", str(photos), "--index", str(tmp_path / "idx"),
               "--model", "ViT-B-32", "--pretrained", "", "--device", "cpu", "--batch-size", "2",
               "--workers", "1", "--json"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db_path, deadline = tmp_path / "idx" / "index.db", time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                    if db.execute("SELECT count(*) FROM files").fetchone()[0] >= 4:
                        break
            except sqlite3.Error:
                pass
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before Ctrl-C"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["cancelled"] and 4 <= report["done"] < report["todo"] == 24
    assert open_index(tmp_path / "idx").count == report["added"] == report["done"]
    rerun = json.loads(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300).stdout)
    assert not rerun["cancelled"] and rerun["added"] == 24 - report["done"] and rerun["unchanged"] == report[
        "done"]


# ---- a result full size ---------------------------------------------------------------------------------
def test_a_result_opens_full_size_with_its_path_and_score(ctx, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    draw_shape("red", "circle", size=300, rng=1).save(folder / "red.png")
    draw_shape("blue", "square", size=300, rng=2).save(folder / "blue.png")
    _, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(folder), None, None)
    view = search_tab.search(ctx, state, "a red circle", None, 0.5, 5, -1.0)
    opened = search_tab.open_result(ctx, view.state, 0, -1.0)
    assert opened.image.size == (300, 300)  # full size, not the 256-pixel thumbnail
    assert opened.path == str(folder / "red.png") and opened.opened == search_tab.OpenedResult("red.png")
    assert f'{view.state.hits[0].score:.3f}' in opened.score and "a red circle" in opened.score
    assert search_tab.open_result(ctx, view.state, 7, -1.0) is None
    like = search_tab.more_like(ctx, view.state, opened.opened.path, 5, -1.0)
    assert like.state.hits[0].path == "red.png" and "Images like red.png" in like.summary
    with pytest.raises(ValueError, match="Open a result first"):
        search_tab.more_like(ctx, view.state, "", 5, -1.0)


def test_a_result_that_became_a_link_out_of_the_folder_is_not_read(ctx, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    draw_shape("red", "circle", size=64, rng=1).save(folder / "red.png")
    draw_shape("blue", "square", size=64, rng=1).save(tmp_path / "outside.png")
    _, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(folder), None, None)
    view = search_tab.search(ctx, state, "a red circle", None, 0.5, 5, -1.0)
    (folder / "red.png").unlink()
    (folder / "red.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(ValueError, match="outside the indexed folder"):
        search_tab.open_result(ctx, view.state, 0, -1.0)
    (folder / "red.png").unlink()
    (folder / "red.png").write_bytes(b"not a png any more")
    with pytest.raises(ValueError, match="red.png cannot be shown") as caught:
        search_tab.open_result(ctx, view.state, 0, -1.0)
    assert str(folder) not in str(caught.value)


def test_hosted_a_result_shows_its_path_within_the_upload(shapes_model, tmp_path, photos):
    import zipfile

    from tests.test_hosted import hosted_context

    archive = tmp_path / "mine.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(photos.rglob("*.png"))[:6]:
            z.write(path, f"holiday/{path.relative_to(photos)}")
    a = hosted_context(tmp_path, shapes_model).scoped("session-a")
    _, state = search_tab.build_search_index(a, search_tab.UPLOAD, "", [str(archive)], None)
    view = search_tab.search(a, state, "a red circle", None, 0.5, 3, -1.0)
    opened = search_tab.open_result(a, view.state, 0, -1.0)
    assert opened.path == view.state.hits[0].path and opened.path.startswith("holiday/")
    with pytest.raises(PathRefused, match="hosted demo"):
        search_tab.open_index_folder(a, str(tmp_path))


# ---- near-duplicates ------------------------------------------------------------------------------------
def test_duplicates_view_lists_groups_with_cosines_and_thumbnails(ctx, tmp_path):
    folder = tmp_path / "dups"
    folder.mkdir()
    draw_shape("red", "circle", size=64, rng=1).save(folder / "a.png")
    draw_shape("red", "circle", size=64, rng=1).save(folder / "a_copy.png")
    draw_shape("blue", "square", size=64, rng=5).save(folder / "b.png")
    _, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(folder), None, None)
    html = search_tab.duplicates_view(ctx, state, 0.999)
    groups = ctx.open_index(state.index).duplicate_groups(0.999)
    assert [g.paths for g in groups] == [["a.png", "a_copy.png"]]
    assert "Group 1" in html and f"{groups[0].min_score:.3f}" in html and f"{groups[0].max_score:.3f}" in html
    assert html.count("data:image/jpeg;base64,") == 2 and str(folder) not in html
    assert "No near-duplicates among the 3 indexed images" in search_html.duplicates([], 0.95, 3)
    with pytest.raises(ValueError, match="between -1 and 1"):
        search_tab.duplicates_view(ctx, state, 2.0)
    with pytest.raises(ValueError, match="Build an index first"):
        search_tab.duplicates_view(ctx, search_tab.SearchState(), 0.9)


# ---- opening an index made by the command line ------------------------------------------------------------
def test_an_index_made_by_the_command_opens_searches_and_is_listed(ctx, shapes_model, photos, tmp_path):
    made = tmp_path / "elsewhere" / "my-index"
    build_index(shapes_model, photos, made, workers=0)
    assert gap_tab.index_choices(ctx) == []
    html, state = search_tab.open_index_folder(ctx, str(made))
    assert "20</b> image(s) searchable" in html and str(made) in html
    assert state == search_tab.SearchState(index=str(made.resolve()), root=str(photos.resolve()))
    view = search_tab.search(ctx, state, "a red circle", None, 0.5, 3, -1.0)
    assert view.state.hits[0].path.startswith("a_red_circle/")
    assert [folder for _, folder in gap_tab.index_choices(ctx)] == [str(made.resolve())]
    assert search_tab.open_result(ctx, view.state, 0, -1.0).path.startswith(str(photos.resolve()))


def test_opening_an_index_folder_refuses_what_it_should(ctx, shapes_model, sigmoid_model, photos, tmp_path):
    with pytest.raises(PathRefused, match="outside the folders"):
        search_tab.open_index_folder(ctx, "/etc")
    with pytest.raises(PathRefused, match="not an index folder"):
        search_tab.open_index_folder(ctx, str(photos))
    other = tmp_path / "other-model-index"
    build_index(sigmoid_model, photos, other, workers=0)
    with pytest.raises(IndexMismatchError) as caught:
        search_tab.open_index_folder(ctx, str(other))
    assert sigmoid_model.identifier in str(caught.value) and shapes_model.identifier in str(caught.value)
    # A folder that was never opened is not one of the session's indexes, whatever the page sends.
    with pytest.raises(ValueError, match="not one of yours"):
        search_tab.search(ctx, search_tab.SearchState(index=str(other), root=str(photos)), "a red circle",
                          None, 0.5, 3, -1.0)


def test_an_index_of_an_object_store_folder_is_refused_by_the_page_with_what_to_do(ctx, shapes_model, photos,
                                                                                   tmp_path, monkeypatch):
    from contextlib import closing

    from explorer.index.store import Store

    made = tmp_path / "s3-index"
    build_index(shapes_model, photos, made, workers=0)
    with closing(Store(made)) as store:  # as `index s3://bucket/photos --engine ray` records its root
        store.set_meta("root", "s3://bucket/photos")
    with pytest.raises(PathRefused, match="object-store folder.*clip-explorer search"):
        search_tab.open_index_folder(ctx, str(made))
    in_the_apps_folder = ctx.indexes.path_for(photos, shapes_model)  # put there by hand: still not offered
    shutil.copytree(made, in_the_apps_folder)
    assert [info.folder for info in ctx.indexes.listed(shapes_model)] == [in_the_apps_folder]
    # Read as a path, "s3://bucket/photos" is a relative one: from a working folder inside the allowed
    # roots it would look servable, which is where the app runs from as often as not.
    monkeypatch.chdir(tmp_path)
    assert ctx.visible_indexes(shapes_model) == []
