"""The gate for what a visitor types: texts, JSON, labels, templates, descriptions, prompt counts.
Each test would fail on a realistic slip in the bookkeeping (an off-by-one, a path read as text)."""
from __future__ import annotations

import json
import time

import pytest

from explorer.inputs import gate
from explorer.inputs.gate import Refused, TextLimits
from explorer.inputs.settings import HOSTED_DEFAULTS, Settings
from explorer.science.descriptions import parse_descriptions, read_descriptions_file
from explorer.science.prompts import (
    PromptError,
    builtin_template_set,
    check_templates,
    parse_labels,
    parse_templates,
    parse_texts,
)

HOSTED = TextLimits.of(Settings(**{k: v for k, v in HOSTED_DEFAULTS.items()}))
SMALL = TextLimits(max_items=3, max_item_chars=5, max_bytes=40, max_json_depth=3, max_prompts=10)


def test_text_counts_utf8_bytes_and_refuses_one_over():
    assert gate.text("x" * 40, "Box", SMALL) == "x" * 40
    with pytest.raises(
            Refused,
            match=r"Box: 41 bytes is more than the limit of 40 bytes.*--max-text-kb.*EXPLORER_MAX_TEXT_KB"):
        gate.text("x" * 41, "Box", SMALL)
    with pytest.raises(Refused, match="42 bytes"):
        gate.text("é" * 21, "Box", SMALL)  # 21 characters, 42 bytes
    assert gate.text(None, "Box", SMALL) == ""


def test_items_keeps_exactly_the_limit_and_names_what_it_left_out():
    kept, notes = gate.items(["a", "b", "c"], "labels", SMALL, noun="label")
    assert kept == ["a", "b", "c"] and notes == []
    kept, notes = gate.items(["a", "b", "c", "d"], "labels", SMALL, noun="label")
    assert kept == ["a", "b", "c"]
    assert notes == [
        "kept the first 3 of 4 labels: more than the limit of 3 (set with --max-texts or EXPLORER_MAX_TEXTS)"
    ]
    kept, notes = gate.items(["abcde", "abcdef", "x"], "labels", SMALL, noun="label")
    assert kept == ["abcde", "x"]
    assert len(notes) == 1 and "label 2 (6 characters)" in notes[0] and "--max-text-chars" in notes[0]
    assert "5 characters" in notes[0]


def test_json_depth_counts_brackets_outside_strings_only():
    assert gate.json_depth('{"a": [[1]]}') == 3
    assert gate.json_depth('"[[[[" ') == 0
    assert gate.json_depth(r'["a\"[[[", {}]') == 2
    assert gate.json_depth("[]" * 100) == 1


def test_json_document_checks_bytes_and_depth_before_parsing():
    assert gate.json_document('{"a": [[1]]}', "Doc", SMALL) == {"a": [[1]]}
    with pytest.raises(Refused,
                       match=r"Doc: JSON nesting depth: 4 is more than the limit of 3.*--max-json-depth"):
        gate.json_document('{"a": [[[1]]]}', "Doc", SMALL)
    with pytest.raises(Refused, match="max-text-kb"):
        gate.json_document(b"[" + b"1," * 30 + b"1]", "Doc", SMALL)
    with pytest.raises(ValueError, match="not valid JSON") as caught:
        gate.json_document("{not json", "Doc", SMALL)
    assert not isinstance(caught.value, Refused)
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(Refused, match="depth"):
        gate.json_document(deep, "Doc", TextLimits(max_bytes=1 << 20))


def test_prompts_limit_is_inclusive():
    gate.prompts(10, limits=SMALL)
    with pytest.raises(Refused, match=r"11 texts is more than the limit of 10 texts.*--max-prompts"):
        gate.prompts(11, limits=SMALL)


def test_a_hundred_thousand_labels_are_trimmed_quickly_with_a_note():
    text = "\n".join(f"label {i}" for i in range(100_000))
    start = time.perf_counter()
    parsed = parse_labels(text[: HOSTED.max_bytes], HOSTED)
    assert len(parsed.labels) == HOSTED.max_items
    assert any("--max-texts" in note for note in parsed.notes)
    local = parse_labels(text)  # local defaults: 20,000 kept
    assert len(local.labels) == 20_000 and any("kept the first 20,000 of 100,000" in n for n in local.notes)
    assert time.perf_counter() - start < 5
    with pytest.raises(Refused, match="max-text-kb"):
        parse_labels(text, HOSTED)  # the whole box is over 64 KiB


def test_a_two_megabyte_label_is_refused_or_left_out_quickly():
    huge = "a" * (2 << 20)
    start = time.perf_counter()
    with pytest.raises(Refused, match="Labels: .* bytes is more than the limit"):
        parse_labels(huge + "\ncat\ndog", HOSTED)
    parsed = parse_labels(huge + "\ncat\ndog")
    assert parsed.labels == ["cat", "dog"] and any("label 1 (2,097,152 characters)" in n
                                                   for n in parsed.notes)
    texts = parse_texts(huge + "\na caption")
    assert texts.labels == ["a caption"] and "max-text-chars" in texts.notes[0]
    assert time.perf_counter() - start < 5


