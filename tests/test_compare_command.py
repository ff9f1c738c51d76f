"""`clip-explorer compare`: two local models (the shapes model and its noisy twin) on one small labelled
folder, run through the CLI's main in-process. The --json is the core's report and its accuracies are
compare_models' and the Prompt lab's; a second run encodes nothing; bad inputs exit 2 before anything is
written."""
from __future__ import annotations

import json

import pytest

from explorer.cli import main
from explorer.commands import compare as command
from tests.shapes import CLASSES, make_labelled_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-command") / "shapes"
    make_labelled_folder(root, CLASSES[:8], 4, seed=3)
    return root


@pytest.fixture(scope="module")
def models(shapes_model_dir, noisy_model_dir) -> list[str]:
    return [f"local-dir:{shapes_model_dir}", f"local-dir:{noisy_model_dir}"]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("compare-indexes")


def _compare(capsys, *args: str, code: int = 0):
    got = main(["compare", *args, "--device", "cpu"])
    out = capsys.readouterr()
    assert got == code, out.err
    return out


def _json(capsys, *args: str) -> dict:
    return json.loads(_compare(capsys, *args, "--json").out)


def test_json_is_the_tabs_and_the_prompt_labs_and_a_later_run_encodes_nothing(
        capsys, folder, models, tmp_path_factory, shapes_model, noisy_model, monkeypatch):
    """The Compare tab's handler stores the embeddings (the app's index folder); the command's run after it,
    on the same index folder, encodes nothing and prints the numbers the tab drew; the text report says
    them."""
    import argparse

    from explorer.app.ui.compare_tab import run_compare
    from explorer.inputs.sources import embed_folder
    from explorer.science.prompt_lab import run_lab
    from explorer.science.prompts import builtin_template_set
    from tests.helpers import local_context, same_up_to_rounding

    workdir = tmp_path_factory.mktemp("compare-app")
    ctx = local_context(shapes_model, workdir, folder.parent)
    view = run_compare(ctx, "\n".join(models), str(folder), None, None, "", "7 templates (OpenAI subset)")
    core = view.report
    assert core is not None, view.summary
    ctx.indexes.close_all()
    doc = _json(capsys, *models, "--folder", str(folder), "--index-dir", str(workdir / "idx"))
    assert [run["encoded"] for run in doc["models"]] == [0, 0]   # the tab's indexes: nothing re-encoded
    assert [run.encoded for run in core.runs] == [32, 32]
    same = json.loads(json.dumps(core.as_dict()))
    assert [r["timed_now"] for r in same["models"] + doc["models"]] == [True, True, False, False]
    for run in same["models"] + doc["models"]:   # what a run that encoded and one that did not differ in
        for key in ("encoded", "timed_now", "store_bytes"):
            run.pop(key)
        run["cost"].pop("load_seconds")
    assert same_up_to_rounding(same, doc), (same, doc)
    assert doc["models"][0]["top1"] == 1.0 and doc["models"][1]["top1"] < 0.9 and doc["disagreements"]
    for model, run in zip((shapes_model, noisy_model), doc["models"]):
        lab = run_lab(model, embed_folder(model, folder), builtin_template_set("simple"), weighting="mean")
        assert run["top1"] == pytest.approx(lab.result.top1) and run["top5"] == pytest.approx(lab.result.top5)
    monkeypatch.setattr(command, "SHOWN_DISAGREEMENTS", 2)
    command._print_report(core, folder, argparse.Namespace(templates="simple", weighting="mean"))
    out = capsys.readouterr().out
    assert "[1] local-dir:" in out and "[2] local-dir:" in out and "top-1 100.0%" in out
    assert out.count("measured now, 32 images encoded") == 2 and "GFLOPs per image" in out
    assert "give the same top-1 label" in out and "McNemar's p: +" in out and "beyond chance" in out
    assert "the models disagree on" in out and "more (--json lists them all)" in out
    for name, row in same["models"][1]["per_class"].items():      # per class, each model's top-1 in turn
        line = next(line for line in out.splitlines() if line.startswith(f"  {name} ("))
        assert line.split(": ")[-1].split() == ["100.0%", f"{row['accuracy']:.1%}"]


def test_bad_inputs_exit_2_with_a_message_and_write_nothing(capsys, folder, models, tmp_path):
    empty, broken, plain = tmp_path / "empty", tmp_path / "broken", tmp_path / "plain"
    empty.mkdir()
    broken.mkdir()
    (broken / "open_clip_config.json").write_text("{}")
    (broken / "open_clip_model.safetensors").write_bytes(b"not weights")
    plain.mkdir()
    (plain / "a.png").write_bytes((next(folder.glob("*/0.png"))).read_bytes())
    index_dir = tmp_path / "indexes"
    cases = [((models[0],), "two or more models"),
             ((models[0], f"local-dir:{tmp_path}/nope"), "folder not found"),
             ((f"local-dir:{broken}", models[0]), "could not load"),
             ((*models, "--templates", "fancy"), "is not single, openai, simple"),
             ((*models, "--folder", str(empty)), "no images found"),
             ((*models, "--folder", str(plain)), "--labels")]
    for args, message in cases:
        where = () if "--folder" in args else ("--folder", str(folder))
        out = _compare(capsys, *args, *where, "--index-dir", str(index_dir), code=2)
        assert message in out.err and out.out == "", (args, out.err)
        assert not index_dir.exists() or not any(index_dir.iterdir()), args


def test_indexes_prints_the_overlap_of_two_indexes(capsys, folder, index_dir, shapes_model, noisy_model,
                                                   monkeypatch):
    from contextlib import nullcontext

    from explorer.index.embedding_store import stored_embeddings
    from explorer.index.registry import IndexRegistry

    registry = IndexRegistry(index_dir)   # the indexes the comparison stored (built here when run alone)
    first, second = (str(stored_embeddings(m, folder, registry).index_folder)
                     for m in (shapes_model, noisy_model))
    registry.close_all()
    loaded = {f"local-dir:{m.name.partition(':')[2]}": m for m in (shapes_model, noisy_model)}
    monkeypatch.setattr(command, "model_opener", lambda settings: lambda c: nullcontext(loaded[c.label()]))
    doc = _json(capsys, "--indexes", first, second, "--query", "a red circle", "--query", "a blue square",
                "-k", "4")
    assert doc["k"] == 4 and [q["query"] for q in doc["queries"]] == ["a red circle", "a blue square"]
    assert all(0 <= q["overlap"] <= 1 and len(q["top"][doc["models"][0]]) == 4 for q in doc["queries"])
    out = _compare(capsys, "--indexes", first, second, "--query", "a red circle", "-k", "4")
    assert "overlap of the top 4" in out.out and "Spearman" in out.out
    _compare(capsys, "--indexes", first, second, code=2)
