"""Small helpers the tests share (fixtures are in conftest.py)."""
from __future__ import annotations

import numpy as np
import torch


def encode_pil(model, images) -> np.ndarray:
    """Embeddings of in-memory PIL images: the model's own preprocessing, then one forward pass.
    (The app never holds PIL images: it embeds files through explorer.sources.)"""
    return model.encode_pixels(torch.stack([model.preprocess(image) for image in images]))
