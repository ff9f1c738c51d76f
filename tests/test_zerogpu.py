"""ZeroGPU wiring (explorer/embed/zerogpu.py, ui.on_gpu), checked with a STAND-IN for Hugging Face's `spaces`
package, not the real one: these machines have no ZeroGPU. The stand-in's GPU(fn, duration=...) records
what it decorates and each call; in `fork` mode it runs each call the way spaces 0.51 does on ZeroGPU
(spaces/zero/wrappers.py): in a daemonic process forked from this one, arguments and result pickled.
It is put in sys.modules and SPACES_ZERO_GPU=true is set, as Spaces sets it on ZeroGPU hardware.

Checked: on ZeroGPU the handlers that run the model are decorated (every trigger of them) and the others
are not; gradio still sees their gr.Request and gr.Progress parameters; the decorated ones still work
(classify, and an index build plus a search in a forked daemonic worker, whose image decoding starts
DataLoader processes); the Load-model event keeps the model; the status line says ZeroGPU; start-up puts
the model on "cuda" and keeps EXPLORER_MODELS for Compare while the model panel offers only the start-up
model. Without `spaces`, or without the variable, nothing is decorated or changed.
"""
from __future__ import annotations

import functools
import inspect
import multiprocessing
import sys
import types
import zipfile
from importlib.machinery import ModuleSpec

import gradio as gr
import pytest
from gradio.helpers import special_args

from explorer.app.context import AppContext
from explorer.app.ui import GPU_EVENTS, build_app, model_panel, search_tab
from explorer.embed import zerogpu
from explorer.embed.model import ModelSlot
from explorer.inputs.settings import load_settings
from tests.shapes import CLASSES, caption, draw_shape, make_labelled_folder

SINGLE = "Single: a photo of a {}."
NOT_ON_GPU = {"load_model", "more_like_this", "duplicates", "cancel_build",
              "fewshot_download"}  # hosted: no open_index


class StandInSpaces(types.ModuleType):
    """A stand-in for `spaces` (see the module docstring). `decorated`: (function, duration) per
    GPU() call; `calls`: the names of the functions called through it."""

    def __init__(self, fork: bool = False):
        super().__init__("spaces")
        self.__spec__ = ModuleSpec("spaces", None)
        self.fork, self.decorated, self.calls, self.auto_wrap = fork, [], [], True

    def disable_gradio_auto_wrap(self):
        self.auto_wrap = False

    def GPU(self, task=None, *, duration=None):  # noqa: N802 - the real package's name
        self.decorated.append((task, duration))

        @functools.wraps(task)
        def gradio_handler(*args, **kwargs):
            self.calls.append(task.__name__)
            return _in_forked_daemon(task, args, kwargs) if self.fork else task(*args, **kwargs)
        return gradio_handler


