"""A quick command line: `clip-explorer --help`, every `<command> --help` and the commands that need no
model (`indexes`) import neither torch nor open_clip (nor torchvision); a command that needs the model
imports them when it runs. Checked in fresh processes, from the modules each one ends up holding
(sys.modules, or `python -X importtime`, which names every module a process imports).

Why it matters: importing torch and open_clip (which pulls torchvision and torch._dynamo) took ~5 s of
the 7 s that classifying one image with a 15 MB model took, and `--help` took 2.9 s
(bench/bench_cli_start.py measures it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import shapes

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "torchvision")
# Runs main() as the console script does, for --help, every command's --help and `indexes`; prints the
# commands seen and the heavy modules held at the end.
PROBE = """
import contextlib, io, json, sys
from explorer.cli import build_parser, main
commands = sorted(build_parser()._subparsers._group_actions[0].choices)
codes = {}
for argv in [["--help"], *[[name, "--help"] for name in commands], ["indexes", "--index-dir", sys.argv[1]]]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            codes[" ".join(argv[:2])] = main(argv)
        except SystemExit as exc:
            codes[" ".join(argv[:2])] = exc.code
print(json.dumps({"commands": commands, "codes": codes,
                  "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPLORER_")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               EXPLORER_INDEX_DIR=str(tmp_path / "app-indexes"))
    return env


def _imported(argv: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime ARGV...`: the process, and the top-level names of the modules it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=ROOT, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    names = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    return done, names


@pytest.fixture(scope="module")
def small_index(shapes_model, tmp_path_factory) -> Path:
    """A folder of indexes holding one 4-image index made with the shapes model."""
    from explorer.index.build import build_index

    folder = tmp_path_factory.mktemp("start-photos")
    for i, (color, shape) in enumerate(shapes.CLASSES[::5][:4]):  # a red circle, a green square, ...
        shapes.draw_shape(color, shape, rng=i).save(folder / f"{color}-{shape}.png")
    listing = tmp_path_factory.mktemp("start-indexes")
    build_index(shapes_model, folder, listing / "shapes", workers=0)
    return listing


def test_help_every_commands_help_and_indexes_import_neither_torch_nor_open_clip(small_index, tmp_path):
    done = subprocess.run([sys.executable, "-c", PROBE, str(small_index)], cwd=ROOT, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"classify", "index", "indexes", "search", "heatmap", "eval"} <= set(doc["commands"])
    assert set(doc["codes"].values()) == {0}, doc["codes"]  # every --help printed; indexes listed the index
    assert doc["heavy"] == []


def test_python_m_explorer_help_and_indexes_import_neither(small_index, tmp_path):
    done, names = _imported(["-m", "explorer", "--help"], tmp_path)
    assert done.returncode == 0 and "indexes" in done.stdout
    assert names and not names & set(HEAVY), sorted(names & set(HEAVY))
    listing = ["-m", "explorer", "indexes", "--index-dir", str(small_index), "--json"]
    done, names = _imported(listing, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [i["images"] for i in json.loads(done.stdout)["indexes"]] == [4]
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def test_the_console_script_is_the_main_the_probe_runs():
    project = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '[project.scripts]\nclip-explorer = "explorer.cli:main"\n' in project


@pytest.mark.timeout(300)
def test_a_command_that_needs_the_model_imports_torch_and_open_clip_when_it_runs(small_index, tmp_path):
    """The lazy imports still happen: `search` loads the index's model and finds the red circle."""
    done, names = _imported(["-m", "explorer", "search", "--index", str(small_index / "shapes"), "--text",
                             "a red circle", "-k", "1", "--json"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["results"][0]["path"] == "red-circle.png"
    assert {"torch", "open_clip"} <= names


def test_the_decode_pool_workers_import_no_torch(tmp_path):
    """Each hosted decode worker is `python -m explorer.embed.decode_pool`: it decodes with PIL only, so it
    starts without torch (a worker killed for going over its time budget is replaced by a new one)."""
    done, names = _imported(["-c", "import explorer.embed.decode_pool, explorer.embed.images"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "PIL" in names and not names & set(HEAVY), sorted(names & set(HEAVY))
