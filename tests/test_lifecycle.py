"""A hosted run leaves no visitor's file behind: SIGTERM or SIGINT removes every workspace and gradio's
cache of uploads (atexit alone does not run on a signal), and the folders of a run killed outright
(SIGKILL, a crash) are swept when the next run starts, while those of a live run are left alone."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from explorer.app.workspace import _started, new_base, sweep_dead
from tests.shapes import CLASSES, make_labelled_folder

ROOT = Path(__file__).resolve().parents[1]


def test_the_sweep_at_start_removes_a_dead_runs_folder_but_not_a_live_ones(tmp_path):
    parent = tmp_path / "sessions"
    live = new_base(parent)                      # this process: alive
    (live / "ws-1").mkdir()
    (live / "ws-1" / "photo.png").write_bytes(b"kept")
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = parent / f"{finished.pid}-0-abc"      # its process has ended
    reused = parent / f"{os.getpid()}-{int(_started(os.getpid()) or 0) + 1}-abc"  # same pid, another start
    other = parent / "notes-of-the-operator"     # not a run's folder
    for folder in (dead, reused, other):
        (folder / "ws-2").mkdir(parents=True)
        (folder / "ws-2" / "photo.png").write_bytes(b"left by a killed run")
    assert sorted(sweep_dead(parent)) == sorted([dead, reused] if _started(os.getpid()) else [dead])
    assert (live / "ws-1" / "photo.png").is_file() and other.is_dir() and not dead.exists()
    assert sweep_dead(tmp_path / "no-such-folder") == []


def test_the_new_base_names_its_process(tmp_path):
    base = new_base(tmp_path)
    pid, started, _ = base.name.split("-", 2)
    assert int(pid) == os.getpid() and started == (_started(os.getpid()) or "0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_hosted(tmp_path: Path, temp: Path) -> tuple[subprocess.Popen, str, Path]:
    port, log = _free_port(), tmp_path / "app.log"
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env.update(TMPDIR=str(temp), EXPLORER_INDEX_DIR=str(tmp_path / "idx"), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", EXPLORER_SESSION_QUOTA_MB="5", EXPLORER_HOSTED_QUOTA_MB="20")
    args = [sys.executable, str(ROOT / "app.py"), "--hosted", "--model", "local-dir:tests/assets/shapes_clip",
            "--pretrained", "", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        # SIGINT as a terminal's Ctrl-C delivers it, however this suite was started (a background job
        # inherits SIGINT ignored, and so would the app, which then rightly keeps ignoring it)
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited early:\n{log.read_text()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url, log
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"app.py did not start in time:\n{log.read_text()}")


def _visitor_files(temp: Path) -> list[Path]:
    """Files under the app's temp folder that came from the visitor or were made for it."""
    return [
        p for p in temp.rglob("*")
        if p.is_file() and ("secret" in str(p) or "clip-explorer-sessions" in str(p))
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_leaves_no_visitor_file(tmp_path, sig):
    from gradio_client import Client, handle_file

    temp = tmp_path / "tmp"
    temp.mkdir()
    make_labelled_folder(tmp_path / "photos", CLASSES[:2], 2, size=32)
    archive = tmp_path / "secret-photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((tmp_path / "photos").rglob("*.png")):
            z.write(path, f"secret/{path.relative_to(tmp_path / 'photos')}")
    proc, url, log = _start_hosted(tmp_path, temp)
    try:
        api = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        report = api.predict(choice="Upload images, a folder or a zip", typed="",
                             files=[handle_file(str(archive))], folder_files=None, api_name="/build_index")[0]
        assert "<b>4</b> image(s) searchable" in report, report
        made = _visitor_files(temp)
        assert any(p.suffix == ".zip" for p in made) and any(p.suffix == ".png" for p in made), made
        proc.send_signal(sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _visitor_files(temp) == [], log.read_text()[-3000:]
    assert not any((temp / "clip-explorer-sessions").iterdir())


def test_a_signal_started_ignored_stays_ignored_and_cleans_nothing():
    """An app started with SIGINT ignored (a background job, nohup) must not take it as a stop: cleaning up
    on it would leave the app serving with its visitors' workspaces gone. A signal not ignored gets the
    clean-up handler."""
    from app import clean_up_on_signals

    cleaned = []
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        clean_up_on_signals(lambda: cleaned.append(1), signals=(signal.SIGINT,))
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        signal.signal(signal.SIGINT, signal.default_int_handler)
        clean_up_on_signals(lambda: cleaned.append(1), signals=(signal.SIGINT,))
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler) and handler is not signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)
        assert cleaned == [1]
    finally:
        signal.signal(signal.SIGINT, before)
