"""The Probes tab's handler on the shapes model: each of the five probes gives the page the report its core
function gives for the same images (the view carries it), drawn with its method, source and figure; the
kind's typed text is read before any image, and an over-limit list is refused with its setting named."""
from __future__ import annotations

import html
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from explorer.app.ui import probes_tab
from explorer.app.ui.probes_tab import ProbeInputs, run_probe
from explorer.science import binding, counting, loki, synonyms
from explorer.science.prompts import builtin_template_set
from tests import shapes
from tests.helpers import hosted_context, local_context

TWO = [("red", "circle"), ("blue", "square")]


def draw_count(k: int, size: int = 64, seed: int = 0) -> Image.Image:
    """`k` red circles on a dark background, each in its own cell of a 2 x 2 grid (k <= 4)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(10, 60, 3)))
    draw, cell = ImageDraw.Draw(image), size // 2
    for i in range(k):
        x, y = (i % 2) * cell, (i // 2) * cell
        draw.ellipse((x + 4, y + 4, x + cell - 4, y + cell - 4), fill=(225, 25, 25))
    return image


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("probes")
    for k in (1, 2, 3):
        (root / "counts" / str(k)).mkdir(parents=True)
        for i in range(2):
            draw_count(k, seed=10 * k + i).save(root / "counts" / str(k) / f"{i}.png")
    shapes.make_labelled_folder(root / "named", TWO, 3, size=48, seed=2)   # a_red_circle/, a_blue_square/
    rng = np.random.default_rng(4)
    for left, right in ((TWO[0], TWO[1]), (("blue", "circle"), ("red", "square"))):
        folder = root / "pairs" / f"{left[0]}_{left[1]}_and_{right[0]}_{right[1]}"
        folder.mkdir(parents=True)
        for i in range(2):
            shapes.draw_pair(left, right, size=64, rng=rng)[0].save(folder / f"{i}.png")
    return {"root": root, **{k: str(root / k) for k in ("counts", "named", "pairs")}}


@pytest.fixture(scope="module")
def ctx(shapes_model, folders, tmp_path_factory):
    return local_context(shapes_model, tmp_path_factory.mktemp("probes-ctx"), folders["root"])


def same(view, direct) -> None:
    """The page's report is the core's, number for number; the page names its method and source."""
    assert view.report is not None, view.summary
    mine, theirs = view.report.as_dict(), direct.as_dict()
    assert json.dumps(mine, sort_keys=True, default=str) == json.dumps(theirs, sort_keys=True, default=str)
    assert "Method" in view.summary and theirs["source"] in html.unescape(view.summary)


CASES = {
    "Counting": ("counts", ProbeInputs(object_name="red circle")),
    "Attributes x objects": ("named", ProbeInputs(attributes="red, blue, green", objects="circle, square")),
    "Binding": ("pairs", ProbeInputs()),
    "Synonym swap": ("named", ProbeInputs(synonyms="a red circle: crimson ball\na blue square: azure box",
                                          wordnet=False)),
    "Label geometry (Loki)": ("named", ProbeInputs(extra="green triangle, purple circle")),
}


def direct(kind: str, model, images, given: ProbeInputs):
    """The core function the tab calls, called here by the test itself."""
    single = builtin_template_set("single")
    if kind == "Counting":
        return counting.counting_probe(model, images, given.object_name)
    if kind == "Attributes x objects":
        return binding.attribute_grid(model, images, ["red", "blue", "green"], ["circle", "square"])
    if kind == "Binding":
        return binding.binding_test(model, images, None)
    if kind == "Synonym swap":
        typed = synonyms.parse_typed_synonyms(given.synonyms)
        return synonyms.synonym_swap(model, images, None, typed, single, wordnet=False)
    return loki.loki_probe(model, images, [], ["green triangle", "purple circle"], single)


@pytest.mark.parametrize("kind", list(CASES))
def test_each_probe_shows_the_cores_report_with_its_figure(ctx, shapes_model, folders, kind):
    where, given = CASES[kind]
    view = run_probe(ctx, kind, folders[where], None, given)
    images = ctx.embed_choice(folder=folders[where])   # the same images, from the cache
    same(view, direct(kind, shapes_model, images, given))
    assert view.plot is not None and view.details.count("<tr>") >= 2
    assert "explorer-error" not in view.summary


def test_counting_on_count_folders_is_labelled_and_says_chance(ctx, folders):
    view = run_probe(ctx, "Counting", folders["counts"], None, ProbeInputs(object_name="red circle"))
    assert view.report.true is not None and sorted(set(view.report.true.tolist())) == [1, 2, 3]
    assert "chance (10.0%)" in view.summary and "majority baseline" in view.summary


def test_the_kinds_text_is_read_before_any_image(ctx, folders, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("images embedded before the typed text was read")

    monkeypatch.setattr(type(ctx), "embed_choice", never)
    for kind, given in (("Counting", ProbeInputs()), ("Attributes x objects", ProbeInputs(attributes="red")),
                        ("Binding", ProbeInputs(binding="red and blue")), ("Nope", ProbeInputs())):
        view = run_probe(ctx, kind, folders["named"], None, given)
        assert "explorer-error" in view.summary and view.report is None, (kind, view.summary)


def test_hosted_over_limit_lists_are_refused_naming_the_setting(shapes_model, tmp_path):
    hosted = hosted_context(tmp_path, shapes_model).scoped("visitor")
    words = ", ".join(f"word{i}" for i in range(100))          # 100 x 100 = 10,000 prompts > 4,096
    view = run_probe(hosted, "Attributes x objects", "", None, ProbeInputs(attributes=words, objects=words))
    assert "explorer-error" in view.summary and "EXPLORER_MAX_PROMPTS" in view.summary, view.summary
    view = run_probe(hosted, "Counting", "", None, ProbeInputs(object_name="x" * 500))
    assert "explorer-error" in view.summary and "EXPLORER_MAX_TEXT_CHARS" in view.summary, view.summary


def test_the_kinds_show_their_own_inputs():
    shown = [u["visible"] for u in probes_tab._visible("Label geometry (Loki)")]
    assert shown == [False, False, False, True, False, True, True]
