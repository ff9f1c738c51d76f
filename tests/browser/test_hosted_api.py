"""A hosted demo attacked through its HTTP API, bypassing the page, as a stranger would: every call
names a session of its own choosing and sends whatever JSON it likes. Each hostile call is refused,
nothing is written beyond the limits, and the model stays loaded for everyone."""
from __future__ import annotations

import io
import json
import stat
import time
import uuid
import zipfile
from pathlib import Path

import httpx

from explorer.app.workspace import folder_bytes
from tests.shapes import CLASSES, draw_shape

SINGLE = "Single: a photo of a {}."
LABELS = "red circle, blue square"
SWITCHES_OFF = (0, "ZERO vote (the paper's)", False)  # /classify's last inputs: its test-time switches


class Api:
    """Raw calls to gradio's /gradio_api/call/<name> endpoints as one session."""

    def __init__(self, url: str, session: str | None = None):
        self.url, self.session = url, session or uuid.uuid4().hex[:11]
        self.http = httpx.Client(timeout=180)

    def upload(self, *paths: Path) -> list[dict]:
        files = [("files", (p.name, p.read_bytes())) for p in paths]
        got = self.http.post(self.url + "gradio_api/upload", files=files)
        got.raise_for_status()
        return [file_data(path, p.name) for path, p in zip(got.json(), paths)]

    def call(self, api: str, *data) -> tuple[str, object]:
        """(last event: 'complete' or 'error', its data)."""
        sent = self.http.post(self.url + f"gradio_api/call/{api}", json={"data": list(data),
                                                                       "session_hash": self.session})
        if sent.status_code != 200:
            return "error", sent.text
        event_id = sent.json()["event_id"]
        event, payload = None, None
        with self.http.stream("GET", self.url + f"gradio_api/call/{api}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    text = line.split(":", 1)[1].strip()
                    payload = json.loads(text) if text and text != "null" else None
        return event, payload


def file_data(path: str, name: str | None = None) -> dict:
    return {"path": path, "orig_name": name or Path(path).name, "meta": {"_type": "gradio.FileData"}}


def sessions_dir(app) -> Path:
    """This run's folder of session workspaces (workspace.new_base:
    <tmp>/clip-explorer-sessions/<pid>-...)."""
    return next((app.workdir / "tmp" / "clip-explorer-sessions").glob("*-*"))


def png_bytes(color="red", shape="circle", seed=0) -> bytes:
    out = io.BytesIO()
    draw_shape(color, shape, size=40, rng=seed).save(out, format="PNG")
    return out.getvalue()


def classify_works(app) -> bool:
    picture = app.workdir / "probe.png"
    picture.write_bytes(png_bytes())
    api = Api(app.url)
    event, out = api.call("classify", api.upload(picture), LABELS, SINGLE, "", 2, None, *SWITCHES_OFF)
    return event == "complete" and "red circle" in out[0] and "No model" not in out[0]


def build_from_zip(api: Api, archive: Path) -> tuple[str, object]:
    return api.call("build_index", "Upload images, a folder or a zip", "", api.upload(archive), None)


def test_the_model_panel_loads_only_the_operators_models(hosted_app):
    api = Api(hosted_app.url)
    for typed in ("/etc/passwd", "ViT-B-32", "local-dir:/etc"):
        event, out = api.call("load_model", typed)
        assert event == "error" or "not offered here" in out[0], (typed, out)
    event, out = api.call("load_model", f"local-dir:{hosted_app.workdir / 'no-such-model'}")
    assert event == "error" or "not offered here" in out[
        0]  # offered by its folder name, never its server path
    event, out = api.call("load_model", "local-dir:no-such-model")
    assert event == "complete" and "could not load" in out[0] and "Still using" in out[0]
    assert "folder not found" not in out[0] and "open_clip_config" not in out[
        0]  # nothing about the server's files
    assert classify_works(hosted_app)


def test_server_paths_sent_as_uploads_are_refused(hosted_app):
    a, b = Api(hosted_app.url), Api(hosted_app.url)
    archive = hosted_app.workdir / "a-private.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i, (color, shape) in enumerate(CLASSES[:4]):
            z.writestr(f"a-secret-{i}.png", png_bytes(color, shape, i))
    event, out = build_from_zip(a, archive)
    assert event == "complete" and "4</b> image(s) searchable" in out[0]
    a_file = str(next(sessions_dir(hosted_app).rglob("a-secret-0.png")))
    for path in ("/etc/passwd", a_file, str(Path(__file__).resolve())):
        event, out = b.call("classify", [file_data(path)], LABELS, SINGLE, "", 2, None, *SWITCHES_OFF)
        assert event == "error" and "a-secret" not in json.dumps(out), (path, out)
        event, out = b.call("similarity", [file_data(path)], "a red circle", None, 4, "Cosine similarity",
                            None)
        assert event == "error", (path, out)
        assert hosted_app.url and httpx.get(hosted_app.url + f"gradio_api/file={path}").status_code in (403,
                                                                                                        404)
    # A's index, or a server folder, named in B's call to the gap tab: refused.
    a_index = str(next(sessions_dir(hosted_app).rglob("index.db")).parent)
    for source, folder, index in (("Indexed folder (Search tab)", "", a_index),
                                  ("Folder on this machine", "/etc", None)):
        event, out = b.call("gap", source, None, folder, index, "Labels + templates", LABELS, SINGLE, None,
                            "PCA (instant)")
        assert event == "error" or "explorer-error" in out[0], out
        assert "a-secret" not in json.dumps(out) and "passwd" not in json.dumps(out)
    # B asking the search endpoint gets nothing of A's: it has no index.
    event, out = b.call("search", "a red circle", None, 0.5, 5, -1.0)
    assert "a-secret" not in json.dumps(out) and "Build an index first" in json.dumps(out)


def _zip_with(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return path


def test_hostile_archives_are_refused_and_write_nothing_beyond_the_limits(hosted_app):
    work, api = hosted_app.workdir, Api(hosted_app.url)
    good = png_bytes()

    slip = _zip_with(work / "slip.zip", {"../../evil.png": good, "/abs.png": good, "ok/fine.png": good},
                     links={"ok/link-to-etc": "/etc", "classes/secret": "/etc"})
    event, out = build_from_zip(api, slip)
    assert event == "complete" and "1</b> image(s) searchable" in out[0], out
    assert not list(work.rglob("evil.png")) and not list(work.rglob("abs.png"))
    assert not any(p.is_symlink() for p in sessions_dir(hosted_app).rglob("*"))

    bomb = work / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z, z.open("huge.png", "w",
                                                                       force_zip64=True) as entry:
        for _ in range(200):  # 200 MiB of zeros, about 200 KB compressed
            entry.write(bytes(1 << 20))
    before = folder_bytes(sessions_dir(hosted_app))
    started = time.monotonic()
    event, out = build_from_zip(api, bomb)
    assert "Refused" in out[0] and "zip bomb" in out[0], out
    assert folder_bytes(
        sessions_dir(hosted_app)) - before < 25 * 2**20  # at most one image's limit was written
    assert time.monotonic() - started < 30

    many = work / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(100_000):
            z.writestr(f"f{i}.png", b"x")
    started = time.monotonic()
    event, out = build_from_zip(api, many)
    assert "Refused" in out[0] and "files" in out[0], out
    assert time.monotonic() - started < 60
    assert folder_bytes(sessions_dir(hosted_app)) - before < 25 * 2**20
    assert classify_works(hosted_app)
