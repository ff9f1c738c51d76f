"""The interactions bench_interaction.py times. Each is a one-time set-up (inputs dropped and embedded
through the page, as a user does it) and a step(page, i, workdir) giving a Step: what to do before the
clock starts (`prepare`, e.g. a box filled up to its last character), the user's action (`act`: the
last key typed, a click, a drag, a drop) and a JS predicate true once its result is on screen.
Consecutive steps differ, so each one's result can be told from the one before. Gradio's text box
sends its input event on key presses, so a typed edit is timed from its last key."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.shapes import CLASSES, draw_shape, make_labelled_folder

LABELS = ["red circle", "blue square", "green triangle"]
FOURTH = ["yellow cross", "purple circle", "orange square", "green cross", "blue triangle", "red square"]
QUERIES = ["a red circle", "a blue square", "a green triangle", "a yellow cross", "a purple square"]


def js(value) -> str:
    return json.dumps(value)


def shows(selector: str, text: str) -> str:
    """JS predicate: the element's text includes `text`."""
    return f"() => (document.querySelector({js(selector)})?.textContent || '').includes({js(text)})"


def all_of(*predicates: str) -> str:
    return "() => " + " && ".join(f"({p})()" for p in predicates)


@dataclass
class Step:
    act: Callable             # page -> None: the user's action; the clock starts at its first event
    done: str                 # JS predicate: the result is on screen
    prepare: Callable | None = None  # page -> None, before the clock starts


def typed(selector: str, text: str, done: str) -> Step:
    """`text` typed into a box: all but its last character already there, the last one a key press."""
    return Step(lambda page: page.keyboard.press(text[-1]), done,
                lambda page: page.locator(selector).first.fill(text[:-1]))


def entered(selector: str, value, done: str) -> Step:
    """A value put in a box (a slider's number, a dropdown's text) and Enter pressed."""
    return Step(lambda page: page.keyboard.press("Enter"), done,
                lambda page: page.locator(selector).first.fill(str(value)))


def picked(container: str, label: str, done: str) -> Step:
    """A radio option clicked."""
    return Step(lambda page: page.locator(container).get_by_label(label, exact=True).check(), done)


def chosen(elem_id: str, option: str, done: str) -> Step:
    """A dropdown opened (not timed) and an option clicked."""
    return Step(lambda page: page.get_by_role("option", name=option, exact=True).click(), done,
                lambda page: page.locator(f"#{elem_id} input").first.click())


def dragged(selector: str, value, done: str) -> Step:
    """A slider moved (Playwright's fill of its range input: one input event, as a drag's last move)."""
    return Step(lambda page: page.locator(selector).fill(str(value)), done)


@dataclass
class Interaction:
    setup: Callable  # (page, workdir) -> None, once before the timed steps
    step: Callable   # (page, i, workdir) -> Step
    button: str | None = None  # the button that runs it (--press: the edit made, then the button timed)

    def pressed(self, page, i, workdir) -> Step:
        """The step as a page without live edits needs it: the whole edit made first (not timed), then
        the button pressed (the clock starts at the press)."""
        step = self.step(page, i, workdir)
        if self.button is None:
            return step

        def prepare(page):
            if step.prepare is not None:
                step.prepare(page)
            step.act(page)
        return Step(lambda page: page.click(self.button), step.done, prepare)


_ready: set[str] = set()


def once(tab: str) -> Callable:
    """A set-up run once per bench; its tab is opened every time (interactions of several tabs may
    alternate)."""
    def decorate(fn: Callable) -> Callable:
        def setup(page, workdir):
            open_tab(page, tab)
            if fn.__name__ not in _ready:
                fn(page, workdir)
                _ready.add(fn.__name__)
        return setup
    return decorate


def open_tab(page, title: str) -> None:
    page.get_by_role("tab", name=title, exact=True).click()  # exact: "Map" is also in "Heatmaps"


def shape_files(workdir: Path, n: int, name: str = "drop") -> list[str]:
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    kinds = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross")]
    paths = []
    for i in range(n):
        path = folder / f"{kinds[i % 4][0]}_{kinds[i % 4][1]}_{i}.png"
        draw_shape(*kinds[i % len(kinds)], 96, i).save(path)
        paths.append(str(path))
    return paths


# --- the floor: a button whose handler returns a counter into a text box ---------------------------------

