"""The tiny shapes CLIP in tests/assets/shapes_clip loads through open_clip and still knows its shapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.shapes import CLASSES, COLORS, SHAPES, caption, draw_pair, draw_shape

HERE = Path(__file__).resolve().parent

MODEL_DIR = HERE / "assets" / "shapes_clip"


def test_classes_and_captions():
    assert len(COLORS) == 6 and len(SHAPES) == 4
    assert len(CLASSES) == 24 and len(set(CLASSES)) == 24
    assert caption("red", "circle") == "a red circle"
    assert len({caption(*c) for c in CLASSES}) == 24


def test_drawing_is_deterministic():
    a = np.asarray(draw_shape("blue", "cross", size=48, rng=np.random.default_rng(3)))
    b = np.asarray(draw_shape("blue", "cross", size=48, rng=np.random.default_rng(3)))
    assert a.shape == (48, 48, 3) and (a == b).all()
    img, left, right = draw_pair(("red", "circle"), ("green", "square"), size=64, rng=7)
    assert img.size == (64, 64)
    assert left[2] < 32 <= right[0]


@pytest.mark.timeout(60)
def test_shapes_clip_zero_shot():
    torch = pytest.importorskip("torch")
    open_clip = pytest.importorskip("open_clip")
    torch.set_num_threads(2)
    name = f"local-dir:{MODEL_DIR}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)

    rng = np.random.default_rng(2024)  # training uses seed 0, its own eval 12345
    images, labels = [], []
    for k, (color, shape) in enumerate(CLASSES):
        for size in (48, 96):
            images.append(preprocess(draw_shape(color, shape, size=size, rng=rng)))
            labels.append(k)
    with torch.no_grad():
        text = model.encode_text(tokenizer([caption(*c) for c in CLASSES]), normalize=True)
        feats = model.encode_image(torch.stack(images), normalize=True)
    pred = (feats @ text.T).argmax(dim=-1)
    acc = (pred == torch.tensor(labels)).float().mean().item()
    assert acc >= 0.90, f"zero-shot accuracy {acc:.1%}"
