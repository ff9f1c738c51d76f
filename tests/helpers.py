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


def hosted_context(tmp_path, model):
    """An AppContext as `app.py --hosted` makes it, with `model` loaded: shared indexes and uploads and the
    sessions' workspaces under `tmp_path`."""
    from explorer.app.context import AppContext
    from explorer.embed.model import ModelSlot
    from explorer.inputs.settings import load_settings

    settings = load_settings(env={"EXPLORER_HOSTED": "1", "EXPLORER_INDEX_DIR": str(tmp_path / "shared-idx"),
                                  "EXPLORER_ALLOWED_ROOTS": str(tmp_path)})
    ctx = AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "shared-uploads",
                            hosted_dir=tmp_path / "sessions")
    ctx.slot.model = model
    return ctx
