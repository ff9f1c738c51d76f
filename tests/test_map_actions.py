"""The Map tab's selection actions, called as plain functions (as the page calls them): export, search by
a selection in the Search tab, Teach classes made of selections, and the wiring onto the other tabs."""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import gradio as gr
import pytest

from explorer.app import selection
from explorer.app.ui import map_actions, search_tab, teach_tab
from explorer.inputs import gate
from explorer.inputs.roots import PathRefused
from tests.helpers import hosted_context, local_context
from tests.shapes import CLASSES, make_labelled_folder

SINGLE = "Single: a photo of a {}."
KINDS = ["a_red_circle", "a_blue_square", "a_yellow_cross"]
PER_CLASS = 6


@pytest.fixture(scope="module")
def mapped(tmp_path_factory, shapes_model):
    """Three shape classes of PER_CLASS images, indexed through the app context (as the Search tab does)."""
    base = tmp_path_factory.mktemp("map-actions")
    picked = [c for c in CLASSES if f"a_{c[0]}_{c[1]}" in KINDS]
    make_labelled_folder(base / "photos", picked, PER_CLASS, size=48, seed=3)
    ctx = local_context(shapes_model, base / "work", base)
    built = ctx.index_choice(folder=str(base / "photos"), workers=0)
    return ctx, str(built.index.folder), base / "photos"


def names_of(kind: str) -> list[str]:
    return [f"{kind}/{i}.png" for i in range(PER_CLASS)]


def test_a_selection_is_checked_against_the_index(mapped):
    ctx, folder, _ = mapped
    chosen = selection.checked(ctx, folder, names_of(KINDS[0]) + [names_of(KINDS[0])[0]])
    assert chosen.names == names_of(KINDS[0])  # each once, in the order picked
    for made_up in ("../../etc/passwd", "/etc/passwd", "a_red_circle/99.png", "a_red_circle", "x" * 5000,
                    "a_red_circle/0.png\x00"):
        with pytest.raises(gate.Refused, match="not an image of this index"):
            selection.checked(ctx, folder, ["a_red_circle/1.png", made_up])
    with pytest.raises(gate.Refused, match="more than the 18 images of this index"):
        selection.checked(ctx, folder, [f"a_red_circle/{i}.png" for i in range(10_000)])
    for not_a_list in ("a_red_circle/1.png", [1, 2], {"a": 1}):
        with pytest.raises(gate.Refused, match="not a list"):
            selection.checked(ctx, folder, not_a_list)
    with pytest.raises(ValueError, match="nothing is selected"):
        selection.checked(ctx, folder, [])
    with pytest.raises(PathRefused, match="not one of yours"):
        selection.checked(ctx, str(Path(folder).parent / "elsewhere"), names_of(KINDS[0]))
    for no_index in (None, ""):
        with pytest.raises(ValueError, match="Pick an index"):
            selection.checked(ctx, no_index, names_of(KINDS[0]))


def test_export_writes_a_csv_of_the_selected_paths_locally(mapped):
    ctx, folder, photos = mapped
    path = map_actions.export_selection(ctx, folder, names_of(KINDS[1])[:3])
    with open(path, encoding="utf-8") as fp:
        rows = list(csv.reader(fp))
    assert rows[0] == ["name", "path"]
    assert rows[1:] == [[n, str(photos.resolve() / n)] for n in names_of(KINDS[1])[:3]]
    with pytest.raises(gate.Refused):
        map_actions.export_selection(ctx, folder, ["../../etc/passwd"])


def test_searching_by_a_selection_finds_its_kind_and_makes_its_index_the_searched_one(mapped):
    ctx, folder, _ = mapped
    view = search_tab.search_selection(ctx, folder, names_of(KINDS[2])[:2], 4, -1.0)
    assert view.state.index == folder and "2 images selected on the map" in view.summary
    assert [h.path.split("/")[0] for h in view.state.hits] == [KINDS[2]] * 4
    assert len(view.gallery) == 4
    one = search_tab.search_selection(ctx, folder, [names_of(KINDS[0])[0]], 1, -1.0)
    assert one.state.hits[0].path == names_of(KINDS[0])[0] and one.state.hits[0].score > 0.999
    with pytest.raises(gate.Refused):
        search_tab.search_selection(ctx, folder, ["nope.png"], 4, -1.0)