def _noop(page, i, workdir):
    before = page.input_value("#bench-noop-out textarea")
    return Step(lambda p: p.click("#bench-noop"), (
        "() => { const v = document.querySelector('#bench-noop-out textarea').value; "
        f"return v !== '' && v !== {js(before)}; }}"))


def _noop_typed(page, i, workdir):
    text = f"no-op {i + 2}"
    return typed("#bench-noop-typed textarea", text, f"() => document.querySelector("
                 f"'#bench-noop-echo textarea').value === {js(text)}")


# --- Zero-shot classification: three images dropped and classified once --------------------------------

@once("Zero-shot classification")
def classify_ready(page, workdir):
    page.set_input_files("#zs-images input[type=file]", shape_files(workdir, 3))
    page.wait_for_function(shows("#zs-images", "_2 .png"), timeout=60_000)  # uploaded
    page.locator("#zs-labels textarea").press_sequentially(", ".join(LABELS + ["yellow cross"]))
    page.click("#zs-run")  # a page without live edits needs it (with them, it runs once more)
    page.wait_for_function(shows("#zs-heatmap", "yellow cross"), timeout=60_000)


def _classify_label(page, i, workdir):
    label = f"{FOURTH[(i + 1) % len(FOURTH)]} {i + 2}"  # never the one on screen
    return typed("#zs-labels textarea", ", ".join(LABELS + [label]),
                 all_of(shows("#zs-heatmap", label), shows("#zs-bars", label)))


def _classify_templates(page, i, workdir):
    name, count = (("7 templates (OpenAI subset)", "7 template(s)") if (i + 1) % 2 == 0
                   else ("Single: a photo of a {}.", "1 template(s)"))
    return picked("#zs-templates", name, shows("#zs-rule", count))


def _classify_topk(page, i, workdir):
    k = 2 + i % 2
    return entered("#zs-topk input[type=number]", k,  # every image's bar chart drawn with k bars
                   "() => { const d = document.querySelector('#zs-bars .js-plotly-plot')?.data; "
                   f"return !!d && d.length > 0 && d.every((t) => t.y.length === {k}); }}")


def _classify_first(page, i, workdir):
    """Three new images dropped beside typed labels: decoded, encoded and classified (the first classify)."""
    files = []
    for n in range(3):
        colour, shape = CLASSES[(7 * i + n) % len(CLASSES)]
        path = workdir / f"first_{i + 2}_{n}.png"
        draw_shape(colour, shape, 96, 1000 + 3 * i + n).save(path)
        files.append(str(path))
    return Step(lambda page: page.set_input_files("#zs-images input[type=file]", files),
                shows("#zs-results", f"first_{i + 2}_2.png"))


# --- Prompt lab: a labelled folder (4 classes x 3) evaluated once ------------------------------------------

@once("Prompt lab")
def lab_ready(page, workdir):
    root = workdir / "labelled"
    make_labelled_folder(root, CLASSES[:4], 3, size=48, seed=6)
    page.locator("#pl-folder textarea, #pl-folder input").first.fill(str(root))
    page.click("#pl-run")
    page.wait_for_selector("#pl-top1", timeout=120_000)


def _lab_ensembling(page, i, workdir):
    label, words = (("ZPE (weights from the images)", "ensembled by ZPE") if (i + 1) % 2 == 0
                    else ("Equal average", "ensembled by equal average"))
    return picked("#pl-weighting", label, shows("#pl-summary", words))


def _lab_threshold(page, i, workdir):
    value = (0.21, 0.26)[i % 2]
    return entered("#pl-min-cos input[type=number]", value, shows("#pl-none-count", f"< {value:.2f}"))


# --- Search: a folder of 300 images indexed once -----------------------------------------------------------

@once("Search")
def search_ready(page, workdir):
    folder = workdir / "photos"
    folder.mkdir()
    for i in range(300):
        colour, shape = CLASSES[i % len(CLASSES)]
        draw_shape(colour, shape, 48, i).save(folder / f"{colour}_{shape}_{i}.png")
    page.locator("#search-folder textarea, #search-folder input").first.fill(str(folder))
    page.click("#search-build")
    page.wait_for_selector("#search-report .search-counts", timeout=300_000)


def _search_query(page, i, workdir):
    query = f"{QUERIES[i % len(QUERIES)]} {i + 2}"
    return typed("#search-text textarea, #search-text input", query,
                 shows("#search-summary", f'Search by text "{query}"'))


# --- Map: the Search tab's 300 images on a PCA map, coloured by three zero-shot labels ----------------------

