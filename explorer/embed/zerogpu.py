"""ZeroGPU, the GPUs Hugging Face Spaces lends per request: the app's part of the bargain.

On ZeroGPU hardware the Space has no GPU of its own. The `spaces` package, imported before the model
loads, emulates CUDA in the main process: the model is placed on "cuda" at start-up and its weights
are set aside; each call of a function decorated with `spaces.GPU` is then run in a worker process
(forked from the main one) to which a GPU is attached for that call, with the weights moved onto it.
Everywhere else (a dedicated GPU Space, a CPU Space, a laptop) nothing here does anything, and
`spaces` is not even imported: it is an optional dependency.

What that asks of the app, and where it is done:
- `startup(settings)` (app.py, before the model loads): import `spaces` and put the model on "cuda".
  The model panel offers no other model (see FIXED_MODEL: a model loaded into the slot later would not
  reach the workers; `model_panel` asks `active()`), but EXPLORER_MODELS is kept: Compare loads each
  compared model inside its own GPU call (in the worker, freed there), so those models stay on offer to it.
- `gpu_task(fn, seconds)` (ui/__init__.py, on the handlers that run the model): `spaces.GPU(fn)`.
- In a worker, `in_worker()` is true: state changed there (caches, a session's bookkeeping) is that
  process's own copy and is lost to the main process; `prepare_worker()` makes CPU work there
  single-threaded (forked after the main process used its OpenMP threads, it would hang otherwise) and
  lets the index build start its DataLoader decode processes (the worker is a daemonic process).

Read from `spaces` 0.51 (spaces/config.py, spaces/zero/decorator.py, spaces/zero/wrappers.py). Not yet
run on a real ZeroGPU Space: tests/test_zerogpu.py checks the wiring with a stand-in `spaces`.
"""
from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

ENV = "SPACES_ZERO_GPU"  # set to "true" by Spaces on ZeroGPU hardware (read as spaces' Config does)
WHERE = "ZeroGPU (CUDA, allocated per request)"
FIXED_MODEL = ("On ZeroGPU this demo keeps the model it started with: a GPU is lent per request to a worker "
               "process made from the starting one, which a model loaded later would not reach. The operator "
               "changes it with EXPLORER_MODEL and a restart.")
_MAIN_PID = os.getpid()             # a worker is forked from this process and inherits the value, not the pid
log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable)


def active(env=None) -> bool:
    """True on ZeroGPU hardware: SPACES_ZERO_GPU is true (1, t, true) and `spaces` can be imported."""
    value = (os.environ if env is None else env).get(ENV)
    if value is None or value.lower() not in ("1", "t", "true"):
        return False
    try:
        return importlib.util.find_spec("spaces") is not None
    except (ImportError, ValueError):  # a broken or spec-less module under that name
        return False


def _spaces():
    import spaces  # noqa: PLC0415 - only on ZeroGPU: elsewhere the package need not be installed

    return spaces


def startup(settings):
    """Settings for the start-up model. On ZeroGPU: `spaces` is imported now, before the model loads
    (its CUDA emulation must be in place), gradio's own wrapping of every handler is turned off (only
    the handlers that run the model ask for a GPU) and the device "auto" becomes "cuda". EXPLORER_MODELS
    is kept for Compare, which loads each model inside its GPU call; the model panel keeps the start-up
    model. Elsewhere: `settings` unchanged."""
    if not active():
        return settings
    _spaces().disable_gradio_auto_wrap()
    if settings.models:
        log.warning("ZeroGPU: the demo keeps its start-up model %s; EXPLORER_MODELS are offered to Compare "
                    "only (each loads inside its GPU call).", settings.model)
    device = "cuda" if settings.device in ("", "auto") else settings.device
    return replace(settings, device=device)


def gpu_task(fn: F, seconds: int | None = None) -> F:
    """`fn` as ZeroGPU runs it, `spaces.GPU(fn, duration=seconds)`: each call borrows a GPU for at most
    about `seconds` (None: spaces' default, 60). Elsewhere `fn` itself, untouched."""
    if not active():
        return fn
    return _spaces().GPU(fn, duration=seconds)


def in_worker() -> bool:
    """True in a process forked from the one that imported this module: in a GPU task, a ZeroGPU worker."""
    return os.getpid() != _MAIN_PID


def prepare_worker() -> None:
    """Inside a ZeroGPU worker, before the task: CPU tensor operations run on one thread, as in a
    DataLoader worker (a process forked after its parent used OpenMP threads hangs in its first parallel
    operation: seen with this project's torch build), and the worker may start processes (the index
    build's DataLoader decode workers; multiprocessing refuses children to a daemonic process, which
    ZeroGPU's worker is; DataLoader workers exit with their parent). Elsewhere: nothing."""
    if in_worker():
        import torch  # here, not at the top: the CLI imports this module without needing torch

        torch.set_num_threads(1)
        multiprocessing.current_process().daemon = False


def placed(status: str | None) -> str | None:
    """The model's status line ("Loaded NAME on cuda (fp16), ...") saying where it really runs: on
    ZeroGPU "cuda" is a GPU lent for each request."""
    if status is None or not active():
        return status
    return status.replace(" on cuda ", f" on {WHERE} ", 1)
