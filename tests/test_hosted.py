"""Hosted mode, one process shared by strangers: each session's uploads and indexes are its own,
the model list is the operator's, and a failed load never costs the others their model. The tab
handlers are called as plain functions with two session ids (tests/test_hosted_http.py does the same
through raw HTTP, tests/browser/test_two_sessions.py through two browsers)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from explorer.app.context import AppContext
from explorer.app.ui import gap_tab, heatmaps_tab, model_panel, prompt_lab_tab, search_tab
from explorer.app.workspace import folder_bytes
from explorer.embed.model import ModelSlot
from explorer.inputs.roots import PathRefused
from explorer.inputs.settings import load_settings
from tests.shapes import CLASSES, make_labelled_folder

PCA = "PCA (instant)"
SINGLE = "Single: a photo of a {}."


def hosted_context(tmp_path, model, **env) -> AppContext:
    settings = load_settings(env={"EXPLORER_HOSTED": "1", "EXPLORER_INDEX_DIR": str(tmp_path / "shared-idx"),
                                  "EXPLORER_ALLOWED_ROOTS": str(tmp_path), **env})
    ctx = AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "shared-uploads",
                            hosted_dir=tmp_path / "sessions")
    ctx.slot.model = model
    return ctx


@pytest.fixture
def ctx(shapes_model, tmp_path):
    return hosted_context(tmp_path, shapes_model)


@pytest.fixture(scope="module")
def secret_zip(tmp_path_factory):
    """Visitor A's photos: class folders whose names and files must never reach visitor B."""
    base = tmp_path_factory.mktemp("visitor-a")
    make_labelled_folder(base / "holiday", CLASSES[:2], 3, size=40, seed=1)
    archive = base / "a-private.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((base / "holiday").rglob("*.png")):
            z.write(path, f"holiday/{path.relative_to(base / 'holiday')}")
    return archive


def a_builds_an_index(ctx, secret_zip) -> search_tab.SearchState:
    a = ctx.scoped("session-a")
    html, state = search_tab.build_search_index(a, search_tab.UPLOAD, "", [str(secret_zip)], None)
    assert "6</b> image(s) searchable" in html
    return state


def test_a_session_sees_only_its_own_uploads_and_indexes(ctx, secret_zip):
    state = a_builds_an_index(ctx, secret_zip)
    a, b = ctx.scoped("session-a"), ctx.scoped("session-b")
    assert len(gap_tab.index_choices(a)) == 1 and heatmaps_tab.index_choices(a)[1][1] == state.index
    assert gap_tab.index_choices(b) == []
    assert heatmaps_tab.index_choices(b) == [(heatmaps_tab.NO_INDEX, heatmaps_tab.NO_INDEX)]
    assert b.visible_indexes() == []
    # A's workspace is a folder of its own, B's holds nothing of A's.
    assert a.workspace.folder != b.workspace.folder
    assert Path(state.root).is_relative_to(a.workspace.folder)
    assert not b.servable(Path(state.root)) and a.servable(Path(state.root))


def test_a_sessions_index_cannot_be_used_by_another_even_by_its_folder(ctx, secret_zip):
    state = a_builds_an_index(ctx, secret_zip)
    b = ctx.scoped("session-b")
    with pytest.raises(ValueError, match="not one of yours"):
        search_tab.search(b, state, "a red circle", None, 0.5, 5, -1.0)
    view = gap_tab.compute_gap(b, gap_tab.INDEXED, None, "", state.index, gap_tab.LABELS, "circle, square",
                               SINGLE, None, PCA)
    assert "not one of yours" in view.measures and view.run is None
    matrix = heatmaps_tab.compute_matrix(b, [], "a red circle", state.index, 4, "Cosine similarity")
    assert "not one of yours" in matrix.summary and matrix.state is None
    # ...and A's own search still works.
    hits = search_tab.search(ctx.scoped("session-a"), state, "a red circle", None, 0.5, 3, -1.0).state.hits
    assert len(hits) == 3


