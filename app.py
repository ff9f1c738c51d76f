"""CLIP Explorer: `python app.py [--model ... --port ...]` (also the Hugging Face Spaces entry point)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phone-home from a local tool

# No gradio import up here: hosted, gradio's cache must be placed (GRADIO_TEMP_DIR) before gradio loads.
from explorer.app.context import AppContext
from explorer.app.workspace import new_base, sweep_dead
from explorer.inputs.settings import add_settings_arguments, load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the CLIP Explorer web app.")
    add_settings_arguments(parser)
    settings = load_settings(parser.parse_args(argv))
    base, counted = hosted_folders() if settings.hosted else (None, ())
    from explorer.app.ui import build_app, launch_options
    from explorer.embed import zerogpu

    settings = zerogpu.startup(settings)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("explorer")
    log.setLevel(logging.INFO)
    ctx = AppContext.create(settings, hosted_dir=base, own_hosted_dir=True, counted=counted)
    from explorer.embed import decode_pool
    decode_pool.configure(settings)  # hosted: images decode in worker processes with time and memory budgets
    if ctx.slot.load(settings.model, settings.pretrained, settings.device, settings.precision) is None:
        # The slot has logged why; the page says it too, with what to type.
        log.warning("The app starts without a model; load one from the page.")
    else:
        log.info(ctx.slot.status())
    app = build_app(ctx)  # queued there (ui.queue_options)
    app.launch(prevent_thread_lock=True, **launch_options(settings))
    if settings.hosted:
        def clean_up():
            ctx.workspaces.remove_all()
            decode_pool.shutdown()
        clean_up_on_signals(clean_up)  # after launch, so it runs before any handler gradio set
    app.block_thread()


def hosted_folders() -> tuple[Path, tuple[Path, ...]]:
    """Hosted: (this run's folder for the sessions, the other folders counted in the shared quota).
    Folders left by runs killed outright are removed first. Gradio's cache goes inside this run's
    folder (counted, swept, removed with it) unless the operator placed it (GRADIO_TEMP_DIR)."""
    sweep_dead()
    base = new_base()
    placed = os.environ.get("GRADIO_TEMP_DIR")
    if placed:
        return base, (Path(placed),)
    os.environ["GRADIO_TEMP_DIR"] = str(base / "gradio")
    return base, ()


def clean_up_on_signals(clean_up, signals=(signal.SIGTERM, signal.SIGINT)) -> None:
    """On each of `signals`: `clean_up()`, then what the signal did before (a handler of gradio's, a
    KeyboardInterrupt for SIGINT, or the default: the process ends with that signal). atexit alone
    misses a signal's default action, which ends the process without running it. A signal the app was
    started with ignored (SIGINT of a background job, `nohup`) stays ignored: cleaning up on it would
    leave the app running with its visitors' workspaces gone."""
    owner = os.getpid()  # a forked worker (ZeroGPU) inherits the handler: only this process cleans up
    for sig in signals:
        previous = signal.getsignal(sig)
        if previous == signal.SIG_IGN:
            continue

        def handler(signum, frame, previous=previous):
            if os.getpid() == owner:
                clean_up()
            if callable(previous):
                return previous(signum, frame)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            sys.exit(128 + signum)  # only if the default action did not end the process

        signal.signal(sig, handler)


if __name__ == "__main__":
    main()
