from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SHAPES_MODEL_DIR = ROOT / "tests" / "assets" / "shapes_clip"

# scripts/run-tests.sh runs the suite on two pytest-xdist workers (a test file to a worker), then these
# alone: files that measure time against time (p95 with and without an attacker, a neighbour's wait),
# which the other worker's load would skew; the Ray runs (ray.init() joins a local cluster another
# process started, a test's `ray stop --force` stops every one, and a Ray run hung under the other
# worker's load); and the browser tests (beside the other worker a Prompt lab zip upload did not show
# its file within 90 s, in three runs of four, never in a serial run).
SERIAL = ("tests/browser/", "tests/hostile/test_load.py", "tests/hostile/test_texts.py",
          "tests/test_index_ray.py",
          "tests/test_benches.py::test_quick_bench_prints_its_figures_as_json_last[bench_ray.py]")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SERIAL):
            item.add_marker(pytest.mark.serial)


@pytest.fixture(scope="session")
def shapes_model_dir() -> Path:
    if not (SHAPES_MODEL_DIR / "open_clip_config.json").is_file():
        pytest.fail("the shapes model is missing: run `python -m tests.train_shapes_clip`")
    return SHAPES_MODEL_DIR


@pytest.fixture(scope="session")
def shapes_model(shapes_model_dir):
    """The project's tiny CLIP, loaded through the same local-dir: path real checkpoints use."""
    from explorer.embed.model import load_model

    return load_model(f"local-dir:{shapes_model_dir}", device="cpu")


@pytest.fixture(scope="session")
def random_vit():
    """A ViT-B-32 with random weights: real architecture, no download, for exactness and speed checks."""
    import torch

    from explorer.embed.model import load_model

    torch.manual_seed(0)
    return load_model("ViT-B-32", None, device="cpu")


SIGMOID_BIAS = -10.0  # the logit_bias of the sigmoid variant of the shapes model


@pytest.fixture(scope="session")
def sigmoid_model_dir(shapes_model_dir, tmp_path_factory) -> Path:
    """The shapes model as a sigmoid-trained (SigLIP-style) model: the same weights plus a learned
    `logit_bias`, declared the way open_clip declares it (`init_logit_bias` in model_cfg, which makes
    CLIP.__init__ create the parameter) and stored in the weights file (loaded strictly)."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("sigmoid_clip")
    shutil.copy(shapes_model_dir / "open_clip_config.json", folder)
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["init_logit_bias"] = SIGMOID_BIAS
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    weights = load_file(str(shapes_model_dir / "open_clip_model.safetensors"))
    scale = weights["logit_scale"]
    weights["logit_bias"] = scale.new_full(scale.shape, SIGMOID_BIAS)
    save_file(weights, str(folder / "open_clip_model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="session")
def sigmoid_model(sigmoid_model_dir):
    """The sigmoid variant, loaded through the same local-dir: path as any hub model."""
    from explorer.embed.model import load_model

    return load_model(f"local-dir:{sigmoid_model_dir}", device="cpu")


NOISE_STD = 0.4  # the noisy variant: Gaussian noise of this many standard deviations per visual weight matrix


@pytest.fixture(scope="session")
def noisy_model_dir(shapes_model_dir, tmp_path_factory) -> Path:
    """A second model for comparisons: the shapes model with seeded Gaussian noise (NOISE_STD times each
    tensor's own standard deviation) added to every weight matrix of its image tower, in the same
    local-dir: layout. Same architecture and text tower, other predictions: on 8 classes x 6 images it
    scores about 71% where the shapes model scores 100%, so the two disagree on some images and agree
    on others."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("noisy_clip")
    shutil.copy(shapes_model_dir / "open_clip_config.json", folder)
    weights = load_file(str(shapes_model_dir / "open_clip_model.safetensors"))
    draw = torch.Generator().manual_seed(1)
    for key, value in weights.items():
        if key.startswith("visual") and value.is_floating_point() and value.ndim >= 2:
            weights[key] = value + NOISE_STD * value.std() * torch.randn(value.shape, generator=draw)
    save_file(weights, str(folder / "open_clip_model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="session")
def noisy_model(noisy_model_dir):
    from explorer.embed.model import load_model

    return load_model(f"local-dir:{noisy_model_dir}", device="cpu")