def test_class_names_are_checked_before_they_name_a_folder(mapped):
    ctx, folder, _ = mapped
    for bad in ("../x", "a/b", "..", ".hidden", "a\\b", "x" * 65, "tab\there?", "<b>"):
        with pytest.raises(ValueError):
            map_actions.add_class(ctx, [], bad, folder, names_of(KINDS[0]))
    with pytest.raises(ValueError, match="Name the class"):
        map_actions.add_class(ctx, [], "  ", folder, names_of(KINDS[0]))
    assert selection.class_name("  red   circles ") == "red circles"


def test_selections_added_as_classes_are_taught(mapped):
    """Three selections make three classes (one added to twice); Teach's own handler runs on the zip put
    in its upload box and tells the classes apart."""
    ctx, folder, _ = mapped
    classes, shown = map_actions.add_class(ctx, None, "round red", folder, names_of(KINDS[0])[:3])
    classes, _ = map_actions.add_class(ctx, classes, "Round_Red", folder, names_of(KINDS[0])[2:])
    with pytest.raises(ValueError, match="at least two"):
        map_actions.teach_zip(ctx, classes)
    for name, kind in (("blue square", KINDS[1]), ("yellow-cross", KINDS[2])):
        classes, shown = map_actions.add_class(ctx, classes, name, folder, names_of(kind))
    assert [(c.name, len(c.names)) for c in classes] == [("round red", 6), ("blue square", 6),
                                                         ("yellow-cross", 6)]
    assert "round red" in shown and "6 image(s)" in shown
    path = map_actions.teach_zip(ctx, classes)
    with zipfile.ZipFile(path) as archive:
        listed = sorted(archive.namelist())
    assert len(listed) == 18 and "classes/round_red/a_red_circle__0.png" in listed
    view = teach_tab.run_teach(ctx, "", [path], SINGLE, ["prototype"], "All")
    assert view.state is not None, view.summary
    result = view.state.result
    assert result.class_names == ["blue square", "round red", "yellow-cross"]
    assert result.report.methods["prototype"].top1 == 1.0


def test_the_actions_are_wired_onto_the_search_and_teach_tabs(mapped):
    """The Map tab's buttons run the Search and Teach tabs' own handlers (chained after the check that
    switches tab), with the map's index and selection as inputs."""
    ctx, folder, _ = mapped
    with gr.Blocks() as app:
        with gr.Tabs() as tabs:
            with gr.Tab("Search", id="search"):
                search = search_tab.build(ctx)
            with gr.Tab("Teach", id="teach"):
                teach = teach_tab.build(ctx)
            with gr.Tab("Map", id="map"):
                index_folder, picked = gr.Dropdown([folder], value=folder), gr.State([])
                place = gr.Column(elem_id="map-actions")
        ui = map_actions.build(ctx, index_folder, picked, search, teach, tabs, place=place)

    def chained(button):
        number, first = next((i, f) for i, f in app.fns.items() if (button._id, "click") in f.targets)
        return first, next(f for f in app.fns.values() if f.trigger_after == number)

    first, then = chained(ui.query)
    assert tabs in first.outputs and then.fn is search.by_selection and then.trigger_only_on_success
    assert [c._id for c in then.inputs[:2]] == [index_folder._id, picked._id]
    assert search.gallery in then.outputs and search.state in then.outputs
    first, then = chained(ui.teach_run)
    assert teach.uploads in first.outputs and then.fn is teach.run_handler
    assert [c._id for c in then.inputs] == [c._id for c in teach.run_inputs]
    assert place.children and ui.export in _descendants(place)
    # A refused selection stops the chain there (gr.Error: the search and Teach runs only follow success)
    query, teach_first = chained(ui.query)[0].fn, chained(ui.teach_run)[0].fn
    with pytest.raises(gr.Error, match="not an image of this index"):
        query(folder, ["../../etc/passwd"], None)
    switched, _ = query(folder, names_of(KINDS[0]), None)
    assert switched.selected == "search"
    with pytest.raises(gr.Error, match="at least two classes"):
        teach_first([], None)


