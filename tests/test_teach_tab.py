"""The Teach by example tab's handlers, called as plain functions (as the page calls them), locally
and in hosted mode with two sessions."""
from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from explorer.app.context import AppContext
from explorer.app.ui import search_tab, teach_tab
from explorer.embed.model import ModelSlot
from explorer.inputs.settings import load_settings
from tests.helpers import hosted_context
from tests.shapes import CLASSES, make_labelled_folder

SINGLE = "Single: a photo of a {}."
ALL = list(teach_tab.METHOD_CHOICES)


@pytest.fixture(scope="module")
def opaque(tmp_path_factory):
    """Four shape classes in folders kind_1..kind_4 (names the model cannot read: zero-shot is near
    chance), 10 images each, and a zip of the same; plus new images to sort."""
    base = tmp_path_factory.mktemp("teach")
    make_labelled_folder(base / "examples", CLASSES[:4], 10, size=48, seed=1)
    for i, (c, s) in enumerate(CLASSES[:4], start=1):
        (base / "examples" / f"a_{c}_{s}").rename(base / "examples" / f"kind_{i}")
    archive = base / "examples.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((base / "examples").rglob("*.png")):
            z.write(path, f"examples/{path.relative_to(base / 'examples')}")
    make_labelled_folder(base / "new", CLASSES[:4], 3, size=48, seed=7)
    return base


def local_context(tmp_path, model) -> AppContext:
    settings = load_settings(env={"EXPLORER_ALLOWED_ROOTS": str(tmp_path.parent.parent),
                                  "EXPLORER_INDEX_DIR": str(tmp_path / "idx")})
    ctx = AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "uploads")
    ctx.slot.model = model
    return ctx


@pytest.fixture(scope="module")
def taught(opaque, shapes_model, tmp_path_factory):
    ctx = local_context(tmp_path_factory.mktemp("local"), shapes_model)
    return ctx, teach_tab.run_teach(ctx, str(opaque / "examples"), None, SINGLE, ALL, "All")


def test_a_run_shows_methods_beating_zero_shot_the_curve_and_what_was_chosen(taught):
    ctx, view = taught
    assert view.state is not None, view.summary
    scores = view.state.result.report.methods
    assert list(scores) == ["zero-shot", "prototype", "tip-adapter", "gda"]
    assert scores["gda"].top1 > scores["zero-shot"].top1 + 0.3
    assert 'id="teach-accuracy"' in view.table and "cross-validation" in view.table and "pts" in view.table
    assert "held out for testing" in view.table
    assert "8, 16 shot(s) per class skipped" in view.table     # 7 training images per class
    assert view.curve is not None and [t.name for t in view.curve.data] == ["zero-shot", *ALL]
    assert list(view.curve.data[1].x) == [1, 2, 4] and view.curve.data[1].error_y.array is not None
    assert view.chosen in ALL and view.methods == ["zero-shot", *ALL]


def test_the_method_view_shows_confusion_and_fixed_thumbnails_true_to_predicted(taught):
    ctx, view = taught
    mv = teach_tab.method_view(ctx, view.state, view.chosen)
    assert mv.confusion is not None and "fixes" in mv.heading
    result = view.state.result
    fixed, _ = result.changes(view.chosen)
    first = fixed[0]
    names, zs = result.class_names, result.predictions["zero-shot"]
    assert mv.fixed[0][1] == f"{names[result.truth[first]]} → {names[zs[first]]}"  # true → zero-shot's answer
    assert len(mv.fixed) == len(fixed) and zs[first] != result.truth[first]
    assert mv.fixed[0][0].size[0] <= 256
    assert teach_tab.method_view(ctx, None, "gda").confusion is None


def test_nothing_is_encoded_twice_and_shots_k_uses_seeds(taught, opaque, shapes_model):
    ctx, _ = taught
    before = shapes_model.image_encodes
    again = teach_tab.run_teach(ctx, str(opaque / "examples"), None, SINGLE, ["prototype"], "2")
    assert shapes_model.image_encodes == before
    report = again.state.result.report
    assert report.shots == 2 and report.seeds == 3 and list(report.methods) == ["zero-shot", "prototype"]
    assert "2 per class, 3 seed(s)" in again.summary