def _in_forked_daemon(task, args, kwargs):
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def run():
        try:
            results.put(("ok", task(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - carried back to the test
            results.put(("error", repr(exc)))

    worker = context.Process(target=run, daemon=True)
    worker.start()
    status, value = results.get(timeout=120)
    worker.join(10)
    assert status == "ok", value
    return value


@pytest.fixture
def stand_in(monkeypatch):
    spaces = StandInSpaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    monkeypatch.setenv(zerogpu.ENV, "true")
    return spaces


def hosted(tmp_path, model, **env) -> AppContext:
    settings = load_settings(env={"EXPLORER_HOSTED": "1", "EXPLORER_INDEX_DIR": str(tmp_path / "idx"), **env})
    ctx = AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "uploads",
                            hosted_dir=tmp_path / "sessions")
    ctx.slot.model = model
    return ctx


def by_name(app) -> dict:
    return {block_fn.api_name: block_fn for block_fn in app.fns.values()}


def originals(spaces) -> set:
    """The handlers the stand-in decorated (ui.on_gpu hands it a wrapper of each, via functools.wraps)."""
    return {task.__wrapped__ for task, _ in spaces.decorated}


def test_on_zerogpu_the_handlers_that_run_the_model_are_decorated_and_no_others(
        stand_in, shapes_model, tmp_path, monkeypatch):
    ctx = hosted(tmp_path, shapes_model)
    monkeypatch.delenv(zerogpu.ENV)
    app = build_app(ctx)  # without ZeroGPU: the events that share a function with a GPU event, and the
    plain = by_name(app)  # run steps of one-click examples (after gradio's load_example), which run the model
    assert set(GPU_EVENTS) <= set(plain), "an event of GPU_EVENTS no longer exists"
    expected = {
        name
        for name, block_fn in plain.items()  # the handlers, whatever wraps each event's (gate, in use)
        if any(inspect.unwrap(block_fn.fn) is inspect.unwrap(plain[g].fn) for g in GPU_EVENTS)
    }
    examples = {name for name, block_fn in plain.items() if block_fn.trigger_after is not None
                and app.fns[block_fn.trigger_after].fn.__qualname__.startswith("Examples.")}
    monkeypatch.setenv(zerogpu.ENV, "true")
    events = by_name(build_app(ctx))
    decorated = originals(stand_in)
    assert {name for name, block_fn in events.items() if inspect.unwrap(block_fn.fn) in decorated} == \
        expected | examples
    assert len(stand_in.decorated) == len(GPU_EVENTS) + len(examples - expected), \
        "one GPU task per function, shared by all its triggers"
    seconds = {task.__wrapped__: duration for task, duration in stand_in.decorated}
    assert {name: seconds[inspect.unwrap(events[name].fn)] for name in GPU_EVENTS} == GPU_EVENTS
    assert NOT_ON_GPU <= set(events) and not NOT_ON_GPU & expected


def test_gradio_still_sees_request_and_progress(stand_in, shapes_model, tmp_path):
    ctx = hosted(tmp_path, shapes_model)
    events = by_name(build_app(ctx))
    for name in GPU_EVENTS:
        fn = events[name].fn
        original = inspect.unwrap(fn)
        assert inspect.signature(fn) == inspect.signature(original)
        request = gr.Request(session_hash="s1")
        filled, progress_at, _, _ = special_args(fn, [None] * len(events[name].inputs), request=request)
        expected, progress_expected, _, _ = special_args(original, [None] * len(events[name].inputs),
                                                         request=request)
        assert progress_at == progress_expected
        assert [type(v) for v in filled] == [type(v) for v in expected]
        assert any(isinstance(v, gr.Request) for v in filled), name


def test_a_decorated_handler_still_works_and_its_session_is_made_here(stand_in, shapes_model, tmp_path):
    ctx = hosted(tmp_path, shapes_model)
    classify = by_name(build_app(ctx))["classify"].fn
    image = tmp_path / "one.png"
    draw_shape("red", "circle", size=64, rng=1).save(image)
    labels = ", ".join(caption(*c) for c in CLASSES[:8])
    # (the last input before the request: what the page shows, gr.State; None for a first call)
    shown, visitor = None, gr.Request(session_hash="visitor")
    summary, *_ = classify([str(image)], labels, SINGLE, "", 3, None, shown, visitor)
    assert stand_in.calls == ["on_run"]
    assert "a red circle" in summary
    assert ctx.workspaces.sessions() == 1  # made in this (the main) process, before the GPU call


def test_build_and_search_run_in_a_forked_daemonic_worker(monkeypatch, shapes_model, tmp_path):
    """As on ZeroGPU: the call runs in a daemonic process forked from this one. The index build's
    DataLoader decode processes start there and CPU work does not hang (zerogpu.prepare_worker), what it
    writes
    to disk is seen by the next call, and only the worker's copy of the session TTL is lifted."""
    spaces = StandInSpaces(fork=True)
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    monkeypatch.setenv(zerogpu.ENV, "true")
    ctx = hosted(tmp_path, shapes_model)
    events = by_name(build_app(ctx))
    make_labelled_folder(tmp_path / "photos", CLASSES[:4], 3, size=40, seed=2)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((tmp_path / "photos").rglob("*.png")):
            z.write(path, path.relative_to(tmp_path).as_posix())
    request = gr.Request(session_hash="visitor")
    report, state, *_ = events["build_index"].fn(search_tab.UPLOAD, "", [str(archive)], None, None, None,
                                                 request)
    assert "12</b> image(s) searchable" in report, report
    found = events["search"].fn(state, caption(*CLASSES[1]), None, 0.5, 3, 0.0, request)[3]
    assert spaces.calls == ["on_build", "on_search"]
    assert found.hits[0].path.startswith("photos/a_red_square/"), found.hits
    assert ctx.workspaces.ttl_seconds != float("inf") and ctx.workspaces.sessions() == 1


def test_on_zerogpu_the_model_stays_and_the_status_says_where_it_runs(stand_in, shapes_model, tmp_path,
                                                                      monkeypatch):
    ctx = hosted(tmp_path, shapes_model)
    load = by_name(build_app(ctx))["load_model"].fn
    answer = load(model_panel.offered(ctx).popitem()[0], "")
    assert zerogpu.FIXED_MODEL in answer and ctx.slot.model is shapes_model
    assert "load_model" not in {task.__wrapped__.__name__ for task, _ in stand_in.decorated}
    monkeypatch.setattr(ctx.slot, "loaded", lambda: "Loaded shapes on cuda (fp16), 64-d embeddings.")
    assert "on ZeroGPU (CUDA, allocated per request) (fp16)" in model_panel.status_text(ctx)
    monkeypatch.delenv(zerogpu.ENV)
    assert "Loaded shapes on cuda (fp16)" in model_panel.status_text(ctx)


def test_on_zerogpu_the_model_bar_offers_only_the_start_up_model(stand_in, shapes_model, noisy_model_dir,
                                                                tmp_path):
    ctx = hosted(tmp_path, shapes_model, EXPLORER_MODEL=f"local-dir:{tmp_path / 'shapes_clip'}",
                 EXPLORER_MODELS=f"local-dir:{noisy_model_dir}")
    assert len(model_panel.offered(ctx)) == 2          # both stay on offer to Compare
    app = build_app(ctx)
    by_id = {getattr(b, "elem_id", None): b for b in app.blocks.values()}
    assert [label for label, _ in by_id["model-name"].choices] == ["local-dir:shapes_clip"]
    assert [label for label, _ in by_id["cmp-models"].choices] == ["local-dir:shapes_clip",
                                                                   f"local-dir:{noisy_model_dir.name}"]


def test_startup_on_zerogpu_imports_spaces_and_puts_the_model_on_cuda(stand_in):
    settings = load_settings(env={"EXPLORER_MODELS": "ViT-B-32@openai"})
    ready = zerogpu.startup(settings)
    assert ready.device == "cuda" and stand_in.auto_wrap is False
    assert ready.models == ("ViT-B-32@openai",)  # kept for Compare, which loads each inside its GPU call
    assert zerogpu.startup(
        load_settings(env={"EXPLORER_DEVICE": "cpu"})).device == "cpu"  # the operator's word


@pytest.mark.parametrize("how", ["no variable", "variable false", "no spaces package"])
def test_without_zerogpu_nothing_is_decorated_or_changed(how, monkeypatch, shapes_model, tmp_path):
    spaces = StandInSpaces()
    if how == "no spaces package":
        monkeypatch.setitem(sys.modules, "spaces", None)  # `import spaces` fails, as when not installed
        monkeypatch.setenv(zerogpu.ENV, "true")
    else:
        monkeypatch.setitem(sys.modules, "spaces", spaces)
        if how == "no variable":
            monkeypatch.delenv(zerogpu.ENV, raising=False)
        else:
            monkeypatch.setenv(zerogpu.ENV, "false")
    assert not zerogpu.active()
    ctx = hosted(tmp_path, shapes_model)
    app = build_app(ctx)
    made_here = [
        f.api_name for f in app.fns.values()
        if f.fn is not None and "build_app" not in f.fn.__qualname__ and f.fn.__module__ == "explorer.app.ui"
    ]
    assert spaces.decorated == [] and made_here == []
    settings = load_settings(env={})
    assert zerogpu.startup(settings) is settings
    run = lambda: 1  # noqa: E731
    assert zerogpu.gpu_task(run, 30) is run
    assert zerogpu.placed("Loaded x on cuda (fp16).") == "Loaded x on cuda (fp16)."
    assert not zerogpu.in_worker()
