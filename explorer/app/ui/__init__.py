"""The Gradio app: one module per tab, composed here around one application context.
ui/ holds layout and wiring; every number comes from the core."""
from __future__ import annotations

import functools
import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
from gradio.helpers import Examples

from explorer.app.context import AppContext
from explorer.embed import zerogpu
from explorer.inputs.settings import Settings

from . import (
    calibration_view,
    classify_tab,
    compare_tab,
    gap_tab,
    gate_events,
    heatmaps_tab,
    map_actions,
    map_tab,
    map_words,
    model_panel,
    probes_tab,
    prompt_lab_tab,
    search_tab,
    teach_tab,
)
from .common import around, request_session

ASSETS = Path(__file__).resolve().parents[3] / "assets"
CSS_PATH = ASSETS / "style.css"
HOVER_JS = ASSETS / "hover_preview.js"
SELECT_JS = ASSETS / "gap_select.js"
CAPTION_JS = ASSETS / "caption_titles.js"
MAP_JS = ASSETS / "map.js"
TABS = (("Zero-shot classification", "classify", classify_tab), ("Prompt lab", "prompts", prompt_lab_tab),
        ("Search", "search", search_tab), ("Map", "map", map_tab), ("Heatmaps", "heatmaps", heatmaps_tab),
        ("Modality gap", "gap", gap_tab), ("Teach by example", "teach", teach_tab),
        ("Probes", "probes", probes_tab), ("Compare models", "compare", compare_tab))
# Views that are not tabs, drawn under a tab and wired onto the components its build returns.
PANELS = {prompt_lab_tab: calibration_view.build, map_tab: map_words.build}
# Components whose choices or labels name the loaded model's scoring rule (softmax or sigmoid), by
# elem_id, with update(rule, current value): they follow every model load and page load.
RULE_FOLLOWERS = {"hm-view": heatmaps_tab.view_update}
# The events that run the model, by api_name, with the seconds of GPU one call may hold on ZeroGPU
# (see on_gpu); another trigger of the same function (Enter in a text box) is wrapped with it. Short
# asks wait less in ZeroGPU's queue, and a visitor's daily quota is minutes (2 without an account).
GPU_EVENTS = {"classify": 30, "evaluate_prompts": 60, "build_index": 90, "search": 15, "similarity": 30,
              "patch_map": 15, "gap": 60, "fewshot": 60, "fewshot_apply": 30, "map": 30, "map_colours": 30,
              "map_lists": 60, "map_words": 60, "map_compare": 60, "map_explain": 60, "probe": 60,
              "compare": 120, "compare_indexes": 60}
CACHE_SWEEP_SECONDS = 600  # hosted: how often gradio's cache is swept of files older than a session's TTL
EXAMPLE_SECONDS = 60  # a one-click example that runs another function than its tab's event (8 photos)
# The API: the endpoints docs/api.md ("Use it from Python (gradio_client)") documents. Every other event is
# the page's own wiring and is private (gate_events.install; still gated, not listed nor offered to clients).
API_ENDPOINTS = ("classify", "evaluate_prompts", "build_index", "cancel_build", "search", "more_like_this",
                 "duplicates", "open_index", "similarity", "patch_map", "gap", "fewshot", "fewshot_apply",
                 "fewshot_download", "load_model", "map", "map_colours", "map_lists", "probe", "compare",
                 "cancel_compare", "compare_indexes")
QUEUE_SIZE = 256  # hosted: events that may wait in gradio's queue at once (then "Queue is full")