def test_no_server_folder_can_be_used_when_hosted(ctx, tmp_path):
    make_labelled_folder(tmp_path / "server-photos", CLASSES[:2], 2, size=32)
    b = ctx.scoped("session-b")
    with pytest.raises(ValueError, match="Upload images"):  # a typed folder is not even looked at
        search_tab.build_search_index(b, search_tab.FOLDER, str(tmp_path / "server-photos"), None, None)
    with pytest.raises(PathRefused, match="hosted demo"):
        b.folder(str(tmp_path / "server-photos"))
    view = prompt_lab_tab.evaluate_prompts(b, prompt_lab_tab.frame(["a photo of a {}."]),
                                           str(tmp_path / "server-photos"), None, "", "", None, "Templates",
                                           "Equal average", 1, False, 0.2, 0.5)
    assert "upload images or a zip" in view.summary and view.report is None
    # A context not scoped to a session owns nothing.
    with pytest.raises(PathRefused, match="no session"):
        ctx.visible_indexes()


def test_a_session_that_ends_leaves_nothing_behind(ctx, secret_zip):
    state = a_builds_an_index(ctx, secret_zip)
    folder = ctx.scoped("session-a").workspace.folder
    assert Path(state.index).is_dir() and folder.is_dir()
    ctx.workspaces.end("session-a")
    assert not folder.exists() and ctx.workspaces.sessions() == 0
    # The same session id later gets a fresh, empty workspace.
    assert ctx.scoped("session-a").visible_indexes() == []


def test_idle_sessions_expire(ctx, secret_zip):
    a_builds_an_index(ctx, secret_zip)
    folder = ctx.scoped("session-a").workspace.folder
    ctx.workspaces.ttl_seconds = 0
    ctx.scoped("session-b")  # any request expires what is idle
    assert not folder.exists()


def test_disk_quotas_per_session_and_for_everyone(ctx, secret_zip):
    a_builds_an_index(ctx, secret_zip)
    a, b = ctx.scoped("session-a"), ctx.scoped("session-b")
    another = secret_zip.with_name("another.zip")
    another.write_bytes(secret_zip.read_bytes())
    spaces = ctx.workspaces
    spaces.session_quota = a.workspace.disk_bytes()  # A's uploads and index fill its quota
    with pytest.raises(PathRefused, match="fill this session"):
        a.unpack([str(another)])
    assert b.unpack([str(another)])  # B has room of its own
    spaces.session_quota = 1 << 30
    spaces.total_quota = folder_bytes(spaces.base) + 100  # room left for everyone: 100 bytes
    another.write_bytes(secret_zip.read_bytes() + b"\0")
    # A and B are using their files, so neither is evicted to make room (tests/test_quota.py: when idle).
    with spaces.in_use("session-a"), spaces.in_use("session-b"):
        with pytest.raises(PathRefused, match="more than 100 bytes"):
            ctx.scoped("session-c").unpack([str(another)])
        spaces.total_quota = folder_bytes(spaces.base)
        with pytest.raises(PathRefused, match="disk is full"):
            ctx.scoped("session-c").unpack([str(another)])
    assert not list((spaces.base / f"ws-{spaces.key_of('session-c')}").rglob("*.png"))  # nothing half-written


def test_quotas_come_from_the_settings(shapes_model, tmp_path):
    ctx = hosted_context(tmp_path, shapes_model, EXPLORER_SESSION_QUOTA_MB="3", EXPLORER_HOSTED_QUOTA_MB="5",
                         EXPLORER_SESSION_TTL_MINUTES="10")
    assert (ctx.workspaces.session_quota, ctx.workspaces.total_quota) == (3 * 2**20, 5 * 2**20)
    assert ctx.workspaces.ttl_seconds == 600


