"""The Gradio app: one module per tab, composed here around one application context.
ui/ holds layout and wiring; every number comes from the core."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..context import AppContext
from ..paths import MAX_UPLOAD_BYTES
from ..settings import Settings
from . import calibration_view, classify_tab, gap_tab, heatmaps_tab, model_panel, prompt_lab_tab, search_tab
from . import teach_tab

ASSETS = Path(__file__).resolve().parents[2] / "assets"
CSS_PATH = ASSETS / "style.css"
HOVER_JS = ASSETS / "hover_preview.js"
SELECT_JS = ASSETS / "gap_select.js"
TABS = (("Zero-shot classification", "classify", classify_tab), ("Prompt lab", "prompts", prompt_lab_tab),
        ("Search", "search", search_tab), ("Heatmaps", "heatmaps", heatmaps_tab), ("Modality gap", "gap", gap_tab),
        ("Teach by example", "teach", teach_tab))
# Views that are not tabs, drawn under a tab and wired onto the components its build returns.
PANELS = {prompt_lab_tab: calibration_view.build}


def build_app(ctx: AppContext) -> gr.Blocks:
    hosted = ctx.settings.hosted
    # Hosted: gradio's own copies of uploads are deleted as the sessions' workspaces are.
    ttl = int(ctx.settings.session_ttl_minutes * 60)
    with gr.Blocks(title="CLIP Explorer", delete_cache=(min(ttl, 3600), ttl) if hosted else None) as app:
        gr.Markdown("# CLIP Explorer\nSee what a CLIP model thinks of your images, and why.", elem_id="title")
        loaded = model_panel.build(ctx)
        with gr.Tabs():
            for title, tab_id, module in TABS:
                with gr.Tab(title, id=tab_id):
                    components = module.build(ctx)
                    if module in PANELS:
                        PANELS[module](ctx, components)
        model_panel.clear_stale_messages(ctx, loaded, app)  # a successful load replaces "No model is loaded"
        if hosted:
            def end_session(request: gr.Request):
                ctx.workspaces.end(request.session_hash)
            app.unload(end_session)
    return app


def launch_options(settings: Settings) -> dict:
    """Arguments for Blocks.launch (gradio 6 takes theme and css here, not on Blocks)."""
    return dict(server_name=settings.host, server_port=settings.port,
                # Zips of images may be large; each image inside is still held to max_upload_mb.
                max_file_size=max(MAX_UPLOAD_BYTES, settings.max_upload_bytes),
                theme=gr.themes.Soft(primary_hue="indigo"), css_paths=[CSS_PATH],
                head="".join(f"<script>{js.read_text(encoding='utf-8')}</script>" for js in (HOVER_JS, SELECT_JS)))