def build_app(ctx: AppContext) -> gr.Blocks:
    hosted = ctx.settings.hosted
    # Hosted: gradio's own copies of uploads and outputs (its cache, counted in the shared quota)
    # are deleted as the sessions' workspaces expire, checked every CACHE_SWEEP_SECONDS at most.
    ttl = int(ctx.settings.session_ttl_minutes * 60)
    sweep = (max(1, min(ttl, CACHE_SWEEP_SECONDS)), max(1, ttl)) if hosted else None
    with gr.Blocks(title="CLIP Explorer", delete_cache=sweep) as app:
        gr.Markdown("# CLIP Explorer\nSee what a CLIP model thinks of your images, and why.", elem_id="title")
        loaded = model_panel.build(ctx)
        built = {}
        with gr.Tabs() as tabs:
            for title, tab_id, module in TABS:
                with gr.Tab(title, id=tab_id):
                    built[tab_id] = components = module.build(ctx)
                    if module in PANELS:
                        PANELS[module](ctx, components)
        wire_map_actions(ctx, built, tabs)
        refreshed = model_panel.clear_stale_messages(ctx, loaded, app)  # replaces "No model is loaded"
        model_panel.follow_rule(ctx, refreshed, app, RULE_FOLLOWERS)  # then the labels that name the rule
        on_gpu(ctx, app)
        if hosted:
            kept_in_use(ctx, app)  # a session whose request runs is neither expired nor evicted

            def end_session(request: gr.Request):
                ctx.workspaces.end(request.session_hash)
            app.unload(end_session)
        # Last, so every event is in: each one's arguments pass the input gate, model jobs are limited
        # per session, and only API_ENDPOINTS are listed.
        gate_events.install(ctx.settings, app, heavy=_gpu_functions(app), public=API_ENDPOINTS)
    app.queue(**queue_options(ctx.settings))
    if hosted:
        gate_events.quiet_join_errors(app)
        ctx.workspaces.trim_cache = functools.partial(trim_cache, app, ctx.settings.cache_grace_seconds)
        threading.Thread(target=_keep_within_quota, args=(ctx.workspaces,), daemon=True,
                         name="cache-quota").start()
    return app


def wire_map_actions(ctx: AppContext, built: dict, tabs: gr.Tabs):
    """The Map tab's selection actions (map_actions), drawn in its place for them and wired once every
    tab is built (they show results in the Search and Teach tabs). `built`: what each tab's build
    returned, by tab id. None when there is no Map tab."""
    page = built.get("map")
    if page is None:
        return None
    return map_actions.build(ctx, page.index, page.selection, built.get("search"), built.get("teach"),
                             tabs, place=page.actions, vocabulary=page.vocabulary)


QUOTA_CHECK_SECONDS = 15  # how often gradio's cache is checked against the shared quota (hosted)


def _keep_within_quota(workspaces) -> None:
    while True:
        time.sleep(QUOTA_CHECK_SECONDS)
        try:
            workspaces.keep_within_quota()
        except Exception:  # a folder vanishing mid-walk: try again next time
            logging.getLogger(__name__).exception("checking gradio's cache against the quota failed")


def trim_cache(app: gr.Blocks, grace_seconds: float) -> None:
    """Gradio's own sweep (the one delete_cache runs on its schedule) now, for files older than
    `grace_seconds` (a younger upload may be about to be read by its event): what gradio keeps (the
    examples' files) stays."""
    from gradio.route_utils import delete_files_created_by_app

    delete_files_created_by_app(app, age=grace_seconds)


def kept_in_use(ctx: AppContext, app: gr.Blocks) -> None:
    """Every event of `app` marks its session in use while its handler runs (Workspaces.in_use):
    its files are then neither expired nor evicted to make room for others, and a page closed
    meanwhile is cleaned up when the handler ends."""
    for block_fn in app.fns.values():
        if block_fn.fn is not None:
            block_fn.fn = _in_use(ctx, block_fn.fn)


def _in_use(ctx: AppContext, fn):
    """`fn` run inside ctx.workspaces.in_use of the session of its gr.Request (common.around). A
    session whose files were evicted or expired is told so once, by a warning on the page, on its
    next event."""
    @contextmanager
    def used(args, kwargs):
        with ctx.workspaces.in_use(request_session(args, kwargs)) as ws:
            if ws is not None and ws.gone and not ws.told:
                ws.told = True
                gr.Warning(ws.gone)
            yield

    return around(fn, used)


def on_gpu(ctx: AppContext, app: gr.Blocks) -> list[str]:
    """ZeroGPU only (zerogpu.active()): the events of GPU_EVENTS ask for a GPU per call, and loading
    another model is refused (zerogpu.FIXED_MODEL). Returns the api_names of the events wrapped;
    elsewhere nothing is touched and the list is empty."""
    if not zerogpu.active():
        return []
    seconds = _gpu_functions(app)
    made: dict = {}
    wrapped = []
    for block_fn in app.fns.values():
        if block_fn.fn in seconds:
            if block_fn.fn not in made:
                made[block_fn.fn] = _gpu_handler(ctx, block_fn.fn, seconds[block_fn.fn])
            block_fn.fn = made[block_fn.fn]
            wrapped.append(block_fn.api_name)
        elif block_fn.api_name == "load_model":
            block_fn.fn = _model_kept(ctx, block_fn.fn)
    return wrapped