def test_model_list_is_the_operators_and_a_failed_load_keeps_the_model(shapes_model, tmp_path):
    missing = tmp_path / "no-such-model"
    ctx = hosted_context(tmp_path, shapes_model, EXPLORER_MODELS=f"local-dir:{missing},ViT-B-32@openai")
    labels = list(model_panel.offered(ctx))
    assert labels[1:] == ["local-dir:no-such-model", "ViT-B-32 (openai)"]  # by its folder name, not its path
    # Anything else, as a raw API call might send: refused, nothing loaded or unloaded.
    for typed in ("ViT-B-32", "/etc/passwd", "local-dir:/etc", "local-dir:" + str(tmp_path)):
        status = model_panel.load_model(ctx, typed, "/etc/passwd")
        assert "not offered here" in status and ctx.slot.model is shapes_model
    # An offered model that fails: the working model stays, and the message names no server path.
    status = model_panel.load_model(ctx, "local-dir:no-such-model")
    assert ctx.slot.model is shapes_model
    assert "could not load" in status and "folder not found" not in status and str(missing) not in status
    assert ctx.slot.error == f"could not load local-dir:{missing}"


def test_locally_a_failed_load_keeps_the_model_and_says_why(shapes_model, shapes_model_dir, tmp_path):
    settings = load_settings(
        env={"EXPLORER_ALLOWED_ROOTS": str(tmp_path), "EXPLORER_INDEX_DIR": str(tmp_path / "i")})
    ctx = AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "uploads")
    ctx.slot.model = shapes_model
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "open_clip_config.json").write_text(
        (Path(shapes_model_dir) / "open_clip_config.json").read_text())
    (broken / "open_clip_model.safetensors").write_bytes(
        b"not weights")  # passes the cheap checks, fails to load
    status = model_panel.load_model(ctx, f"local-dir:{broken}", "")
    assert ctx.slot.model is shapes_model and "Still using the model loaded before" in status
    assert "could not load" in status and str(broken) in status  # locally the reason is given in full
    assert ctx.scoped(None).workspace is ctx.workspaces.shared  # one user: one shared workspace


def test_errors_about_an_upload_do_not_name_its_server_folder(ctx, tmp_path):
    archive = tmp_path / "one-class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("only/a.png", b"not a png")
    b = ctx.scoped("session-b")
    with pytest.raises(ValueError) as refused:
        b.embed_choice(uploads=[str(archive)], labelled=True)
    assert "your upload" in str(refused.value) and str(b.workspace.folder) not in str(refused.value)


def test_a_strangers_failed_load_is_shown_to_them_not_to_everyone(shapes_model, tmp_path):
    missing = tmp_path / "no-such-model"
    ctx = hosted_context(tmp_path, shapes_model, EXPLORER_MODELS=f"local-dir:{missing}")
    told = model_panel.load_model(ctx, "local-dir:no-such-model")
    assert "could not load" in told
    everyone = model_panel.status_text(ctx, on_page_load=True)
    assert "could not load" not in everyone and "Loaded" in everyone


def test_locally_an_index_of_a_folder_outside_the_allowed_roots_is_not_offered(shapes_model, tmp_path):
    from explorer.index.build import build_index

    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    make_labelled_folder(allowed, CLASSES[:2], 2, size=32)
    make_labelled_folder(outside, CLASSES[:2], 2, size=32)
    settings = load_settings(
        env={"EXPLORER_ALLOWED_ROOTS": str(allowed), "EXPLORER_INDEX_DIR": str(tmp_path / "i")})
    ctx = AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "uploads")
    ctx.slot.model = shapes_model
    for folder in (allowed, outside):  # as `clip-explorer index` would have made them, into the app's folder
        build_index(shapes_model, folder, ctx.indexes.path_for(folder, shapes_model), workers=0)
    assert [info.root for info in ctx.visible_indexes()] == [allowed.resolve()]
    with pytest.raises(PathRefused, match="not one of yours"):
        ctx.open_index(str(ctx.indexes.path_for(outside, shapes_model)))
    assert ctx.open_index(str(ctx.indexes.path_for(allowed, shapes_model))).root == allowed.resolve()