def test_apply_sorts_new_images_into_class_galleries_and_none_of_these(taught, opaque):
    ctx, view = taught
    files = sorted(str(p) for p in (opaque / "new").rglob("*.png"))
    applied = teach_tab.apply_classifier(ctx, view.state, view.chosen, files, None)
    assert "teach-sort-line" in applied.summary, applied.summary
    assert [label.split(" (")[0] for label, _ in applied.groups] == ["kind 1", "kind 2", "kind 3", "kind 4"]
    assert sum(len(items) for _, items in applied.groups) + len(applied.none) == 12
    assert all("%" in caption for _, items in applied.groups for _, caption in items)
    strict = teach_tab.apply_classifier(ctx, view.state, view.chosen, files, None, threshold=1.01)
    assert len(strict.none) == 12 and "chosen" in strict.summary
    assert "error" in teach_tab.apply_classifier(ctx, view.state, view.chosen, [], None).summary
    assert "Teach" in teach_tab.apply_classifier(ctx, None, "gda", files, None).summary


def test_apply_to_an_index_uses_its_stored_embeddings(taught, opaque, shapes_model):
    ctx, view = taught
    search_tab.build_search_index(ctx, search_tab.FOLDER, str(opaque / "new"), None, None)
    choices = teach_tab.index_choices(ctx)
    folder = next(value for label, value in choices if value != teach_tab.NO_INDEX)
    before = shapes_model.image_encodes
    applied = teach_tab.apply_classifier(ctx, view.state, "prototype", None, folder)
    assert shapes_model.image_encodes == before
    assert sum(len(items) for _, items in applied.groups) + len(applied.none) == 12


def test_download_is_the_classifier_pair_zipped(taught):
    ctx, view = taught
    path = Path(teach_tab.download_classifier(ctx, view.state, "gda"))
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["classifier-gda.json", "classifier-gda.safetensors"]
    with pytest.raises(ValueError, match="Teach"):
        teach_tab.download_classifier(ctx, None, "gda")


def test_a_classifier_from_another_model_is_refused(taught):
    ctx, view = taught
    other = replace(view.state, provenance=replace(view.state.provenance, model={"name": "ViT-B-32",
                                                                                  "pretrained": "openai"},
                                                   model_name="ViT-B-32"))
    assert "ViT-B-32" in teach_tab.apply_classifier(ctx, other, "gda", ["x.png"], None).summary


def test_errors_are_shown_not_raised(opaque, shapes_model, tmp_path):
    ctx = local_context(tmp_path, shapes_model)
    assert "at least one method" in teach_tab.run_teach(ctx, str(opaque / "examples"), None, SINGLE, [],
                                                        "All").summary
    assert "explorer-error" in teach_tab.run_teach(ctx, str(opaque / "new" / "a_red_circle"), None, SINGLE,
                                                   ALL, "All").summary


def test_hosted_each_session_keeps_its_own_classifier_and_download(opaque, shapes_model, tmp_path):
    ctx = hosted_context(tmp_path, shapes_model)
    a, b = ctx.scoped("session-a"), ctx.scoped("session-b")
    assert "upload" in teach_tab.run_teach(a, str(opaque / "examples"), None, SINGLE, ALL,
                                           "All").summary  # no paths
    view = teach_tab.run_teach(a, "", [str(opaque / "examples.zip")], SINGLE, ["gda"], "All")
    assert view.state is not None, view.summary
    assert str(a.workspace.folder) not in view.summary + view.table
    path = Path(teach_tab.download_classifier(a, view.state, "gda"))
    assert path.is_relative_to(a.workspace.folder) and not path.is_relative_to(b.workspace.folder)
    # B starts with its own empty state: nothing to apply or download, and A's index is not offered.
    assert "Teach" in teach_tab.apply_classifier(b, None, "gda", [str(opaque / "examples.zip")], None).summary
    with pytest.raises(ValueError):
        teach_tab.download_classifier(b, None, "gda")
    assert teach_tab.index_choices(b) == [(teach_tab.NO_INDEX, teach_tab.NO_INDEX)]
    ctx.workspaces.end("session-a")
    assert not path.exists()