def _gpu_functions(app: gr.Blocks) -> dict:
    """function -> GPU seconds: those of GPU_EVENTS, and the run step of each one-click example
    (common.offer_examples: it runs its tab's main action, or a function calling it)."""
    seconds = {block_fn.fn: GPU_EVENTS[block_fn.api_name] for block_fn in app.fns.values()
               if block_fn.api_name in GPU_EVENTS}
    for block_fn in app.fns.values():
        before = app.fns.get(block_fn.trigger_after) if block_fn.trigger_after is not None else None
        if before is not None and block_fn.fn is not None and _loads_an_example(before.fn):
            seconds.setdefault(block_fn.fn, EXAMPLE_SECONDS)
    return seconds


def _loads_an_example(fn) -> bool:
    """True for the step gradio's Examples run first on a click (it fills the inputs; the run follows)."""
    return getattr(fn, "__module__", "") == Examples.__module__ and \
        getattr(fn, "__qualname__", "").startswith(Examples.__name__ + ".")


def _gpu_handler(ctx: AppContext, fn, seconds: int):
    """`fn` run by ZeroGPU in a worker process with a GPU. Its gr.Request and gr.Progress parameters
    stay visible to gradio (functools.wraps: gradio reads the signature through __wrapped__)."""
    @functools.wraps(fn)
    def in_worker(*args, **kwargs):
        if zerogpu.in_worker():
            # This process's copy of the sessions ages while the main one's is kept fresh: only the
            # main process deletes unused sessions.
            ctx.workspaces.ttl_seconds = float("inf")
            zerogpu.prepare_worker()
        return fn(*args, **kwargs)

    on_device = zerogpu.gpu_task(in_worker, seconds)

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        for value in (*args, *kwargs.values()):
            if isinstance(value, gr.Request) and ctx.settings.hosted and value.session_hash:
                ctx.workspaces.get(
                    value.session_hash)  # made and kept fresh here, where unload and expiry run
        return on_device(*args, **kwargs)
    return handler


def _model_kept(ctx: AppContext, fn):
    """The Load-model event on ZeroGPU: says what is loaded, and why it stays (loads nothing)."""
    @functools.wraps(fn)
    def keep(*args, **kwargs):
        return f"{model_panel.status_text(ctx)}\n\n*{zerogpu.FIXED_MODEL}*"
    return keep


def max_file_size(settings: Settings) -> int:
    """The largest file gradio's upload route takes (it refuses a larger one with 413 before any
    handler runs). A zip of images may be large (each image inside is still held to max_upload_mb),
    so locally the most one upload may unpack to; hosted, no more than a session's quota either."""
    largest = max(settings.max_upload_total_bytes, settings.max_upload_bytes)
    if settings.hosted:
        largest = min(largest, int(settings.session_quota_mb * 2**20))
    return largest


def queue_options(settings: Settings) -> dict:
    """Arguments for Blocks.queue: how many events run at once, and how many may wait (hosted: at most
    QUEUE_SIZE; each session's model jobs are limited by session_jobs, see gate_events)."""
    return dict(default_concurrency_limit=2, max_size=QUEUE_SIZE if settings.hosted else None)


def launch_options(settings: Settings) -> dict:
    """Arguments for Blocks.launch (gradio 6 takes theme and css here, not on Blocks)."""
    return dict(
        server_name=settings.host, server_port=settings.port, max_file_size=max_file_size(settings),
        # No run history: gradio would save every call's inputs and outputs in the visitor's browser, and
        # with live edits every keystroke is a call; the saving alone made a no-op round trip 4x slower
        # once the tabs held results (bench/bench_interaction.py, noop_at_end).
        run_history=False,
        theme=gr.themes.Soft(primary_hue="indigo"), css_paths=[CSS_PATH],
        head="".join(f"<script>{js.read_text(encoding='utf-8')}</script>"
                     for js in (HOVER_JS, SELECT_JS, CAPTION_JS, MAP_JS)))