def test_templates_past_the_limits_are_refused_naming_the_setting():
    assert parse_templates("a {}\nb {}\nc {}", SMALL) == ["a {}", "b {}", "c {}"]
    with pytest.raises(Refused,
                       match=r"Templates: 4 entries is more than the limit of 3 entries.*--max-texts"):
        parse_templates("a {}\nb {}\nc {}\nd {}", SMALL)
    with pytest.raises(Refused,
                       match=r"Templates: row 1: 6 characters is more than the limit of 5.*--max-text-chars"):
        check_templates(["a {} i", "a {}"], limits=SMALL)
    with pytest.raises(PromptError, match="not a built-in set"):
        builtin_template_set("/etc/passwd")


def test_descriptions_are_json_only_a_typed_path_is_never_read(tmp_path, monkeypatch):
    real = tmp_path / "secret.json"
    real.write_text(json.dumps({"topsecretkey": ["the secret sentence"]}))
    answers = []
    for typed in (str(real), str(tmp_path / "mssing.json"), "~/secret.json"):
        with pytest.raises(PromptError) as caught:
            parse_descriptions(typed)
        answers.append(str(caught.value))
    assert answers[0] == answers[1] == answers[2] and "not valid JSON" in answers[0]
    assert "topsecretkey" not in answers[0] and "secret sentence" not in answers[0]
    # An upload is read as a file, within the limits.
    assert read_descriptions_file(real) == {"topsecretkey": ["the secret sentence"]}
    with pytest.raises(Refused, match="max-text-kb"):
        read_descriptions_file(real, TextLimits(max_bytes=10))


def test_descriptions_are_bounded_in_classes_sentences_and_length():
    ROOMY = TextLimits(max_items=3, max_item_chars=5, max_bytes=1000, max_json_depth=3)
    ok = {"a": ["x"], "b": ["y", "z"], "c": ["w"]}
    assert parse_descriptions(json.dumps(ok), limits=ROOMY) == ok
    with pytest.raises(Refused, match="max-texts"):
        parse_descriptions(json.dumps({**ok, "d": ["v"]}), limits=ROOMY)
    with pytest.raises(Refused, match="max-texts"):
        parse_descriptions(json.dumps({"a": ["1", "2", "3", "4"]}), limits=ROOMY)
    with pytest.raises(Refused, match="max-text-chars"):
        parse_descriptions(json.dumps({"a": ["sixsix"]}), limits=ROOMY)
    with pytest.raises(Refused, match="max-json-depth"):
        parse_descriptions('{"a": [[["x"]]]}', limits=ROOMY)


def test_the_prompt_lab_never_reads_a_typed_path(tmp_path, monkeypatch):
    """The page's handler: the same answer whether the typed path exists or not, and the file unread."""
    from types import SimpleNamespace

    from explorer.app.ui import prompt_lab_tab

    real = tmp_path / "d.json"
    real.write_text(json.dumps({"cat": ["private words"], "dog": ["more"]}))
    opened = []
    real_open = open

    def watch(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", watch)
    ctx = SimpleNamespace(settings=Settings(hosted=True, **{k: v for k, v in HOSTED_DEFAULTS.items()}),
                          model=lambda: object(),
                          embed_choice=lambda **kw: (_ for _ in ()).throw(ValueError("no images")))
    views = [
        prompt_lab_tab.evaluate_prompts(ctx, [["a {}"]], "", None, "cat\ndog", typed, None, "Descriptions",
                                        "Equal average", 1, False, None, None)
        for typed in (str(real), str(tmp_path / "nope.json"))
    ]
    assert views[0].summary == views[1].summary and "not valid JSON" in views[0].summary
    assert "private" not in views[0].summary and "cat" not in views[0].summary
    assert str(real) not in opened


def test_gap_captions_are_bounded_by_the_requests_limits(tmp_path):
    """The Modality gap's captions (a CSV or .txt files beside the images) pass the same gate: a caption
    over max_text_chars is left out with a note, and more captions than max_prompts are refused before
    the model sees one."""
    import numpy as np

    from explorer.inputs.sources import Embedded
    from explorer.science.gap_run import caption_texts, captions_for

    paths = []
    for i, caption in enumerate(["a red", "b blue", "far too long a caption"]):
        (tmp_path / f"{i}.png").write_bytes(b"x")
        (tmp_path / f"{i}.txt").write_text(caption)
        paths.append(tmp_path / f"{i}.png")
    images = Embedded([p.name for p in paths], paths, np.eye(3, dtype=np.float32), root=tmp_path)

    class NoEncoding:
        def encode_texts(self, texts):
            raise AssertionError("encoded past the gate")

    found = captions_for(images, None, SMALL)
    assert [found.caption_of(p) for p in paths] == ["a red", None, None]
    assert any("limit of 5" in problem for problem in found.problems)
    roomy = TextLimits(max_items=10, max_item_chars=100, max_bytes=4000, max_json_depth=3, max_prompts=2)
    with pytest.raises(Refused,
                       match=r"Captions to encode: 3 texts is more than the limit of 2 texts.*--max-prompts"):
        caption_texts(NoEncoding(), images, captions_for(images, None, roomy), roomy)