def test_a_shot_count_change_only_fits_again(opaque, shapes_model, tmp_path, monkeypatch):
    """Issue 29: after a run, another shot count (the live dropdown runs the button's handler with the
    session's last run) re-uses the run's embeddings and fitted draws: an uploaded zip is not unpacked
    again, no image is read, decoded or encoded, no text encoded; only draws not fitted yet are fitted
    (the shots curve already drew 1, 2 and 4 per class); the result is the one a fresh run gives."""
    from explorer.embed import images as images_module
    from explorer.inputs import sources
    from explorer.science import fewshot

    ctx = local_context(tmp_path, shapes_model)
    zipped = [str(opaque / "examples.zip")]
    first = teach_tab.run_teach(ctx, "", zipped, SINGLE, ALL, "All")
    assert first.state is not None, first.summary
    touched, fits = [], []
    monkeypatch.setattr(ctx, "unpack", lambda *a, **k: touched.append("unpack") or pytest.fail("unpacked"))
    for module, name in ((images_module, "load_image"), (images_module, "prepare"), (sources, "prepare"),
                         (sources, "read_file")):
        monkeypatch.setattr(module, name, lambda *a, _n=name, **k: touched.append(_n) or pytest.fail(_n))
    real_fit = fewshot.fit
    monkeypatch.setattr(fewshot, "fit", lambda *a, **k: fits.append(a[0]) or real_fit(*a, **k))
    counts = shapes_model.image_encodes, shapes_model.text_encodes
    two = teach_tab.run_teach(ctx, "", zipped, SINGLE, ALL, "2", previous=first.state)
    assert two.state is not None, two.summary
    assert touched == [] and fits == [] and (shapes_model.image_encodes, shapes_model.text_encodes) == counts
    assert two.state.result.report.shots == 2 and "2 per class, 3 seed(s)" in two.summary
    again = teach_tab.run_teach(ctx, "", zipped, SINGLE, ALL, "All", previous=two.state)
    assert fits == [] and again.table == first.table               # every draw of "All" was kept too
    monkeypatch.undo()
    fresh = teach_tab.run_teach(ctx, "", zipped, SINGLE, ALL, "2")
    assert {m: s.top1 for m, s in fresh.state.result.report.methods.items()} == \
        {m: s.top1 for m, s in two.state.result.report.methods.items()}
    other = teach_tab.run_teach(ctx, "", zipped, "7 templates (OpenAI subset)", ALL, "2", previous=two.state)
    assert other.state.result.fitted is not two.state.result.fitted   # other prompts: fitted anew



def test_a_shot_change_sends_only_what_it_changes(opaque, shapes_model, tmp_path, monkeypatch):
    """Issue 29: after a run, another shot count neither makes nor sends the shots curve; a run that
    predicts the held-out images as the page already shows them (ExperimentResult.shows_alike) sends
    neither the method dropdown, the confusion matrix, the heading nor the galleries (no thumbnail read),
    nor a summary or table already shown; the same run again (gradio sends a dropdown pick as two input
    events) keeps the session's run, so nothing waiting on its change runs."""
    import gradio as gr

    ctx = local_context(tmp_path, shapes_model)
    zipped = [str(opaque / "examples.zip")]
    first = teach_tab.run_teach(ctx, "", zipped, SINGLE, ALL, "All")
    two = teach_tab.run_teach(ctx, "", zipped, SINGLE, ALL, "2", previous=first.state)
    assert two.curve_unchanged and two.curve is None                 # not even made
    assert first.state.shown == (first.summary, first.table)
    assert teach_tab.run_method_outputs(ctx, two, first.state, two.chosen)[1] is two.state  # a new run
    again = teach_tab.run_teach(ctx, "", zipped, SINGLE, ALL, "2", previous=two.state)
    assert (again.summary, again.table) == two.state.shown
    monkeypatch.setattr(teach_tab, "_thumb", lambda *a: pytest.fail("a thumbnail was made"))
    dropdown, state, *method_parts, shown = teach_tab.run_method_outputs(ctx, again, two.state, two.chosen)
    assert dropdown == gr.skip() and method_parts == [gr.skip()] * 4 and shown == two.chosen
    assert state == gr.skip()                                           # the same run: kept
    monkeypatch.undo()
    other = teach_tab.run_method_outputs(ctx, again, two.state, "zero-shot")   # the page shows another
    assert other[0] != gr.skip() and other[1] is again.state and other[2] != gr.skip()


def test_shows_alike_compares_what_a_method_view_shows(taught):
    _, view = taught
    result, method = view.state.result, view.chosen
    assert result.shows_alike(result, method) and not result.shows_alike(None, method)
    flipped = (result.predictions[method] + 1) % len(result.class_names)
    changed = replace(result, predictions={**result.predictions, method: flipped})
    assert not changed.shows_alike(result, method)
