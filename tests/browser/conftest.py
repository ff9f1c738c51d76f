"""Start app.py on a free port with the shapes model and drive it with Playwright in Debian's Chromium."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


def _chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningApp:
    """app.py in a subprocess on a free port; stopped by `stop()`."""

    def __init__(self, model: str, workdir: Path, **env_extra: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = workdir / f"app-{self.port}.log"
        env = dict(os.environ, EXPLORER_MODEL=model, EXPLORER_PRETRAINED="", EXPLORER_PORT=str(self.port),
                   EXPLORER_HOST="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
                   EXPLORER_INDEX_DIR=str(workdir / "indexes"))
        env.update(env_extra)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"app.py exited early:\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        pytest.fail(f"app.py did not start in time:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def app_url(shapes_model_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("app")
    app = RunningApp(f"local-dir:{shapes_model_dir}", workdir,
                     EXPLORER_ALLOWED_ROOTS=str(tmp_path_factory.getbasetemp()))
    yield app.url
    app.stop()


@pytest.fixture(scope="session")
def hosted_app(shapes_model_dir, tmp_path_factory):
    """A hosted demo (strangers share it) whose temporary files all live under `app.workdir`, offering
    the shapes model and one that cannot load."""
    workdir = tmp_path_factory.mktemp("hosted")
    (workdir / "tmp").mkdir()
    app = RunningApp(f"local-dir:{shapes_model_dir}", workdir, EXPLORER_HOSTED="1",
                     TMPDIR=str(workdir / "tmp"), EXPLORER_MODELS=f"local-dir:{workdir / 'no-such-model'}",
                     EXPLORER_SESSION_QUOTA_MB="64")
    app.workdir = workdir
    yield app
    app.stop()


@pytest.fixture(scope="session")
def browser():
    executable = _chromium()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (the README's test command installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


README_WIDTH, README_HEIGHT = 1280, 900  # the README's screenshots are taken at this size


def _app_page(browser, app_url, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    pg.goto(app_url)
    pg.wait_for_selector("#zs-run", timeout=60_000)
    yield pg
    context.close()


@pytest.fixture
def page(browser, app_url):
    yield from _app_page(browser, app_url, 1400, 1000)


@pytest.fixture
def wide(browser, app_url):
    """A fresh page of the app at the README screenshots' size."""
    yield from _app_page(browser, app_url, README_WIDTH, README_HEIGHT)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
