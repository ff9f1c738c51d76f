"""What a hosted app shows of itself: the API lists only the named endpoints docs/api.md documents, and
neither /config nor the model bar names a server path; the Search query image arrives as a file."""
from __future__ import annotations

import json
import re
from pathlib import Path

import gradio as gr

from explorer.app.ui import API_ENDPOINTS, build_app, model_panel

from .test_hosted import hosted_context

ROOT = Path(__file__).resolve().parents[1]


def readme_endpoints() -> set[str]:
    section = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `/(\w+)` \|", section, flags=re.M))


def test_the_api_lists_only_the_endpoints_the_readme_documents(shapes_model, tmp_path):
    assert readme_endpoints() == set(API_ENDPOINTS)
    local = build_app(hosted_context(tmp_path / "l", shapes_model, EXPLORER_HOSTED="0"))
    assert set(local.get_api_info()["named_endpoints"]) == {f"/{n}" for n in API_ENDPOINTS}
    assert local.get_api_info()["unnamed_endpoints"] == {}
    hosted = build_app(hosted_context(tmp_path / "h", shapes_model))
    assert set(hosted.get_api_info()["named_endpoints"]) == {f"/{n}" for n in API_ENDPOINTS} - {"/open_index"}
    listed = [d for d in hosted.config["dependencies"] if d.get("api_visibility") == "public"]
    assert sorted(d["api_name"] for d in listed) == sorted(set(API_ENDPOINTS) - {"open_index"})


def test_a_hosted_config_names_no_server_path(shapes_model, shapes_model_dir, tmp_path):
    ctx = hosted_context(tmp_path, shapes_model, EXPLORER_MODEL=f"local-dir:{shapes_model_dir}",
                         EXPLORER_MODELS="ViT-B-32@openai")
    config = json.dumps(build_app(ctx).config, default=repr)
    from gradio.utils import get_upload_folder

    from explorer.app.ui.prompt_lab_tab import SAVED_SETS

    for path in (shapes_model_dir, tmp_path, ROOT, Path.home(), ctx.settings.index_dir, SAVED_SETS,
                 get_upload_folder()):  # the last two: the Prompt lab's Save buttons made files at build
        assert str(path) not in config, path
    assert "local-dir:shapes_clip" in config


def test_the_model_bar_shows_a_local_dir_model_by_its_folder_name(shapes_model, shapes_model_dir, tmp_path):
    ctx = hosted_context(tmp_path, shapes_model, EXPLORER_MODEL=f"local-dir:{shapes_model_dir}")
    ctx.slot.error = f"could not load local-dir:{shapes_model_dir}/missing"
    for text in (model_panel.status_text(ctx), model_panel.status_text(ctx, on_page_load=True),
                 *model_panel.offered(ctx)):
        assert str(shapes_model_dir) not in text and "shapes_clip" in text, text
    local = hosted_context(tmp_path / "l", shapes_model, EXPLORER_HOSTED="0")
    assert model_panel.shown(local,
                             str(shapes_model_dir)) == str(shapes_model_dir)  # locally, the path is useful


def test_the_search_query_image_arrives_as_a_file_not_decoded_by_gradio(shapes_model, tmp_path):
    app = build_app(hosted_context(tmp_path, shapes_model))
    by_id = {getattr(b, "elem_id", None): b for b in app.blocks.values()}
    image = by_id["search-image"]
    assert isinstance(image, gr.File) and not isinstance(image, gr.Image)
    search = next(f for f in app.fns.values() if f.api_name == "search")
    assert image in search.inputs
