"""The named API endpoints, called through gradio_client exactly as docs/api.md's "Use it from Python
(gradio_client)" shows, against the running app (tests/browser/conftest.py: app.py with the shapes
model). Each call gets a real answer: the right label, the right images found, a map, a gap, a taught
classifier. Calls in one Client share one session, as the page does: search after build_index,
patch_map after similarity, fewshot_apply and fewshot_download after fewshot.

ENDPOINTS is the one place to update when an endpoint gains or renames an input: the first test checks
it against the app's own API description (Client.view_api), and the calls name their inputs."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.shapes import CLASSES, caption, draw_shape, make_labelled_folder

SINGLE = "Single: a photo of a {}."
UPLOAD = "Upload images, a folder or a zip"
# api_name -> its inputs, in order (what docs/api.md documents; gr.State, gr.Request and gr.Progress are not
# inputs).
ENDPOINTS = {
    "/classify": ["paths", "label_text", "choice", "custom_text", "k", "classifier_files", "views", "combine",
                  "tda"],
    "/evaluate_prompts": [
        "table", "folder", "uploads", "labels", "desc_text", "desc_file", "use", "weighting", "single_row",
        "compare_on", "min_cos", "min_prob", "zpe_select", "mad_threshold", "views", "combine", "tda"
    ],
    "/build_index": ["choice", "typed", "files", "folder_files"],
    "/cancel_build": [],
    "/search": ["text", "image", "weight", "k", "limit"],
    "/more_like_this": ["k", "limit"],
    "/duplicates": ["threshold"],
    "/open_index": ["typed"],
    "/similarity": ["paths", "text", "index_folder", "n", "view_label", "current_image"],
    "/patch_map": ["name", "text", "method_name", "alpha", "scale_label"],
    "/gap": [
        "source", "files", "folder", "index_choice", "text_source", "labels", "templates", "csv_file",
        "method"
    ],
    "/fewshot": ["folder", "uploads", "templates", "methods", "shots"],
    "/fewshot_apply": ["method", "files", "index", "auto", "threshold"],
    "/fewshot_download": ["method"],
    "/load_model": ["model_name", "tag"],
    "/map": ["folder", "method", "by", "labels", "templates", "none_below", "classifier", "k",
             "cluster_method", "query", "vocabulary", "query_image"],
    "/map_colours": ["by", "labels", "templates", "none_below", "classifier", "k", "cluster_method", "query",
                     "vocabulary", "query_image"],
    "/map_lists": ["templates"],
    "/probe": ["kind", "folder", "uploads", "object_name", "attributes", "objects", "binding", "classes",
               "synonyms", "wordnet", "extra", "tree", "templates"],
    "/compare": ["models", "folder", "uploads", "index", "labels", "templates"],   # hosted: no folder
    "/cancel_compare": [],
    "/compare_indexes": ["index_a", "index_b", "queries", "k"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """A red circle to classify, and a zip of 4 labelled classes x 6 images (folders name the labels)."""
    base = tmp_path_factory.mktemp("api-client")
    picture = base / "red_circle.png"
    draw_shape("red", "circle", size=64, rng=5).save(picture)
    make_labelled_folder(base / "shapes", CLASSES[:4], 6, size=48, seed=3)
    archive = base / "shapes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((base / "shapes").rglob("*.png")):
            z.write(path, path.relative_to(base).as_posix())
    return {"picture": picture, "zip": archive, "downloads": base / "downloads"}


def client(app_url: str, data: dict) -> Client:
    """A fresh session (gradio_client keeps one session per Client)."""
    return Client(app_url, verbose=False, analytics_enabled=False, download_files=str(data["downloads"]))


def test_every_documented_endpoint_exists_with_its_inputs(app_url, data):
    named = client(app_url, data).view_api(return_format="dict", print_info=False)["named_endpoints"]
    found = {
        name: [p["parameter_name"] for p in named[name]["parameters"]]
        for name in ENDPOINTS if name in named
    }
    assert found == ENDPOINTS


def test_classify(app_url, data):
    labels = ", ".join(caption(*c) for c in CLASSES[:8])
    api = client(app_url, data)
    picture = [handle_file(str(data["picture"]))]
    summary, gallery, bars, heatmap = api.predict(paths=picture, label_text=labels, choice=SINGLE, k=3,
                                                  classifier_files=None, api_name="/classify")
    assert re.search(r'class="zs-top">a red circle<', summary), summary
    assert bars["type"] == "plotly"
    # the same session again, only k changed: the page would be sent the bars alone (its gallery is on
    # screen), but an API call has no page: it gets every output in full
    again = api.predict(paths=picture, label_text=labels, choice=SINGLE, k=2, classifier_files=None,
                        api_name="/classify")
    assert again[1]["value"] and again[1]["value"][0]["caption"] == gallery["value"][0]["caption"]


def test_build_index_then_search_duplicates_and_more_like_this(app_url, data):
    api = client(app_url, data)
    report, summary, gallery, table = api.predict(choice=UPLOAD, typed="",
                                                  files=[handle_file(str(data["zip"]))], folder_files=None,
                                                  api_name="/build_index")
    assert "<b>24</b> image(s) searchable" in report, report
    summary, gallery, table = api.predict(text="a red square", image=None, k=3, api_name="/search")
    first = re.search(r'class="sr-name">([^<]+)<', table).group(1)
    assert first.startswith("shapes/a_red_square/"), table
    assert len(gallery["value"]) == 3
    # the same query again: the page would be sent the summary alone, an API call gets every output
    again = api.predict(text="a red square", image=None, k=3, api_name="/search")
    assert len(again[1]["value"]) == 3 and again[2] == table
    summary, gallery, table = api.predict(text="", image=handle_file(str(data["picture"])), k=3,
                                          api_name="/search")
    assert re.search(r'class="sr-name">shapes/a_red_circle/', table), table
    groups = api.predict(threshold=0.9, api_name="/duplicates")
    assert "group(s) of near-duplicates" in groups
    # "More like this" follows a result opened on the page (a click): without one it says so.
    summary, gallery, table = api.predict(k=3, limit=0.0, api_name="/more_like_this")
    assert "Open a result first" in summary


def test_similarity_then_patch_map(app_url, data):
    api = client(app_url, data)
    texts = "\n".join(caption(*c) for c in CLASSES[:4])
    status, image_choice, figure, note, view = api.predict(paths=[handle_file(str(data["picture"]))],
                                                           text=texts, index_folder="(none)", n=50,
                                                           view_label="Cosine", current_image=None,
                                                           api_name="/similarity")
    assert "1 image(s) × 4 text(s)" in status and figure["type"] == "plotly"
    assert image_choice["value"] == "red_circle.png"
    info, shown = api.predict(name="red_circle.png", text="a red circle", method_name="tokens", alpha=0.5,
                              scale_label="relative to the map's mean", api_name="/patch_map")
    assert shown["visible"] and Path(shown["value"]).is_file()


def test_gap(app_url, data):
    out = client(app_url, data).predict(
        source="Upload images or a zip", files=[handle_file(str(data["zip"]))], folder="", index_choice=None,
        text_source="Labels + templates", labels="", templates=SINGLE, csv_file=None, method="PCA (instant)",
        api_name="/gap")
    measures, readout = out[0], out[6]
    matched, unmatched = map(
        float,
        re.search(r"Matched pairs average ([\d.]+).*?unmatched pairs \(([\d.]+)\)", measures).groups())
    assert matched > unmatched
    assert float(re.search(r"gap-shift-length'>([\d.]+)<", readout).group(1)) > 0


def test_fewshot_then_apply_and_download(app_url, data):
    api = client(app_url, data)
    out = api.predict(folder="", uploads=[handle_file(str(data["zip"]))], templates=SINGLE,
                      methods=["prototype"], shots="All", api_name="/fewshot")
    summary, table, method = out[0], out[1], out[3]
    assert "<b>4</b> classes" in summary and "prototype" in table and method["value"] == "prototype"
    # the same session, the same examples and a shot count (the page would be sent only what changed):
    # an API call gets every output, the shots curve included
    again = api.predict(folder="", uploads=[handle_file(str(data["zip"]))], templates=SINGLE,
                        methods=["prototype"], shots="2", api_name="/fewshot")
    assert "2 per class" in again[0] and "prototype" in again[1] and again[2]["value"] is not None
    out = api.predict(method="prototype", files=[handle_file(str(data["picture"]))], index="(none)",
                      auto=True, threshold=0.5, api_name="/fewshot_apply")
    assert "a red circle 1" in out[0], out[0]
    download, note = api.predict(method="prototype", api_name="/fewshot_download")
    assert zipfile.is_zipfile(download["value"])


def test_evaluate_prompts(app_url, data):
    out = client(app_url, data).predict(folder="", uploads=[handle_file(str(data["zip"]))], labels="",
                                        desc_text="", desc_file=None, api_name="/evaluate_prompts")
    top1 = float(re.search(r'id="pl-top1"[^>]*>([\d.]+)%', out[0]).group(1))
    assert top1 >= 75, out[0]


def test_load_model(app_url, data, shapes_model_dir):
    status = client(app_url, data).predict(model_name=f"local-dir:{shapes_model_dir}", tag="",
                                           api_name="/load_model")
    assert status.startswith("**Model:** Loaded local-dir:")


def test_build_index_then_map_recolour_and_lists(app_url, data):
    """The Map tab's endpoints: a PCA map of the session's index, coloured by zero-shot labels, the
    colours again for other labels (a patch: the points' colours in the index's order), the lists."""
    import json

    import plotly.io

    api = client(app_url, data)
    api.predict(choice=UPLOAD, typed="", files=[handle_file(str(data["zip"]))], folder_files=None,
                api_name="/build_index")
    labels = ", ".join(caption(*c) for c in CLASSES[:4])
    out = api.predict(folder=None, method="pca", by="zeroshot", labels=labels, templates=SINGLE,
                      classifier=None, query_image=None, api_name="/map")
    figure = plotly.io.from_json(out[0]["plot"])
    points = next(t for t in figure.data if t.meta == "map-points")
    assert len(points.text) == 24 and "PCA map of 24 images" in out[1]
    legend = [t.name for t in figure.data if t.meta == "map-legend"]
    assert [n.rsplit(" (", 1)[0] for n in legend] == [caption(*c) for c in CLASSES[:4]]
    assert all(n.endswith("(6)") for n in legend), legend               # each label its folder's six
    patch, note = api.predict(by="query", templates=SINGLE, classifier=None, query="a red circle",
                              query_image=None, api_name="/map_colours")[:2]
    colours = json.loads(patch)["marker"]["color"]
    best = max(range(24), key=colours.__getitem__)
    assert points.text[best].startswith(f"shapes/{CLASSES[0][0]}_{CLASSES[0][1]}") or \
        points.text[best].startswith("shapes/a_red_circle/"), points.text[best]
    assert "cosine with the query" in note
    lists = api.predict(templates=SINGLE, api_name="/map_lists")   # the HTML (the state is not sent)
    assert "Outliers" in lists and "data-map-point" in lists


def test_probe_binding_and_synonym_swap(app_url, data):
    """Two probes on the labelled zip: the attribute x object grid reads each folder's colour and shape,
    and the synonym swap scores the folder names against a typed worse name."""
    api = client(app_url, data)
    zipped = [handle_file(str(data["zip"]))]
    summary, plot, table = api.predict(kind="Attributes x objects", folder="", uploads=zipped,
                                       attributes="red, green", objects="circle, square", api_name="/probe")
    assert "Attributes x objects" in summary and plot["value"]["type"] == "plotly", summary
    assert table.count("<tr") >= 24, table  # one row per image
    first = caption(*CLASSES[0])
    summary, plot, table = api.predict(kind="Synonym swap", folder="", uploads=zipped, wordnet=False,
                                       synonyms=f"{first}: zqxv", templates=SINGLE, api_name="/probe")
    assert "zqxv" in table and first in table, table


def test_compare_two_models(app_url, data, shapes_model_dir, noisy_model_dir):
    """/compare as docs/api.md shows it: the shapes model and its noisy variant on the labelled zip."""
    api = client(app_url, data)
    models = f"local-dir:{shapes_model_dir}\nlocal-dir:{noisy_model_dir}"
    summary, plot, pairs, per_image, gallery = api.predict(
        models=models, folder="", uploads=[handle_file(str(data["zip"]))], index="(none)", labels="",
        templates=SINGLE, api_name="/compare")
    assert "2 models on 24 images" in summary and 'id="cmp-summary-table"' in summary, summary[:500]
    assert plot["value"]["type"] == "plotly" and "shapes_clip" in per_image   # an update: shown
    assert all("shapes_clip" in item["caption"] for item in gallery["value"]), gallery
    api.predict(api_name="/cancel_compare")   # nothing running: a no-op