LEGEND = "#map-plot .js-plotly-plot .legend"  # the map's legend, redrawn by assets/map.js's Plotly.react


@once("Map")
def map_ready(page, workdir):
    search_ready(page, workdir)  # its folder indexed (once), in the Search tab
    open_tab(page, "Map")
    page.locator("#map-method").get_by_label("PCA (instant)").check()  # an edit: draws the last index built
    page.wait_for_function(shows("#map-note", "PCA map of 300 images"), timeout=120_000)
    page.locator("#map-colour-by").get_by_label("Zero-shot labels").check()
    page.locator("#map-labels textarea").press_sequentially(", ".join(LABELS))  # typed: fill sends no edit
    page.wait_for_function(shows(LEGEND, LABELS[-1]), timeout=60_000)


def _map_label(page, i, workdir):
    """A fourth label typed: the map's points recoloured in place (only the colours sent, map.js's
    Plotly.react on the plot on screen), timed to its legend naming the new label."""
    label = f"{FOURTH[(i + 1) % len(FOURTH)]} {i + 2}"
    return typed("#map-labels textarea", ", ".join(LABELS + [label]), shows(LEGEND, label))


# --- Heatmaps: three images x three texts, then a patch map of the first image --------------------------

@once("Heatmaps")
def heatmaps_ready(page, workdir):
    page.set_input_files("#hm-images input[type=file]", shape_files(workdir, 3, "heat"))
    page.fill("#hm-texts textarea", "\n".join(QUERIES[:3]))
    page.click("#hm-run")
    page.wait_for_selector("#hm-plot .js-plotly-plot", timeout=60_000)
    page.click("#hm-map-run")
    page.wait_for_selector("#hm-overlay img", timeout=60_000)


def _heatmap_label(page, i, workdir):
    text = f"{QUERIES[(i + 1) % len(QUERIES)]} {i + 2}"
    return entered("#hm-map-text input", text, shows("#hm-map-numbers", text))


# --- Modality gap: three images and their labels, computed once ------------------------------------------

@once("Modality gap")
def gap_ready(page, workdir):
    page.set_input_files("#gap-images input[type=file]", shape_files(workdir, 4, "gap"))
    page.fill("#gap-labels textarea", "\n".join(QUERIES[:4]))
    page.click("#gap-run")
    page.wait_for_selector("#gap-measures table", timeout=120_000)


def _gap_shift(page, i, workdir):
    value = (0.6, 0.4)[i % 2]
    return dragged("#gap-shift input[type=range]", value, shows("#gap-readout", f"λ = {value:.2f}"))


# --- Teach by example: a labelled folder (4 classes x 10) taught once ---------------------------------------

@once("Teach by example")
def teach_ready(page, workdir):
    root = workdir / "examples"
    make_labelled_folder(root, CLASSES[:4], 10, size=64, seed=1)
    page.fill("#teach-folder textarea", str(root))
    page.click("#teach-run")
    page.wait_for_selector("#teach-accuracy", timeout=180_000)


def _teach_shots(page, i, workdir):
    shots = ("2", "4")[i % 2]
    return chosen("teach-shots", shots, shows("#teach-summary", f"{shots} per class"))


INTERACTIONS = {
    "noop": Interaction(lambda page, workdir: None, _noop),
    "noop_typed": Interaction(lambda page, workdir: None, _noop_typed),
    "classify_label": Interaction(classify_ready, _classify_label, "#zs-run"),
    "classify_templates": Interaction(classify_ready, _classify_templates, "#zs-run"),
    "classify_topk": Interaction(classify_ready, _classify_topk, "#zs-run"),
    "classify_first": Interaction(classify_ready, _classify_first, "#zs-run"),
    "lab_ensembling": Interaction(lab_ready, _lab_ensembling, "#pl-run"),
    "lab_threshold": Interaction(lab_ready, _lab_threshold),
    "search_query": Interaction(search_ready, _search_query, "#search-run"),
    "heatmap_label": Interaction(heatmaps_ready, _heatmap_label, "#hm-map-run"),
    "gap_shift": Interaction(gap_ready, _gap_shift),
    "teach_shots": Interaction(teach_ready, _teach_shots, "#teach-run"),
    "map_label": Interaction(map_ready, _map_label),  # live only: the map has no recolour button
}
QUICK = ["noop", "classify_label", "gap_shift"]  # (noop_typed is always measured beside noop)
