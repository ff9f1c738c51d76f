"""Model cost (explorer/science/model_cost.py) against open_clip's own model profile
(docs/model_profile.csv, vendored as assets/model_profile.csv), made by open_clip's profiler with
torch's FlopCounterMode on one image and one text of context_length tokens, batch 1."""
from __future__ import annotations

import csv

import pytest

from explorer.science import model_cost as cost_module
from explorer.science.model_cost import (
    COUNTED_SOURCE,
    PROFILE_FILE,
    PROFILE_SOURCE,
    count_gflops,
    model_cost,
    profile_row,
)

GFLOPS_TOLERANCE = 0.01   # the profile's numbers are rounded to 0.01 GFLOPs (±0.005), plus a little
MPARAMS_TOLERANCE = 0.005  # the profile's parameter counts are rounded to 0.01 million


def test_the_vendored_profile_is_open_clips_table():
    with PROFILE_FILE.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 85 and list(rows[0]) == [
        "model", "image_size", "image_width", "text_width", "embed_dim", "mparams", "image_mparams",
        "text_mparams", "gflops", "image_gflops", "text_gflops"]
    row = profile_row("ViT-B-32")
    numbers = (row["image_size"], row["mparams"], row["image_gflops"], row["text_gflops"])
    assert numbers == (224, 151.28, 8.82, 5.96)
    assert profile_row("local-dir:/nowhere") is None and profile_row("no-such-model") is None
    assert (PROFILE_FILE.parent / "model_profile.SOURCE.md").is_file()


def test_a_profiled_architecture_takes_the_profile_and_counts_its_parameters(random_vit):
    cost = model_cost(random_vit)
    net = random_vit.model
    assert cost.params == sum(p.numel() for p in net.parameters())
    assert cost.image_params == sum(p.numel() for p in net.visual.parameters())
    rest = net.logit_scale.numel()   # the only parameter of CLIP in neither tower
    assert cost.image_params + cost.text_params + rest == cost.params
    row = profile_row("ViT-B-32")
    for counted, listed in ((cost.params, "mparams"), (cost.image_params, "image_mparams"),
                            (cost.text_params, "text_mparams")):
        assert abs(counted / 1e6 - row[listed]) <= MPARAMS_TOLERANCE, listed
    assert (cost.image_gflops, cost.text_gflops, cost.gflops_source) == (8.82, 5.96, PROFILE_SOURCE)
    assert cost.weight_bytes == sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))
    assert cost.peak_gpu_bytes is None   # CPU
    assert cost.as_dict()["params"] == cost.params


def test_counting_vit_b_32_as_open_clips_profiler_did_gives_its_profile_numbers(random_vit):
    """The count (random weights, CPU) agrees with the profile (made on CUDA) image and text apart."""
    image, text, source = count_gflops(random_vit)
    row = profile_row("ViT-B-32")
    assert abs(image - row["image_gflops"]) <= GFLOPS_TOLERANCE, image
    assert abs(text - row["text_gflops"]) <= GFLOPS_TOLERANCE, text
    assert source == COUNTED_SOURCE.format(image="224x224", tokens=77)


def test_a_model_the_profile_lacks_is_counted_once(shapes_model_dir, monkeypatch):
    from explorer.embed.model import load_model

    model = load_model(f"local-dir:{shapes_model_dir}", device="cpu")   # its own object: an empty cache
    calls = []
    real = cost_module._count_flops
    monkeypatch.setattr(cost_module, "_count_flops", lambda m: calls.append(m) or real(m))
    cost = model_cost(model)
    assert cost.image_gflops > 0 and cost.text_gflops > 0
    assert cost.gflops_source.startswith("counted (torch FlopCounterMode")
    assert f"of {model.context_length} tokens" in cost.gflops_source
    assert cost.params == sum(p.numel() for p in model.model.parameters()) and cost.text_params > 0
    again = model_cost(model)
    assert len(calls) == 1
    assert (again.image_gflops, again.text_gflops) == (cost.image_gflops, cost.text_gflops)


def test_a_count_that_fails_says_why_and_is_kept(shapes_model, monkeypatch):
    def broken(model):
        raise RuntimeError("no forward")

    monkeypatch.setattr(cost_module, "_counted", type(cost_module._counted)())
    monkeypatch.setattr(cost_module, "_count_flops", broken)
    why = "unavailable: counting FLOPs failed (RuntimeError: no forward)"
    assert count_gflops(shapes_model) == (None, None, why)
    assert model_cost(shapes_model).gflops_source.startswith("unavailable:")


@pytest.mark.parametrize("name", ["ViT-B-16", "RN50", "ViT-B-16-SigLIP"])
def test_profile_rows_are_numbers(name):
    row = profile_row(name)
    assert row["image_gflops"] + row["text_gflops"] == pytest.approx(row["gflops"], abs=0.02)
