"""`clip-explorer <command>` (also `python -m explorer <command>`): the core functions the app
uses, from a terminal.

Each command is a module in explorer/commands/ with a `register(subparsers)` function; every such
module is picked up here, so adding a command means adding one file.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from explorer.embed.images import ImageError
from explorer.embed.names import ModelLoadError
from explorer.index.build_ray import RayRunError

from . import commands as command_package


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clip-explorer", description="Explore CLIP-family models.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(command_package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{command_package.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ModelLoadError, ImageError, ValueError, OSError,
            RayRunError) as exc:  # PromptError, PathRefused... are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
