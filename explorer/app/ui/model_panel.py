"""The model bar shown above every tab: what is loaded, and a way to load another.

Locally any open_clip identifier may be typed. Hosted, visitors pick from the operator's list
(EXPLORER_MODELS) and nothing else is loaded, whatever a raw API call sends.

When a tab could not run for want of a model it says so in its message pane ("No model is loaded.
Could not load ..."); once a model loads, that message is stale, so a successful load replaces it
in the panes listed in MESSAGE_PANES (stale_panes) with a note that a model is loaded now.

Labels that depend on the loaded model's scoring rule (softmax over the labels, or a sigmoid per
label) follow it: `follow_rule` updates them after every load and on every page load.
"""
from __future__ import annotations

import html
import os
from collections.abc import Callable

import gradio as gr

from explorer.app.context import AppContext
from explorer.embed.model import LOCAL_DIR

from .common import message, offered, public_name

# The panes (elem_ids) where tabs show why they could not run, in the tabs' order.
MESSAGE_PANES = ("zs-results", "pl-summary", "search-report", "search-summary", "hm-status", "hm-map-info",
                 "gap-measures")
NO_MODEL = "No model is loaded."  # how context.NoModel's message begins (AppContext.model)


def status_text(ctx: AppContext, on_page_load: bool = False) -> str:
    """The status line. Hosted, a stranger's failed load is not news to everyone else: a page load
    shows only what is loaded; the failure is shown to the visitor who asked for it."""
    quiet = on_page_load and ctx.settings.hosted
    if ctx.slot.model is not None and (not ctx.slot.error or quiet):
        from explorer.embed.zerogpu import placed
        return shown(ctx, f"**Model:** {placed(ctx.slot.loaded())}")
    if ctx.slot.advice is not None and not ctx.settings.hosted:
        return advice_html(ctx.slot.advice, ctx.slot.loaded())
    pick = "Pick another model" if ctx.settings.hosted else "Enter another model"
    return shown(ctx, f"**Model problem: {ctx.slot.status()}** {pick} under *Load another model* and press "
                      "*Load model*.")


def shown(ctx: AppContext, text: str) -> str:
    """`text` with the server paths of the offered and loaded models cut to their names (hosted only)."""
    if not ctx.settings.hosted:
        return text
    model = ctx.slot.model
    pairs = list(
        ctx.settings.model_choices()) + ([(model.name, model.pretrained)] if model is not None else [])
    for value in sorted({v for pair in pairs for v in pair if v}, key=len, reverse=True):
        bare = value[len(LOCAL_DIR):] if value.startswith(LOCAL_DIR) else value
        if public_name(value) != value:
            text = text.replace(value, public_name(value)).replace(bare,
                                                                   os.path.basename(os.path.normpath(bare)))
    return text


def advice_html(advice, loaded: str | None) -> str:
    """Weights that could not be had (model.ModelSlot.advice): one error box with the reason, what to
    type in the fields below instead, and where weights are cached."""
    esc = html.escape

    def typed(fix) -> str:
        what = f"Model <code>{esc(fix.model)}</code>"
        return what + (f", Pretrained <code>{esc(fix.pretrained)}</code>" if fix.pretrained else "")

    fixes = "".join(f"<li>{esc(fix.what)}: {typed(fix)}</li>" for fix in advice.fixes)
    still = f"<br>Still using the model loaded before: {esc(loaded)}" if loaded else ""
    return (f'<div class="explorer-error" style="border: 1px solid currentColor; border-radius: 6px; '
            f'padding: 6px 10px;"><strong>Model problem: {esc(advice.reason)}.</strong>{still}<br>'
            f"Type one of these under <em>Load another model</em> and press <em>Load model</em>:"
            f"<ul>{fixes}</ul>{esc(advice.note)}</div>")


def panel_models(ctx: AppContext) -> list[str]:
    """The labels the hosted model bar offers: every offered model, the start-up one first; on ZeroGPU
    only the start-up model (a model loaded into the slot later would not reach the GPU workers;
    Compare still offers them all, each loaded inside its own GPU call)."""
    labels = list(offered(ctx))
    from explorer.embed.zerogpu import active
    return labels[:1] if active() else labels


def load_model(ctx: AppContext, name: str, pretrained: str = "") -> str:
    """Load another model into the one slot (a failed load keeps the old one); the new status line.
    Hosted, `name` must be the label of an offered model."""
    if ctx.settings.hosted:
        choice = offered(ctx).get(name)
        if choice is None:
            return status_text(ctx) + "\n\n*That model is not offered here; pick one from the list.*"
        ctx.slot.load(*choice, ctx.settings.device, ctx.settings.precision, public=True)
    else:
        ctx.slot.load(name, (pretrained or "").strip() or None, ctx.settings.device, ctx.settings.precision)
    return status_text(ctx)


