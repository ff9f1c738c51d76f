"""A classifier taught in the Teach tab, downloaded, then used in the Zero-shot classification tab:
the same predictions, refused for another model, and safe against hostile uploads."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from explorer.app.ui import classify_tab, teach_tab
from explorer.science import classifier_file
from tests.test_teach_tab import ALL, SINGLE, local_context, opaque  # noqa: F401  (opaque is a fixture)


@pytest.fixture(scope="module")
def downloaded(opaque, shapes_model, tmp_path_factory):  # noqa: F811
    ctx = local_context(tmp_path_factory.mktemp("taught"), shapes_model)
    view = teach_tab.run_teach(ctx, str(opaque / "examples"), None, SINGLE, ALL, "All")
    assert view.state is not None, view.summary
    return ctx, view.state, Path(teach_tab.download_classifier(ctx, view.state, "tip-adapter"))


def _new_images(opaque):  # noqa: F811
    return sorted(str(p) for p in (opaque / "new").rglob("*.png"))


def test_the_downloaded_classifier_classifies_in_the_classify_tab_as_taught(downloaded, opaque):  # noqa: F811
    ctx, state, archive = downloaded
    images = _new_images(opaque)
    view = classify_tab.classify(ctx, images, "", next(iter(classify_tab.TEMPLATE_CHOICES)), "", 3,
                                 classifier_files=[str(archive)])
    report = view.report
    assert report is not None and report.predictions is not None, view.summary
    classifier = state.result.classifiers["tip-adapter"]
    expected = [classifier.class_names[j] for j in classifier.predict(_embed(ctx, images))]
    assert report.predictions.top1() == expected
    assert report.predictions.labels == ["kind 1", "kind 2", "kind 3", "kind 4"]
    assert "taught tip-adapter classifier" in view.summary and "labels box is not used" in view.summary
    # Names the model cannot read: the taught classes are still found.
    assert sum(_kind(p) == t for p, t in zip(images, expected)) >= 0.75 * len(images)


def _kind(path: str) -> str:
    from tests.shapes import CLASSES
    folder = Path(path).parent.name
    names = [f"a_{c}_{s}" for c, s in CLASSES[:4]]
    return f"kind {names.index(folder) + 1}"


def _embed(ctx, images):
    from explorer.inputs.sources import embed_files
    return embed_files(ctx.model(), images, cache=ctx.embeddings).embeddings


def test_the_unzipped_pair_works_and_another_models_classifier_is_refused(downloaded, opaque, tmp_path):  # noqa: F811
    ctx, state, archive = downloaded
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path)
    pair = sorted(str(p) for p in tmp_path.iterdir())
    images = _new_images(opaque)
    assert classify_tab.classify(ctx, images, "", "Single: a photo of a {}.", "", 2,
                                 classifier_files=pair).report
    meta_path = next(p for p in pair if p.endswith(".json"))
    text = Path(meta_path).read_text().replace(ctx.model().identity.as_dict()["name"], "ViT-B-32")
    Path(meta_path).write_text(text)
    refused = classify_tab.classify(ctx, images, "", "Single: a photo of a {}.", "", 2, classifier_files=pair)
    assert (refused.report is None and "was made with ViT-B-32" in refused.summary
            and "explorer-error" in refused.summary)


def _zip(path: Path, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return str(path)


def test_hostile_classifier_uploads_get_a_message_and_nothing_is_written(downloaded, opaque,  # noqa: F811
                                                                         tmp_path, monkeypatch):
    ctx, _, archive = downloaded
    images = _new_images(opaque)[:1]
    monkeypatch.setattr(classifier_file, "MAX_BYTES", 1 << 20)
    with zipfile.ZipFile(archive) as z:
        good = {n: z.read(n) for n in z.namelist()}
    meta = next(v for n, v in good.items() if n.endswith(".json"))
    cases = {
        "bomb.zip": _zip(tmp_path / "bomb.zip", {"../../c.json": meta, "c.safetensors": b"\0" * (2 << 20)}),
        "garbage.zip": str(tmp_path / "garbage.zip"),
        "two.zip": _zip(tmp_path / "two.zip", {**good, "other.json": meta}),
        "damaged.zip": _zip(tmp_path / "damaged.zip", {"c.json": meta, "c.safetensors": b"not arrays"}),
        "notjson.zip": _zip(tmp_path / "notjson.zip", {"c.json": b"{", "c.safetensors": b""}),
    }
    (tmp_path / "garbage.zip").write_bytes(io.BytesIO(b"PK\x03\x04 garbage").getvalue())
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for name, path in cases.items():
        view = classify_tab.classify(ctx, images, "", "Single: a photo of a {}.", "", 2,
                                     classifier_files=[path])
        assert view.report is None and "explorer-error" in view.summary, name
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not (tmp_path.parent / "c.json").exists()
