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


def same_up_to_rounding(a, b, rel: float = 1e-5) -> bool:
    """JSON-like `a` and `b` equal, floats to `rel`: two runs of the same numbers may round apart in the
    last bits (a text embedding cached from a batch of other prompts, numpy's sums depend on alignment),
    so an exact comparison would hang on what tests ran before in the same process."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and \
            abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_up_to_rounding(a[k], b[k], rel) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_up_to_rounding(x, y, rel) for x, y in zip(a, b))
    return a == b