def stale_panes(ctx: AppContext, panes: list) -> list:
    """After a load: for each message pane's current HTML, the note that replaces it when it says no
    model is loaded and one is loaded now; None (leave it as it is) for every other pane."""
    if ctx.slot.model is None:
        return [None] * len(panes)
    note = message(shown(ctx, f"{ctx.slot.loaded().rstrip('.')}. Run this again with it."),
                   "note")  # "Loaded NAME on ..."
    return [note if NO_MODEL in (value or "") else None for value in panes]


def build(ctx: AppContext):
    """Lay out the model bar; returns the load event, to chain clear_stale_messages to."""
    # A callable value is re-read on every page load, so a model loaded from another session shows.
    status = gr.Markdown(lambda: status_text(ctx, on_page_load=True), elem_id="model-status")
    hosted = ctx.settings.hosted
    with gr.Accordion("Load another model", open=ctx.slot.model is None):
        with gr.Row():
            if hosted:
                labels = panel_models(ctx)
                name = gr.Dropdown(
                    labels, value=labels[0], label="Model", scale=5, elem_id="model-name",
                    info="the models this demo offers; loading one changes it for every visitor")
                pretrained = gr.State("")
            else:
                name = gr.Textbox(label="Model", value=ctx.settings.model, scale=3, elem_id="model-name",
                                  info="open_clip name (ViT-B-32), hf-hub:org/repo, or local-dir:/path")
                pretrained = gr.Textbox(
                    label="Pretrained", value=ctx.settings.pretrained or "", scale=2,
                    elem_id="model-pretrained",
                    info="tag (laion2b_s34b_b79k) or checkpoint file; empty for hub/local-dir")
            load = gr.Button("Load model", variant="secondary", scale=1, elem_id="model-load")

    def on_load(model_name: str, tag: str, progress=gr.Progress()):
        progress(0, desc=f"Loading {model_name}…")
        return load_model(ctx, model_name, tag)

    return load.click(on_load, [name, pretrained], status, concurrency_limit=1, api_name="load_model")


def clear_stale_messages(ctx: AppContext, loaded, app: gr.Blocks):
    """After each load (the event `build` returned), replace stale no-model messages in the tabs'
    message panes (see stale_panes). Call once the tabs are built, inside `app`. Returns the event
    that does it (to chain more to), or `loaded` when the app has no message pane."""
    by_id = {getattr(block, "elem_id", None): block for block in app.blocks.values()}
    panes = [by_id[pane] for pane in MESSAGE_PANES if pane in by_id]
    if not panes:
        return loaded

    def refresh(*shown):
        updates = [gr.update() if note is None else note for note in stale_panes(ctx, list(shown))]
        return updates[0] if len(updates) == 1 else tuple(updates)

    return loaded.then(refresh, panes, panes, show_progress="hidden")


def scoring_rule(ctx: AppContext) -> str | None:
    """The loaded model's scoring rule ("softmax" or "sigmoid"); None while no model is loaded."""
    model = ctx.slot.model
    return None if model is None else model.scoring.kind


def rule_updates(ctx: AppContext, followers: list[Callable], values: list) -> list:
    """For each follower (update(rule, current value) -> a gr.update) and its component's current
    value, the update for the loaded model's rule; gr.update() (no change) for all when none is loaded."""
    rule = scoring_rule(ctx)
    return [gr.update() if rule is None else follow(rule, value) for follow, value in zip(followers, values)]


def follow_rule(ctx: AppContext, loaded, app: gr.Blocks, followers: dict[str, Callable]) -> None:
    """Keep the components named in `followers` (elem_id -> update(rule, current value)) true to the
    loaded model's scoring rule: after each load (`loaded`: the event `build` returned, or one chained
    to it) and on each page load (a page built under one model and reloaded under another). Call once
    the tabs are built, inside `app`."""
    by_id = {getattr(block, "elem_id", None): block for block in app.blocks.values()}
    named = [(by_id[elem_id], follow) for elem_id, follow in followers.items() if elem_id in by_id]
    if not named:
        return
    components, functions = [c for c, _ in named], [f for _, f in named]

    def refresh(*values):
        updates = rule_updates(ctx, functions, list(values))
        return updates[0] if len(updates) == 1 else tuple(updates)

    loaded.then(refresh, components, components, show_progress="hidden")
    app.load(refresh, components, components, show_progress="hidden")
