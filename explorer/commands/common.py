"""What the commands share: building settings and the model, a progress bar on stderr, and the test-time
switches' flags and report (`classify`, `eval`).

Commands import the model (torch, open_clip) and the heavy core inside `run()`, so `clip-explorer --help`
and the commands that need no model start without them (tests/test_cli_start.py).
"""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
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


def model_opener(settings: Settings):
    """A model_compare.ModelOpener: `with opener(choice) as model:` loads the choice on the settings' device
    and precision (ModelLoadError when it cannot), and frees it on leaving, so that the models of a
    comparison are never resident together."""

    @contextmanager
    def opened(choice):
        import gc

        from explorer.embed.model import load_model

        model = load_model(choice.name, choice.pretrained, settings.device, settings.precision)
        cuda = model.device.type == "cuda"
        try:
            yield model
        finally:
            del model
            gc.collect()
            if cuda:
                import torch
                torch.cuda.empty_cache()

    return opened


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


# ---- the test-time switches (classify, eval) ------------------------------------------------------
COMBINES = ("zero", "mean")  # test_time.SwitchSettings.combine


def add_switch_arguments(parser: argparse.ArgumentParser) -> None:
    """--views N --combine zero|mean --tda --seed S: the test-time switches (explorer/science/test_time.py),
    off by default; with --max-view-encodes, the most image views one run may encode."""
    group = parser.add_argument_group("test-time switches (off by default)")
    group.add_argument("--views", type=int, default=0, metavar="N",
                       help="augmented views per image, the image itself counted (ZERO, Farina et al. 2024: "
                       "random crops and flips); 0 or 1 = off")
    group.add_argument("--combine", choices=COMBINES, default="zero",
                       help="with --views: ZERO's vote of the confident views (zero), or their averaged "
                       "features (mean)")
    group.add_argument("--tda", action="store_true",
                       help="TDA (Karmanov et al. 2024): caches of confident images adjust the labels of the "
                       "images after them, in the order given")
    group.add_argument("--seed", type=int, default=0, help="the augmented views' random draw")
    add_settings_arguments(group, only=("max_view_encodes",))


def switches_from(args: argparse.Namespace):
    """The test_time.SwitchSettings the flags ask for (ValueError for a negative --views)."""
    from explorer.science.test_time import SwitchSettings

    if args.views < 0:
        raise ValueError("--views is a number of views: 0 (off) or more")
    return SwitchSettings(views=args.views, combine=args.combine, tda=args.tda, seed=args.seed)


def print_switches(outcome, names: list[str]) -> None:
    """What the switches did (a test_time.SwitchOutcome): each switch with its source, the time against
    plain classification, the top labels they changed, and on labelled images the accuracy before and
    after with the paired evidence. Notes (files that could not be re-opened) go to stderr."""
    print(f"\ntest-time switches: {outcome.settings.describe()}")
    for about in outcome.settings.as_dicts():
        print(f"  {about['method']} {about.get('params', {})}: {about.get('source', '')}")
    print(f"  time: x{outcome.cost_ratio:.1f} plain classification ({outcome.seconds_switched:.2f} s vs "
          f"{outcome.seconds_plain:.2f} s)")
    before, after = outcome.before.top1(), outcome.after.top1()
    print(f"  {len(outcome.changed)} of {len(after)} top label(s) changed")
    for i in outcome.changed:
        print(f"    {names[i]}: {before[i]} -> {after[i]}")
    e = outcome.evidence
    if e is not None:
        beyond = {"better": "the switches help beyond chance", "worse": "the switches hurt beyond chance"}
        verdict = beyond.get(e.verdict, f"no clear difference on these {e.n} images")
        print(f"  top-1 {outcome.before_accuracy:.2%} plain -> {outcome.after_accuracy:.2%} switched: "
              f"{e.describe()} ({verdict})")
    for note in outcome.notes:
        print(f"note: {note}", file=sys.stderr)
