"""What the faces say about models and decoding without loading anything, importable without torch:
the identifier a person would type (`describe`), the error a failed load raises, and where JPEGs may
be decoded. model.py and gpu_decode.py import torch (and open_clip, on first load); `clip-explorer
--help`, the commands that need no model (`indexes`) and an index's listing use only these names, so
they start in a fraction of a second (bench/bench_cli_start.py, tests/test_cli_start.py)."""
from __future__ import annotations

from . import checkpoints
from .checkpoints import HF_HUB, LOCAL_DIR

DECODE_CHOICES = ("auto", "cpu", "gpu")   # where JPEGs are decoded while indexing (gpu_decode.choose)

__all__ = ["DECODE_CHOICES", "HF_HUB", "LOCAL_DIR", "ModelLoadError", "describe"]


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the model and says why. `advice` (checkpoints.Advice)
    is set when its weights cannot be had: the reason in one line and what to type instead."""

    def __init__(self, message: str, advice: checkpoints.Advice | None = None):
        super().__init__(message)
        self.advice = advice


def describe(name: str, pretrained: str | None) -> str:
    """The identifier a person would type: 'ViT-B-32 (laion2b_s34b_b79k)', 'local-dir:/x', 'hf-hub:o/r'."""
    if name.startswith((LOCAL_DIR, HF_HUB)) or not pretrained:
        return name
    return f"{name} ({pretrained})"
