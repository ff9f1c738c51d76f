"""The Compare models tab's handlers, without a browser: the shapes model (resident) against its noisy
variant on a labelled folder. Each model's accuracy on the page is the Prompt lab's for that model loaded
alone; the gallery holds exactly the images where their answers differ; the resident model and the
embedding cache stay the same objects; a second run encodes nothing. Hosted, a model the demo does not
offer (or too many) is refused before anything loads."""
from __future__ import annotations

import html

import pytest

from explorer.app.context import AppContext
from explorer.app.ui import compare_tab, prompt_lab_tab
from explorer.science.prompts import builtin_template_set
from tests import shapes
from tests.helpers import hosted_context, local_context

TEMPLATES = "7 templates (OpenAI subset)"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare") / "shapes"
    shapes.make_labelled_folder(root, shapes.CLASSES[:8], 4, seed=3)
    return root


@pytest.fixture(scope="module")
def ctx(shapes_model, folder, tmp_path_factory):
    return local_context(shapes_model, tmp_path_factory.mktemp("compare-ctx"), folder.parent)


def lab_alone(model, folder, workdir):
    """The Prompt lab's handler on `model` loaded alone, with the tab's templates (equal average)."""
    alone = local_context(model, workdir, folder.parent)
    table = prompt_lab_tab.frame(builtin_template_set("simple"))
    view = prompt_lab_tab.evaluate_prompts(alone, table, str(folder), None, "", "", None, "Templates",
                                           "Equal average", 1, False, None, None)
    assert view.report is not None, view.summary
    return view.report


def test_two_models_side_by_side_as_the_prompt_lab_scores_each(ctx, folder, shapes_model, shapes_model_dir,
                                                               noisy_model, noisy_model_dir, tmp_path):
    models = f"local-dir:{shapes_model_dir}\nlocal-dir:{noisy_model_dir}"
    resident, cache = ctx.slot.model, ctx.embeddings
    view = compare_tab.run_compare(ctx, models, str(folder), None, None, "", TEMPLATES)
    report = view.report
    assert report is not None and len(report.runs) == 2, view.summary
    assert ctx.slot.model is resident and ctx.embeddings is cache    # nothing swapped or replaced
    summary = html.unescape(view.summary)
    labs = [lab_alone(shapes_model, folder, tmp_path / "a"), lab_alone(noisy_model, folder, tmp_path / "b")]
    for run, lab in zip(report.runs, labs):
        assert run.top1() == pytest.approx(lab.result.top1)
        assert f"{lab.result.top1:.1%}" in summary
    assert labs[0].result.top1 > labs[1].result.top1       # the two differ, so the test means something
    # per class: each model's accuracy on each class, as the Prompt lab gives it for that model alone
    per_class = summary[summary.index('id="cmp-per-class-table"'):]
    for name in labs[0].result.class_names:
        row = per_class[per_class.index(f"<b>{name}</b>"):].split("</tr>")[0]
        assert [f"{lab.result.per_class[name]:.1%}" for lab in labs] == \
            [cell.split("</td>")[0] for cell in row.split("<td>")[1:]]
    # the gallery: exactly the images whose top label differs between the two, each model's answer named
    by_name = [dict(zip(lab.images.names, lab.predicted)) for lab in labs]
    differ = {n for n in by_name[0] if by_name[0][n] != by_name[1][n]}
    assert differ and len(view.gallery) == len(differ)
    shown = {caption.split(" · ")[0] for _, caption in view.gallery}
    assert shown == differ
    for _, caption in view.gallery:
        name = caption.split(" · ")[0]
        assert f"shapes_clip: {by_name[0][name]}" in caption and "true: " in caption
    assert "≠" in view.per_image and view.plot is not None
    assert "<b>shapes_clip</b> is <b>better</b> than <b>noisy" in view.pairs     # the core's verdict, said
    # again: every embedding is in the app's index of the folder for each model, nothing is encoded
    before = resident.image_encodes
    again = compare_tab.run_compare(ctx, models, str(folder), None, None, "", TEMPLATES).report
    assert [run.encoded for run in again.runs] == [0, 0] and resident.image_encodes == before
    assert [run.top1() for run in again.runs] == [run.top1() for run in report.runs]
    # the two models' indexes of the folder, those the comparison kept, compared on queries
    indexes = [str(ctx.indexes.path_for(folder, model)) for model in (shapes_model, noisy_model)]
    agreement = compare_tab.run_index_agreement(ctx, *indexes, "a red circle\na blue square", 4)
    assert "overlap@4" in agreement and agreement.count("</tr>") == 3, agreement


def test_hosted_refuses_a_model_not_offered_or_too_many_before_loading_any(shapes_model, tmp_path,
                                                                           monkeypatch):
    hosted = hosted_context(tmp_path, shapes_model).scoped("visitor")
    offered = next(iter(compare_tab.offered(hosted)))

    def loads(*args, **kwargs):
        raise AssertionError("a model was opened")

    monkeypatch.setattr(AppContext, "compared_model", loads)
    view = compare_tab.run_compare(hosted, [offered, "ViT-B-32 (openai)"], "", None, None, "", TEMPLATES)
    assert compare_tab.NOT_OFFERED in view.summary and view.report is None
    view = compare_tab.run_compare(hosted, [offered] * 9, "", None, None, "", TEMPLATES)
    assert "max-compare-models" in view.summary.replace("_", "-").lower(), view.summary
    assert hosted.slot.model is shapes_model