def _descendants(block) -> list:
    found = []
    for child in getattr(block, "children", []):
        found += [child, *_descendants(child)]
    return found


def test_hosted_export_is_a_zip_of_the_visitors_own_images(tmp_path, shapes_model, mapped):
    _, _, photos = mapped
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for kind in KINDS[:2]:
            for i in range(3):
                z.write(photos / kind / f"{i}.png", f"mine/{kind}/{i}.png")
    ctx = hosted_context(tmp_path, shapes_model)
    mine, other = ctx.scoped("session-a"), ctx.scoped("session-b")
    index = mine.index_choice(uploads=[str(archive)], workers=0).index
    folder, names = str(index.folder), sorted(n for n in index.all_embeddings()[0] if KINDS[1] in n)
    assert len(names) == 3 and not Path(names[0]).is_absolute()
    path = Path(map_actions.export_selection(mine, folder, names))
    assert mine.workspace.folder in path.parents  # in the session's own workspace, counted in its quota
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == names  # names the visitor gave, never a server path
        assert z.read(names[0]) == (photos / KINDS[1] / "0.png").read_bytes()
    refusals = set()
    for someone_elses in (folder, folder + "-missing", "/etc", str(tmp_path)):  # said alike, exists or not
        with pytest.raises(PathRefused) as refused:
            map_actions.export_selection(other, someone_elses, names)
        refusals.add(str(refused.value))
    assert refusals == {"that index is not one of yours; build it in the Search tab"}


def test_comparing_two_selections_names_and_shows_the_direction_each_way(mapped, monkeypatch, tmp_path):
    """Red circles as A, blue squares as B: the direction from A to B is named by blue/square one way and
    red/circle the other, and the index's images furthest each way are B's and A's kinds."""
    from explorer.science.vocabulary import parse_vocabulary

    ctx, folder, _ = mapped
    a = map_actions.pick_side(ctx, folder, names_of(KINDS[0])[:4], "A")
    b = map_actions.pick_side(ctx, folder, names_of(KINDS[1])[:4], "B")
    typed = "red, blue, yellow, circle, square, cross"
    words = parse_vocabulary(typed)
    a_, b_ = selection.checked(ctx, a.index, a.names), selection.checked(ctx, b.index, b.names)
    found = selection.compare(ctx, a_, b_, 3, words, cache_dir=False)
    assert {w for w, _ in found.words_b[:2]} <= {"blue", "square"}, found.words_b
    assert {w for w, _ in found.words_a[:2]} <= {"red", "circle"}, found.words_a
    assert [n.split("/")[0] for _, n, _ in found.images_b] == [KINDS[1]] * 3
    assert [n.split("/")[0] for _, n, _ in found.images_a] == [KINDS[0]] * 3
    assert found.length > 0.1
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    view = map_actions.compare(ctx, a, b, typed)      # the words typed beside the map
    assert not list(tmp_path.rglob("*.npy"))           # a visitor's own words are never kept on disk
    assert "Towards B" in view.summary and "blue" in view.summary
    # only images on each side of the midpoint: A's kind first one way, B's the other, none in both
    kinds_a = [c.split(" · ")[1].split("/")[0] for _, c in view.towards_a]
    kinds_b = [c.split(" · ")[1].split("/")[0] for _, c in view.towards_b]
    assert kinds_a[:PER_CLASS] == [KINDS[0]] * PER_CLASS and KINDS[1] not in kinds_a
    assert kinds_b[:PER_CLASS] == [KINDS[1]] * PER_CLASS and KINDS[0] not in kinds_b
    assert len(kinds_a) + len(kinds_b) <= 3 * PER_CLASS
    with pytest.raises(ValueError, match="Set a selection"):
        map_actions.compare(ctx, a, None, typed)
    with pytest.raises(gate.Refused):
        map_actions.compare(ctx, a, map_actions.Side(folder, ["../../etc/passwd"]), typed)
