"""What every command shares: building settings and the model, and a progress bar on stderr."""
from __future__ import annotations

import argparse
import sys

from ..model import ClipModel, load_model
from ..settings import Settings, add_settings_arguments

MODEL_FLAGS = ("model", "pretrained", "device", "precision")
IMAGE_LIMIT_FLAGS = ("max_upload_mb", "max_pixels", "max_decode_mb")


def add_model_arguments(parser: argparse.ArgumentParser, extra: tuple[str, ...] = ()) -> None:
    add_settings_arguments(parser, only=MODEL_FLAGS + extra)


def model_from(settings: Settings) -> ClipModel:
    return load_model(settings.model, settings.pretrained, settings.device, settings.precision)


class ProgressBar:
    """A tqdm bar on stderr, fed by a core function's progress(done, total) callback."""

    def __init__(self, quiet: bool, unit: str = "img"):
        self.quiet, self.unit, self.bar = quiet, unit, None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


