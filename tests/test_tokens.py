"""The token budget: true token counts, cut prompts named with their count and the words they lose."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from explorer.embed.tokens import cut_texts, cut_warnings, kept_and_lost, longest
from explorer.science.prompts import fill
from tests.shapes import CLASSES, make_labelled_folder

ROOT = Path(__file__).resolve().parents[1]
# "a photo of the" (4) + 70 x "very" + "small blue circle." (4) + start + end = 80 tokens > 77.
LONG = "a photo of the " + "very " * 70 + "small blue {}."


def test_context_length_comes_from_the_model_config(shapes_model, shapes_model_dir):
    config = json.loads((shapes_model_dir / "open_clip_config.json").read_text())
    assert shapes_model.context_length == config["model_cfg"]["text_cfg"]["context_length"] == 77


def test_token_counts_are_the_length_before_the_cut(shapes_model):
    tokenizer = shapes_model.tokenizer
    texts = ["a photo of a red circle.", LONG.format("circle"), ""]
    expected = [len(tokenizer.encode(t)) + 2 for t in texts]
    assert shapes_model.token_counts(texts) == expected
    assert expected[1] == 80 and expected[2] == 2
    # open_clip's own tensor shows the cut: 77 ids, the last one forced to end-of-text
    assert int((tokenizer([texts[1]])[0] != 0).sum()) == 77


def test_encoding_reuses_the_counted_ids_and_matches_open_clip_exactly(shapes_model):
    texts = ["a photo of a red circle.", LONG.format("circle"), "a blue square" * 30]
    assert torch.equal(shapes_model._tokenize(texts), shapes_model.tokenizer(texts))
    shapes_model.token_counts(["never encoded before, counted first."])
    before = len(shapes_model._token_cache)
    shapes_model.encode_texts(["never encoded before, counted first."])
    assert len(shapes_model._token_cache) == before  # the encode found the ids already there


def test_a_cut_prompt_is_named_with_its_count_and_what_is_lost(shapes_model):
    prompt = LONG.format("circle")
    kept, lost = kept_and_lost(shapes_model, prompt)
    assert lost == "blue circle."            # 75 content tokens fit: the cut falls after "small"
    assert kept.endswith("very small") and kept + " " + lost == " ".join(prompt.split())
    [cut] = cut_texts(shapes_model, [prompt, "a photo of a red circle.", prompt])
    assert (cut.tokens, cut.context_length) == (80, 77)
    [warning] = cut_warnings(shapes_model, [prompt, "a photo of a red circle."])
    assert prompt in warning and "80 tokens" in warning and "never sees “blue circle.”" in warning


def test_short_prompts_give_no_warning(shapes_model):
    assert cut_warnings(shapes_model, ["a photo of a red circle.", "a {} on a dark background."]) == []
    assert longest(shapes_model,
                   [["a red circle", "a photo of a red circle."], []]) == [9, 0]  # 6 words, ".", start, end


def test_prompt_lab_reports_each_slot_and_warns_only_for_the_long_template(shapes_model, tmp_path):
    from explorer.inputs.sources import embed_folder
    from explorer.science.prompt_lab import run_lab

    make_labelled_folder(tmp_path, CLASSES[:3], 2, size=32, seed=1)
    images = embed_folder(shapes_model, tmp_path, labelled=True)
    report = run_lab(shapes_model, images, ["a photo of a {}.", LONG])
    names = images.class_names
    assert report.context_length == 77
    assert report.slot_tokens[0] == max(
        shapes_model.token_counts([fill("a photo of a {}.", n) for n in names]))
    assert report.slot_tokens[1] > 77
    assert len(report.warnings) == len(names)  # one per filled prompt of the long template
    assert all("a photo of the very" in w and "tokens, over the model's context of 77" in w
               for w in report.warnings)
    assert report.as_dict()["warnings"] == report.warnings
    short = run_lab(shapes_model, images, ["a photo of a {}."])
    assert short.warnings == [] and short.as_dict()["warnings"] == []


@pytest.mark.timeout(300)
def test_classify_command_warns_in_json_and_on_stderr(shapes_model_dir, tmp_path):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
    templates = tmp_path / "t.txt"
    templates.write_text("a photo of a {}.\n" + LONG + "\n")
    command = [
        sys.executable, "-m", "explorer", "classify",
        str(image), "--labels", "red circle, blue square", "--templates",
        str(templates), "--model", f"local-dir:{shapes_model_dir}", "--device", "cpu", "--json"
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert len(doc["warnings"]) == 2 and all("tokens, over the model's context of 77" in w
                                             for w in doc["warnings"])
    assert "a photo of the very" in done.stderr and "warning:" in done.stderr
    templates.write_text("a photo of a {}.\n")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert json.loads(done.stdout)["warnings"] == [] and "warning:" not in done.stderr
