"""What every command shares: building settings and the model, and a progress bar on stderr.

Commands import the model (torch, open_clip) and the heavy core inside `run()`, so `clip-explorer --help`
and the commands that need no model start without them (tests/test_cli_start.py).
"""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from explorer.inputs.settings import Settings, add_settings_arguments

if TYPE_CHECKING:
    from explorer.embed.model import ClipModel

MODEL_FLAGS = ("model", "pretrained", "device", "precision")
IMAGE_LIMIT_FLAGS = ("max_upload_mb", "max_pixels", "max_decode_mb")


def add_model_arguments(parser: argparse.ArgumentParser, extra: tuple[str, ...] = ()) -> None:
    add_settings_arguments(parser, only=MODEL_FLAGS + extra)


def model_from(settings: Settings) -> ClipModel:
    from explorer.embed.model import load_model  # torch and open_clip: only once a model is needed

    return load_model(settings.model, settings.pretrained, settings.device, settings.precision)


def prompt_warnings(model: ClipModel, texts) -> list[str]:
    """One warning per text longer than the model's context (tokens.cut_warnings), each also printed
    on stderr (the first few, then a count); the list goes into a command's JSON as `warnings`."""
    from explorer.embed.tokens import cut_warnings, shown

    warnings = cut_warnings(model, texts)
    for line in shown(warnings):
        print(f"warning: {line}", file=sys.stderr)
    return warnings


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


