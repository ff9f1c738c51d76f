"""explorer/science/fewshot_experiment.py: the one few-shot experiment of the Teach tab and `clip-explorer
fewshot` (no gradio), on synthetic embeddings; and each method fitted once per draw of shots."""
from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from explorer.inputs.gate import TextLimits
from explorer.inputs.sources import Embedded
from explorer.science import classifier_file, fewshot, fewshot_experiment
from tests.test_teach_tab import opaque  # noqa: F401  (a fixture)


def clusters(per_class: list[int], dim: int = 16, seed: int = 0, noise: float = 0.35):
    """Well separated class clusters, and class text embeddings that point the wrong way (zero-shot
    is poor: text i sits on class (i + 1) % C), so the shots must do the work."""
    rng = np.random.default_rng(seed)
    centres = np.eye(len(per_class), dim)
    f = np.concatenate([centres[c] + noise * rng.normal(size=(n, dim)) for c, n in enumerate(per_class)])
    y = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    f = (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)
    text = np.roll(centres, 1, axis=0).astype(np.float32)
    return f, y, text


def test_confusion_counts_true_rows_and_predicted_columns():
    m = fewshot_experiment.confusion([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert m.sum() == 6


def test_fixes_and_breaks_against_zero_shot():
    truth = np.array([0, 1, 2, 0, 1])
    zs = np.array([0, 0, 2, 1, 1])       # right on 0, 2, 4
    method = np.array([1, 1, 2, 0, 1])   # right on 1, 2, 3, 4
    fixed, broken = fewshot_experiment.fixes_and_breaks(truth, zs, method)
    assert fixed.tolist() == [1, 3] and broken.tolist() == [0]


def test_shots_curve_means_spread_and_skips_counts_above_the_smallest_class():
    f, y, text = clusters([6, 5, 9])
    test = clusters([4, 4, 4], seed=1)[:2]
    curve = fewshot_experiment.shots_curve((f, y), test, ["a", "b", "c"], text, 50.0,
                                           ("zero-shot", "prototype"), seeds=3)
    assert curve.shots == [1, 2, 4] and curve.skipped == [8, 16]
    assert any("smallest class (b) has only 5" in n for n in curve.notes)
    assert len(curve.mean["prototype"]) == 3 and len(curve.std["prototype"]) == 3
    assert all(s == 0 for s in curve.std["zero-shot"])              # no shots: nothing varies over seeds
    assert curve.mean["prototype"][-1] > curve.mean["zero-shot"][-1] + 0.5
    assert curve.mean["zero-shot"][0] < 0.2


def test_a_shot_count_equal_to_the_smallest_class_is_run_not_skipped():
    f, y, text = clusters([6, 5, 9])
    test = clusters([4, 4, 4], seed=1)[:2]
    experiment = fewshot_experiment.FewShotExperiment((f, y), test, ["a", "b", "c"], text, 50.0)
    curve = experiment.curve(("zero-shot", "gda"), shots=(2, 5, 6), seeds=2)
    assert curve.shots == [2, 5] and curve.skipped == [6]
    assert len(curve.mean["gda"]) == 2 and curve.mean["gda"][1] > curve.mean["zero-shot"][1] + 0.5
    report = experiment.report(("zero-shot", "gda"), shots=5, seeds=2)
    assert report.train_images == 15 and not report.notes          # 5 of each class, none short
    assert report.methods["gda"].informative == [True, True]


def test_teach_holds_out_a_part_fits_classifiers_and_beats_zero_shot():
    f, y, text = clusters([10, 10, 10])
    names = [f"{'abc'[c]}/{i}.png" for i, c in enumerate(y)]
    images = Embedded(names, [Path(n) for n in names], f, class_names=["a", "b", "c"], labels=y)
    result = fewshot_experiment.run_split(fewshot_experiment.train_test_split(images), text, 50.0,
                                          ("prototype", "gda"), shots=None, seeds=2, curve_shots=(1, 2))
    assert list(result.report.methods) == ["zero-shot", "prototype", "gda"]
    assert result.report.test_images == 9 and len(result.test_names) == 9
    assert any("held out for testing" in n for n in result.notes)
    assert result.report.methods["prototype"].top1 > result.report.methods["zero-shot"].top1 + 0.5
    assert result.best() in ("prototype", "gda")
    fixed, broken = result.changes("prototype")
    assert len(fixed) > 5 and len(broken) == 0
    assert result.confusions["prototype"].trace() == (result.predictions["prototype"] == result.truth).sum()
    assert result.curve.shots == [1, 2]
    with pytest.raises(ValueError, match="labelled"):
        fewshot_experiment.run_split(fewshot_experiment.train_test_split(Embedded(names, [], f)), text, 50.0,
                                     ("gda",), None)


def test_sort_puts_unsure_images_in_none_of_these_with_the_softmax_default():
    f, y, text = clusters([5, 5])
    clf = fewshot.fit("prototype", f, y, ["a", "b"], text, 50.0, {"weight": 1.0})
    between = clf.arrays["prototypes"].sum(axis=0)    # as near one class as the other
    sorted_ = fewshot.sort_embeddings(clf, np.vstack([f[[0, 1, 6]], between]), ["x", "y", "z", "mid"])
    assert sorted_.threshold == pytest.approx(0.75)   # (1 + 1/2) / 2 for two classes
    assert "softmax" in sorted_.why
    assert [n for n, _ in sorted_.classes["a"]] in (["x", "y"], ["y", "x"])
    assert [n for n, _ in sorted_.classes["b"]] == ["z"]
    assert [n for n, _, _ in sorted_.none] == ["mid"]
    probs = [p for n, p in sorted_.classes["a"]]
    assert probs == sorted(probs, reverse=True)
    everyone = fewshot.sort_embeddings(clf, f[[0, 6]], ["x", "z"], none_threshold_value=1.01)
    assert len(everyone.none) == 2 and "chosen" in everyone.why


def test_export_zip_holds_the_classifier_pair_that_reloads(tmp_path):
    f, y, text = clusters([4, 4])
    clf = fewshot.fit("gda", f, y, ["a", "b"], text, 50.0)
    path = classifier_file.export_zip(clf, tmp_path / "out", {"name": "m"}, {"use": "templates"})
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["classifier-gda.json", "classifier-gda.safetensors"]
        z.extractall(tmp_path / "back")
    assert json.loads((tmp_path / "back" / "classifier-gda.json").read_text())["method"] == "gda"
    back, _ = classifier_file.load(tmp_path / "back" / "classifier-gda.json", {"name": "m"})
    np.testing.assert_allclose(back.logits(f), clf.logits(f), rtol=1e-5)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["classifier-gda.zip"]   # nothing left beside it


# ---- each method fitted once per (shot count, seed); one provenance for both faces ------------------
def count_fits(monkeypatch) -> Counter:
    """Counter of (method, shots drawn) over every fewshot.fit call from now on (leave-one-out scores
    the grid in closed form, fewshot.loo_correct: no fit of a method on a draw)."""
    calls: Counter = Counter()
    real = fewshot.fit

    def counting(method, embeddings, labels, *args, **kwargs):
        calls[(method, len(labels))] += 1
        return real(method, embeddings, labels, *args, **kwargs)

    monkeypatch.setattr(fewshot, "fit", counting)
    return calls


def test_each_method_is_fitted_once_per_draw_and_the_kept_classifier_is_the_runs(monkeypatch):
    f, y, text = clusters([10, 10, 10])
    names = [f"{'abc'[c]}/{i}.png" for i, c in enumerate(y)]
    images = Embedded(names, [Path(n) for n in names], f, class_names=["a", "b", "c"], labels=y)
    split = fewshot_experiment.train_test_split(images)
    calls = count_fits(monkeypatch)
    result = fewshot_experiment.run_split(split, text, 50.0, ("prototype", "gda"), shots=2, seeds=3,
                                          curve_shots=(1, 2, 4))
    # 1, 2 and 4 shots x 3 seeds; the main run's 2 shots are the curve's, not fitted again, and the
    # classifiers kept are those of seed 0's draw (no fit after the run).
    assert calls == {(m, k * 3): 3 for m in ("zero-shot", "prototype", "gda") for k in (1, 2, 4)}
    assert result.curve.mean["gda"][1] == result.report.methods["gda"].top1
    for m, clf in result.classifiers.items():
        np.testing.assert_array_equal(clf.predict(split.test[0]), result.predictions[m])
        assert clf.params == result.report.methods[m].params[0]


def _cli(*args: str) -> dict:
    from explorer.cli import main as cli
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli(["fewshot", *args, "--device", "cpu", "--json"])
    assert code == 0
    return json.loads(out.getvalue())


def test_the_tab_and_the_command_fit_once_and_keep_one_provenance(opaque,  # noqa: F811
                                                                  shapes_model, shapes_model_dir, monkeypatch,
                                                                  tmp_path):
    """The same labelled folder through the Teach tab and `clip-explorer fewshot`: each method fitted
    once per draw in both; the same numbers, and one provenance record (the same keys, here the same
    values) in `--json`, in the `--save`d classifier and in the tab's download."""
    from explorer.app.ui import teach_tab
    from tests.test_teach_tab import SINGLE, local_context

    ctx = local_context(tmp_path / "ctx", shapes_model)
    ctx.embed_choice(folder=str(opaque / "examples"), labelled=True)   # embedded before counting
    calls = count_fits(monkeypatch)
    view = teach_tab.run_teach(ctx, str(opaque / "examples"), None, SINGLE, ["prototype", "gda"], "2")
    assert view.state is not None, view.summary
    # 7 training images per class: curve 1, 2, 4 shots x 3 seeds; the 2 shots asked are the curve's.
    assert calls == {(m, k * 4): 3 for m in ("zero-shot", "prototype", "gda") for k in (1, 2, 4)}
    path = teach_tab.download_classifier(ctx, view.state, "gda")
    with zipfile.ZipFile(path) as z:
        tab_meta = json.loads(z.read("classifier-gda.json"))

    calls.clear()
    doc = _cli(str(opaque / "examples"), "--shots", "2", "--seeds", "3", "--templates", "single",
               "--method", "all", "--save", str(tmp_path / "clf"), "--model", f"local-dir:{shapes_model_dir}")
    assert calls == {(m, 8): 3 for m in fewshot.METHODS}          # --save fits nothing again
    saved = json.loads((tmp_path / "clf.json").read_text())
    assert set(doc["provenance"]) == set(tab_meta["provenance"]) == set(saved["provenance"])
    assert saved["provenance"] == doc["provenance"]
    tab, cli = tab_meta["provenance"], doc["provenance"]
    assert cli["prompts"] == tab["prompts"] == {"use": "templates", "templates": "single",
                                                "descriptions": None, "weighting": "mean"}
    assert cli["held_out"] == tab["held_out"] == {"fraction": fewshot_experiment.HELD_OUT, "seed": 0}
    assert cli["model"] == tab["model"] and cli["shots"] == tab["shots"] == 2 and cli["seeds"] == 3
    assert cli["chosen"]["gda"] == tab["chosen"]["gda"]
    assert cli["how_chosen"]["gda"] == tab["how_chosen"]["gda"]
    assert doc["methods"]["gda"]["top1"] == pytest.approx(view.state.result.report.methods["gda"].top1)
    assert saved["params"] == tab_meta["params"] == cli["chosen"]["gda"][0]


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """Four shape classes with their real names, each a different colour and shape: the shapes model
    names them all, so on 2 shots a class every value of every search scores 100%: nothing to choose."""
    from tests.shapes import CLASSES, make_labelled_folder

    base = tmp_path_factory.mktemp("named")
    make_labelled_folder(base / "examples", [CLASSES[i] for i in (0, 5, 10, 15)], 6, size=48, seed=3)
    return base / "examples"


def test_a_search_where_every_value_ties_is_reported_not_chosen_in_json_tab_and_classifier(
        named, shapes_model, shapes_model_dir, tmp_path):
    """Every face says the search chose nothing and uses the authors' default: `fewshot --json` (the
    method's entry and the provenance), the saved classifier, the Teach tab's table and its download."""
    from explorer.app.ui import teach_tab
    from tests.test_teach_tab import SINGLE, local_context

    doc = _cli(str(named), "--shots", "2", "--seeds", "3", "--templates", "single", "--method", "gda",
               "--save", str(tmp_path / "clf"), "--model", f"local-dir:{shapes_model_dir}")
    gda = doc["methods"]["gda"]
    assert gda["informative"] == [False] * 3 and gda["chosen"] == [fewshot.GDA_DEFAULT] * 3
    assert gda["how_chosen"].startswith("not chosen: all values tie, using the default alpha 0.1")
    assert gda["search"]["informative"] is False and len(set(gda["search"]["correct"])) == 1
    assert gda["search"]["grid"] == {"alpha": list(fewshot.GDA_ALPHAS)}
    assert any("leave-one-out" in d for d in gda["departures"])
    record = doc["provenance"]
    assert record["informative"]["gda"] == [False] * 3 and record["how_chosen"]["gda"] == gda["how_chosen"]
    assert record["searches"]["gda"] == gda["search"] and record["departures"]["gda"] == gda["departures"]
    saved = json.loads((tmp_path / "clf.json").read_text())
    assert saved["params"] == fewshot.GDA_DEFAULT and saved["informative"] is False
    assert saved["how_chosen"] == gda["how_chosen"] and saved["provenance"] == record
    classifier_file.load(tmp_path / "clf.json", shapes_model.identity.as_dict())       # still loads

    ctx = local_context(tmp_path / "ctx", shapes_model)
    view = teach_tab.run_teach(ctx, str(named), None, SINGLE, ["tip-adapter", "gda"], "2")
    assert view.state is not None, view.summary
    assert 'data-method="gda" data-informative="false"' in view.table
    assert "not chosen: all values tie, using the default alpha 0.1" in view.table
    assert "(default, not chosen)" in view.table and 'id="teach-departures"' in view.table
    download = teach_tab.download_classifier(ctx, view.state, "tip-adapter")
    with zipfile.ZipFile(download) as z:
        meta = json.loads(z.read("classifier-tip-adapter.json"))
    hosted = TextLimits(max_bytes=64 << 10, max_json_depth=8)   # the searches fit a hosted upload's limits
    classifier_file.load_upload([download], shapes_model.identity.as_dict(), "shapes", hosted)
    assert meta["params"] == fewshot.TIP_DEFAULT and meta["informative"] is False
    assert meta["how_chosen"].startswith("not chosen: all values tie, using the default alpha 1.17, beta 1")
    assert any("augmented views" in d for d in meta["departures"])
