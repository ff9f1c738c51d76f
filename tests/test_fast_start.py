"""A fast, honest start: when the model's weights can be had neither from the Hugging Face cache nor
from the Hub, the app's page is up in seconds and the CLI exits 2 in seconds, both saying what to type
instead; local forms never touch the network; each log line is printed once.

The bars run app.py and `python -m explorer` in subprocesses with an empty HF_HOME and the Hub on a
closed local port, with and without HF_HUB_OFFLINE, and print the measured times."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from explorer.embed import checkpoints
from explorer.embed.model import ModelLoadError, ModelSlot, load_model
from explorer.inputs.roots import PathRefused, allowed_folder

ROOT = Path(__file__).resolve().parents[1]
DEAD_HUB = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
APP_BAR_S, CLI_BAR_S = 25.0, 20.0
ADVICE = ("local-dir:/path/to/folder", "--pretrained /path/to/checkpoint.pt", "hf-hub:laion/CLIP-ViT-B-32",
          "HF_HUB_OFFLINE")


def _env(tmp_path: Path, offline: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPLORER_", "HF_"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=DEAD_HUB, GRADIO_ANALYTICS_ENABLED="False",
               EXPLORER_INDEX_DIR=str(tmp_path / "indexes"))
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _repeated_lines(text: str) -> list[str]:
    return [line for line, n in Counter(line for line in text.splitlines() if line.strip()).items() if n > 1]


@pytest.fixture(params=[False, True], ids=["hub-unreachable", "hf-hub-offline"])
def offline(request):
    return request.param


def test_app_page_is_up_in_seconds_with_the_advice(tmp_path, offline):
    port, log = _free_port(), tmp_path / "app.log"
    env = dict(_env(tmp_path, offline), EXPLORER_PORT=str(port), EXPLORER_HOST="127.0.0.1")
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        page = None
        while page is None and time.monotonic() - start < 120 and proc.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
        took = time.monotonic() - start
        print(f"\napp page answered after {took:.1f} s (HF_HUB_OFFLINE={'1' if offline else 'unset'})")
        assert page is not None, log.read_text()
    finally:
        proc.terminate()
        proc.wait(10)
    assert took < APP_BAR_S
    assert "explorer-error" in page and all(a.split(" ")[-1] in page for a in ADVICE)
    assert str(tmp_path / "hf-home" / "hub") in page  # where weights are cached
    text = log.read_text()
    assert "model load failed" in text and "Retrying" not in text
    assert _repeated_lines(text) == []


def test_cli_exits_2_in_seconds_with_the_advice(tmp_path, offline):
    from PIL import Image

    image = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (220, 30, 30)).save(image)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "explorer", "classify",
                           str(image), "--labels", "a,b"], cwd=ROOT, env=_env(tmp_path, offline),
                          capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    offline_text = "1" if offline else "unset"
    print(f"\nclassify exited {done.returncode} after {took:.1f} s (HF_HUB_OFFLINE={offline_text})")
    assert done.returncode == 2 and took < CLI_BAR_S, done.stderr
    assert all(a in done.stderr for a in ADVICE) and str(tmp_path / "hf-home" / "hub") in done.stderr
    assert ("HF_HUB_OFFLINE is set" in done.stderr) == offline
    assert "Retrying" not in done.stderr and _repeated_lines(done.stderr) == []


# ---- in-process: the decision, local forms, the messages ------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt is recorded and refused."""
    tried = []

    def refuse(self, address):
        tried.append(address)
        raise ConnectionRefusedError(f"no network in this test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return tried


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The Hub client with an empty cache in tmp_path and the Hub on a closed port (read per call)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", DEAD_HUB)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "hub"


def test_what_each_form_needs_from_the_hub(tmp_path):
    checkpoint = tmp_path / "epoch_1.pt"
    checkpoint.write_bytes(b"x")
    assert checkpoints.hub_files("local-dir:/x", None) == []
    assert checkpoints.hub_files("ViT-B-32", None) == []
    assert checkpoints.hub_files("ViT-B-32", str(checkpoint)) == []
    assert checkpoints.hub_files("ViT-B-32", "laion2b_s34b_b79k") == [
        checkpoints.HubFile("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", checkpoints.WEIGHT_FILES)]
    assert checkpoints.hub_files("hf-hub:org/repo", None) == [
        checkpoints.HubFile("org/repo", ("open_clip_config.json", )),
        checkpoints.HubFile("org/repo", checkpoints.WEIGHT_FILES)
    ]


def test_local_forms_never_touch_the_network(shapes_model_dir, tmp_path, hub, no_network):
    checkpoint = tmp_path / "epoch_1.pt"
    checkpoint.write_bytes(b"x")
    assert checkpoints.plan("ViT-B-32", str(checkpoint)) == checkpoints.plan("ViT-B-32", None) == "local"
    assert load_model(f"local-dir:{shapes_model_dir}", device="cpu").embed_dim > 0
    assert no_network == []


def test_unreachable_and_uncached_fails_at_once_with_advice(hub):
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as failed:
        load_model("ViT-B-32", "laion2b_s34b_b79k", device="cpu")
    assert time.monotonic() - start < checkpoints.HUB_TIMEOUT_S + 2
    advice = failed.value.advice
    assert advice.reason.startswith(
        "could not load ViT-B-32 (laion2b_s34b_b79k)") and DEAD_HUB in advice.reason
    assert [fix.model for fix in advice.fixes] == ["local-dir:/path/to/folder", "ViT-B-32",
                                                   "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"]
    assert str(hub) in advice.note and all(a in str(failed.value) for a in ADVICE)


def test_offline_mode_and_uncached_fails_without_a_request(hub, monkeypatch, no_network):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        load_model("hf-hub:org/repo", device="cpu")
    assert no_network == []


def _cache_repo(cache: Path, repo: str, files: list[Path]) -> None:
    """The Hub client's cache layout for `repo` at one commit, holding `files`."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in files:
        (snapshot / file.name).write_bytes(file.read_bytes())


def test_cached_weights_load_with_the_hub_unreachable_and_no_request_but_the_probe(shapes_model_dir, hub,
                                                                                   no_network):
    _cache_repo(hub, "test/shapes", sorted(shapes_model_dir.iterdir()))
    assert checkpoints.plan("hf-hub:test/shapes", None) == "cached"
    model = load_model("hf-hub:test/shapes", device="cpu")
    assert model.embed_dim > 0
    assert set(no_network) == {("127.0.0.1", 9)}  # the reachability probes only


def test_a_hub_warning_prints_once_after_a_load(shapes_model_dir, tmp_path):
    """The Hub client's own handler and the root handler (app.py's basicConfig; in the CLI, open_clip's
    first logging.info call makes one) both printed each of its lines."""
    script = ("import logging; logging.basicConfig(format='%(levelname)s %(name)s: %(message)s')\n"
              "from explorer.embed.model import load_model\n"
              f"load_model('local-dir:{shapes_model_dir}', device='cpu')\n"
              "logging.getLogger('huggingface_hub.utils._http').warning('Retrying in 1s [Retry 1/5].')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(tmp_path, offline=True),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Retrying in 1s") == 1, done.stderr


def test_the_page_shows_one_error_box_with_what_to_type(hub, tmp_path):
    from explorer.app.context import AppContext
    from explorer.app.ui import model_panel
    from explorer.inputs.settings import load_settings

    settings = load_settings(
        env={"EXPLORER_ALLOWED_ROOTS": str(tmp_path), "EXPLORER_INDEX_DIR": str(tmp_path / "i")})
    ctx = AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "uploads")
    status = model_panel.load_model(ctx, "ViT-B-32", "laion2b_s34b_b79k")
    assert status.count('class="explorer-error"') == 1 and status.count("<li>") == 3
    assert "Model <code>local-dir:/path/to/folder</code>" in status and "Pretrained <code>" in status
    assert ctx.slot.error == ctx.slot.advice.reason and "\n" not in ctx.slot.error  # tab panes get one line
    hosted = AppContext.create(
        load_settings(env={"EXPLORER_HOSTED": "1", "EXPLORER_INDEX_DIR": str(tmp_path / "h")}), ModelSlot(),
        upload_dir=tmp_path / "hosted-uploads", hosted_dir=tmp_path / "hd")
    hosted.slot.load("ViT-B-32", "laion2b_s34b_b79k", public=True)
    assert hosted.slot.advice is None and str(hub) not in model_panel.status_text(hosted)


def test_the_allowed_roots_refusal_names_the_flag_and_the_variable(tmp_path):
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir(), outside.mkdir()
    with pytest.raises(PathRefused) as refused:
        allowed_folder(str(outside), (inside,))
    assert f"--allowed-roots {inside}:{outside}" in str(refused.value)
    assert f"EXPLORER_ALLOWED_ROOTS={inside}:{outside}" in str(refused.value)
