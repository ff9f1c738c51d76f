"""Indexing timings are measured separately and each label says what it times."""
from __future__ import annotations

import json
import time

import pytest

from explorer.app.ui.search_html import build_report
from explorer.index import build as index_build
from explorer.index import faiss_ops
from explorer.index.build import build_index
from tests.shapes import CLASSES, make_labelled_folder

DELAY = 0.4


@pytest.fixture()
def photos(tmp_path):
    make_labelled_folder(tmp_path / "photos", CLASSES[:3], 2)
    return tmp_path / "photos"


def test_faiss_time_is_measured_apart_from_encoding(shapes_model, photos, tmp_path, monkeypatch):
    real_build = faiss_ops.build

    def slow_build(*args, **kwargs):
        time.sleep(DELAY)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(faiss_ops, "build", slow_build)
    report = build_index(shapes_model, photos, tmp_path / "idx", workers=0)
    assert report.faiss_rebuilt and report.added == 6
    assert DELAY <= report.faiss_seconds < DELAY + 0.3   # the FAISS build, and only it
    assert report.encode_seconds > 0
    assert report.encode_seconds + report.faiss_seconds <= report.seconds


def test_encoding_time_is_measured_apart_from_faiss(shapes_model, photos, tmp_path, monkeypatch):
    real_embed = index_build._embed

    def slow_embed(*args, **kwargs):
        time.sleep(DELAY)
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(index_build, "_embed", slow_embed)
    report = build_index(shapes_model, photos, tmp_path / "idx", workers=0)
    assert report.encode_seconds >= DELAY
    assert report.faiss_seconds < DELAY                    # 6 vectors into a Flat index: milliseconds
    assert report.seconds >= report.encode_seconds + report.faiss_seconds


def test_labels_name_what_they_time(shapes_model, photos, tmp_path):
    first = build_index(shapes_model, photos, tmp_path / "idx", workers=0)
    text = first.timing_text()
    assert text.startswith(f"{first.seconds:.1f} s in all: {first.encode_seconds:.1f} s reading and encoding")
    assert "(6 embedded)" in text
    assert f"{first.faiss_seconds:.2f} s rebuilding the FAISS Flat index of 6 embedding(s)" in text
    page = build_report(str(photos), first, [])
    assert "built in" not in page                          # the old label that called the whole run a build
    assert f"Indexing took {first.seconds:.1f} s in all" in page and "rebuilding the FAISS Flat index" in page
    # Nothing changed: the FAISS index is only loaded, and the label says so.
    again = build_index(shapes_model, photos, tmp_path / "idx", workers=0)
    assert not again.faiss_rebuilt and again.added + again.updated == 0
    assert "loading (it was current) the FAISS Flat index" in again.timing_text()
    assert "(0 embedded)" in again.timing_text()


def test_index_cli_reports_the_separate_timings(shapes_model_dir, photos, tmp_path, capsys):
    from explorer.cli import main

    args = [
        "index",
        str(photos), "--index",
        str(tmp_path / "idx"), "--model", f"local-dir:{shapes_model_dir}", "--device", "cpu", "--workers", "0"
    ]
    assert main(args + ["--json"]) == 0
    timings = json.loads(capsys.readouterr().out)["timings"]
    assert set(timings) == {"total", "read_and_encode", "faiss", "faiss_rebuilt", "waited"}
    assert timings["faiss_rebuilt"] is True
    assert timings["read_and_encode"] + timings["faiss"] <= timings["total"] + 1e-3
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "time: " in out and "loading (it was current) the FAISS Flat index of 6 embedding(s)" in out
