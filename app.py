"""CLIP Explorer: `python app.py [--model ... --port ...]` (also the Hugging Face Spaces entry point)."""
from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phone-home from a local tool

from explorer.context import AppContext
from explorer.settings import add_settings_arguments, load_settings
from explorer.ui import build_app, launch_options, queue_options


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the CLIP Explorer web app.")
    add_settings_arguments(parser)
    from explorer import zerogpu  # ZeroGPU: `spaces` imported and the model put on "cuda" before it loads

    settings = zerogpu.startup(load_settings(parser.parse_args(argv)))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("explorer")
    log.setLevel(logging.INFO)
    ctx = AppContext.create(settings)
    if ctx.slot.load(settings.model, settings.pretrained, settings.device, settings.precision) is None:
        # The slot has logged why; the page says it too, with what to type.
        log.warning("The app starts without a model; load one from the page.")
    else:
        log.info(ctx.slot.status())
    build_app(ctx).queue(**queue_options(settings)).launch(**launch_options(settings))


if __name__ == "__main__":
    main()
