from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SHAPES_MODEL_DIR = ROOT / "tests" / "assets" / "shapes_clip"


@pytest.fixture(scope="session")
def shapes_model_dir() -> Path:
    if not (SHAPES_MODEL_DIR / "open_clip_config.json").is_file():
        pytest.fail("the shapes model is missing: run `python -m tests.train_shapes_clip`")
    return SHAPES_MODEL_DIR


@pytest.fixture(scope="session")
def shapes_model(shapes_model_dir):
    """The project's tiny CLIP, loaded through the same local-dir: path real checkpoints use."""
    from explorer.model import load_model

    return load_model(f"local-dir:{shapes_model_dir}", device="cpu")


@pytest.fixture(scope="session")
def random_vit():
    """A ViT-B-32 with random weights: real architecture, no download, for exactness and speed checks."""
    import torch

    from explorer.model import load_model

    torch.manual_seed(0)
    return load_model("ViT-B-32", None, device="cpu")
