"""Display integrity: rows and columns keyed by unique names (a folder-relative path, or 'name (2)'),
every cap announced with the count shown and the total, numbers on heatmap cells where they fit.

The case from the issue: twenty images from class folders that all hold 0.png, 1.png, ... must keep
twenty rows, each with its own values, in the core, in the figures and on the pages."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from explorer.app import plots
from explorer.inputs.sources import display_names
from tests.shapes import CLASSES, caption, make_labelled_folder

CHOSEN = CLASSES[::6]            # 4 classes: red circle, green triangle, ...
LABELS = ", ".join(f"{c} {s}" for c, s in CHOSEN)


@pytest.fixture(scope="module")
def twenty(tmp_path_factory) -> list[Path]:
    """data/a_red_circle/0.png ... 4.png, data/a_green_triangle/0.png ...: 20 files, 5 names."""
    root = tmp_path_factory.mktemp("dup") / "data"
    return [path for path, _ in make_labelled_folder(root, CHOSEN, 5, size=32, seed=9)]


@pytest.fixture
def ctx(shapes_model, tmp_path, tmp_path_factory):
    from tests.helpers import local_context
    return local_context(shapes_model, tmp_path, tmp_path_factory.getbasetemp())


def test_same_named_files_get_folder_relative_names_or_numbers(twenty):
    names = display_names(twenty)
    assert len(set(names)) == 20
    assert names[0] == "a_red_circle/0.png" and names[5] == "a_green_triangle/0.png"
    uploads = display_names(twenty, folders=False)  # an upload's folder is a server temp dir: numbers instead
    assert len(
        set(uploads)) == 20 and uploads[:6] == ["0.png", "1.png", "2.png", "3.png", "4.png", "0.png (2)"]
    # deeper trees: the shortest end of the path that tells the files apart
    deep = [Path("/x/cats/2023/0.jpg"), Path("/x/dogs/2023/0.jpg"), Path("/x/dogs/2023/1.jpg")]
    assert display_names(deep) == ["cats/2023/0.jpg", "dogs/2023/0.jpg", "1.jpg"]


def test_twenty_same_named_images_keep_twenty_rows_with_their_own_values(shapes_model, twenty):
    from explorer.science.prompts import load_template_set
    from explorer.science.zeroshot import classify_files
    from tests.helpers import encode_pil

    report = classify_files(shapes_model, twenty, [f"{c} {s}" for c, s in CHOSEN],
                            load_template_set("single"))
    assert len(report.names) == 20 and len(set(report.names)) == 20
    from PIL import Image
    direct = encode_pil(shapes_model, [Image.open(p).convert("RGB") for p in twenty])
    texts = shapes_model.encode_texts([f"a photo of a {c} {s}." for c, s in CHOSEN])
    np.testing.assert_allclose(report.predictions.cosines, direct @ texts.T, atol=2e-4)
    fig = plots.similarity_heatmap(report.names, report.predictions.labels, report.predictions.cosines,
                                   report.predictions.probabilities)
    heat = fig.data[0]
    assert len(set(heat.y)) == 20 and fig.layout.yaxis.type == "category"
    np.testing.assert_array_equal(np.asarray(heat.z), report.predictions.cosines)


def test_classify_page_keeps_rows_and_announces_the_bar_cap(ctx, twenty):
    from explorer.app.ui import classify_tab

    view = classify_tab.classify(ctx, [str(p) for p in twenty], LABELS, "Single: a photo of a {}.", "", 3)
    heat = view.heatmap.data[0]
    assert len(heat.y) == 20 and len(set(heat.y)) == 20
    np.testing.assert_array_equal(np.asarray(heat.z), view.report.predictions.probabilities)
    assert heat.texttemplate == "%{z:.0%}"                      # percentages on the cells
    # 12 bar panels for 20 images: said in the figure and in the summary, with both numbers
    assert len(view.bars.data) == plots.MAX_BAR_PANELS
    assert "showing 12 of 20 images" in view.bars.layout.title.text
    assert "showing 12 of 20 images as bar charts" in view.summary
    few = classify_tab.classify(ctx, [str(p) for p in twenty[:3]], LABELS, "Single: a photo of a {}.", "", 3)
    assert "showing" not in few.bars.layout.title.text and "zs-cap" not in few.summary


def test_heatmaps_page_announces_its_upload_cap(ctx, twenty):
    from explorer.app.ui import heatmaps_tab

    paths = ([str(p) for p in twenty] * 4)[:70]   # 70 uploads (repeats are encoded once)
    view = heatmaps_tab.compute_matrix(ctx, paths, "a red circle\na green triangle", None, 12, "Cosine")
    assert len(view.figure.data[0].y) == heatmaps_tab.MAX_IMAGES == 64
    assert len(set(view.figure.data[0].y)) == 64
    assert "showing 64 of 70 uploaded images" in view.summary
    small = heatmaps_tab.compute_matrix(ctx, [str(p) for p in twenty], "a red circle", None, 12, "Cosine")
    assert "showing" not in small.summary and len(set(small.figure.data[0].y)) == 20
    assert small.figure.data[0].texttemplate == "%{z:.2f}"


def test_shortened_axis_labels_never_merge_rows():
    long_a = "holiday_photos_from_the_red_team/summer_2023/beach/0.jpg"
    long_b = "holiday_photos_from_the_blue_team/summer_2023/beach/0.jpg"
    assert plots._short(long_a) == plots._short(long_b)        # what merged two rows into one
    labels = plots.axis_labels([long_a, long_b, "1", "01", "x", "x"])
    assert len(set(labels)) == 6 and labels[-2:] == ["x", "x (2)"]
    fig = plots.similarity_heatmap([long_a, long_b], ["a", "a"], np.eye(2), np.eye(2))
    assert len(set(fig.data[0].y)) == 2 and len(set(fig.data[0].x)) == 2
    assert fig.layout.xaxis.type == "category"


def test_cell_numbers_only_where_they_fit():
    assert plots.cell_text("cosine", 20, 20) == "%{z:.2f}"
    assert plots.cell_text("probability", 3, 4) == "%{z:.0%}"
    assert plots.cell_text("cosine", 21, 3) is None and plots.cell_text("cosine", 3, 21) is None
    z = np.zeros((25, 2))
    assert plots.similarity_heatmap([f"i{k}" for k in range(25)], ["a", "b"], z,
                                    z).data[0].texttemplate is None


def test_similarity_cli_keeps_same_named_images_apart(shapes_model_dir, twenty, capsys):
    from explorer.cli import main

    files = [str(p) for p in twenty[::5]]       # a_red_circle/0.png, a_green_triangle/0.png, ...
    code = main(["similarity", *files, "--text", caption(*CHOSEN[0]), "--text", caption(*CHOSEN[1]),
                 "--model", f"local-dir:{shapes_model_dir}", "--device", "cpu", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(set(out["images"])) == 4


def test_search_summary_says_the_results_are_the_top_k_of_the_index():
    from explorer.app.ui import search_html

    capped = search_html.summary("a red circle", 5, 24, 0.0, indexed=1000)
    assert "the top 24 of 1,000 indexed images" in capped
    assert "indexed images" not in search_html.summary("a red circle", 5, 24, 0.0, indexed=24)
