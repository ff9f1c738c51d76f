"""Small helpers the tests share (fixtures are in conftest.py)."""
from __future__ import annotations

import numpy as np
import torch


def encode_pil(model, images) -> np.ndarray:
    """Embeddings of in-memory PIL images: the model's own preprocessing, then one forward pass.
    (The app never holds PIL images: it embeds files through explorer.inputs.sources.)"""
    return model.encode_pixels(torch.stack([model.preprocess(image) for image in images]))


def local_context(model, workdir, allowed_root):
    """An AppContext as a local `app.py` makes it, with `model` loaded: the allowed root given,
    indexes and uploads under `workdir`."""
    from explorer.app.context import AppContext
    from explorer.embed.model import ModelSlot
    from explorer.inputs.settings import load_settings

    settings = load_settings(env={"EXPLORER_ALLOWED_ROOTS": str(allowed_root),
                                  "EXPLORER_INDEX_DIR": str(workdir / "idx")})
    context = AppContext.create(settings, ModelSlot(), upload_dir=workdir / "uploads")
    context.slot.model = model
    return context
