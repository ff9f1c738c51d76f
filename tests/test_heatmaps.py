"""Image x text similarity matrices, patch-level maps, overlays and the heatmap CLI."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.science.heatmaps import (
    PatchMap,
    PatchMapUnsupported,
    check_patch_support,
    colorize,
    display_values,
    overlay,
    patch_map,
    patch_maps,
    patch_tokens,
    similarity_matrix,
    view_box,
)
from tests.helpers import encode_pil
from tests.shapes import draw_pair, draw_shape


def test_similarity_matrix_is_cosines_and_per_image_softmax():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(3, 8)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt = rng.normal(size=(5, 8)).astype(np.float32)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    sim = similarity_matrix(img, txt, logit_scale=50.0)
    np.testing.assert_allclose(sim.cosines, img @ txt.T, atol=1e-6)
    logits = 50.0 * img @ txt.T
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(sim.probabilities, expected / expected.sum(1, keepdims=True), atol=1e-6)
    with pytest.raises(ValueError, match="differ in size"):
        similarity_matrix(img, txt[:, :4], 1.0)


def test_run_similarity_names_its_rows_and_says_what_it_could_not_read(shapes_model, tmp_path):
    from explorer.science.heatmaps import NoImagesRead, run_similarity
    from explorer.science.prompts import ParsedLabels
    from tests.shapes import draw_shape

    red, bad = tmp_path / "red.png", tmp_path / "bad.png"
    draw_shape("red", "circle", size=64, rng=1).save(red)
    bad.write_bytes(b"not an image")
    texts = ParsedLabels(["a red circle", "a blue square"], ["dropped something"])
    run = run_similarity(shapes_model, [red, red, bad], texts)
    assert run.matrix.names == [str(red), f"{red} (2)"] and run.matrix.texts == texts.labels
    assert [str(p) for p in run.paths] == [str(red)] * 2 and run.roots == [None, None] and run.sampled == 0
    assert [f.path for f in run.failures] == [str(bad)] and run.notes == ["dropped something"]
    np.testing.assert_allclose(run.matrix.cosines[0], run.matrix.cosines[1], atol=1e-6)
    named = run_similarity(shapes_model, [red], texts, names=["mine"])
    assert named.matrix.names == ["mine"]
    with pytest.raises(NoImagesRead, match="none of the images could be read") as caught:
        run_similarity(shapes_model, [bad], texts)
    assert [f.path for f in caught.value.failures] == [str(bad)]
    with pytest.raises(ValueError, match="at least one text"):
        run_similarity(shapes_model, [red], ParsedLabels([]))


def test_similarity_heatmap_states_its_own_scale():
    from explorer.app import plots

    cos = np.array([[0.1, 0.3], [0.2, 0.25]])
    prob = np.array([[0.2, 0.8], [0.4, 0.6]])
    fig = plots.similarity_heatmap(["a.png", "b.png"], ["cat", "dog"], cos, prob, "cosine")
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0.1, 0.3)
    assert "0.100 to 0.300" in fig.layout.title.text
    fig = plots.similarity_heatmap(["a.png", "b.png"], ["cat", "dog"], cos, prob, "probability")
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0, 1)


def test_patch_tokens_equal_open_clips_own_intermediates(random_vit):
    """Our forward pass must be the model's: compare with open_clip's forward_intermediates."""
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 224, 224)
    tokens, _ = patch_tokens(random_vit, pixels)
    visual = random_vit.model.visual
    with torch.inference_mode():
        out = visual.forward_intermediates(pixels, indices=1, normalize_intermediates=True, output_fmt="NLC")
        ref = torch.nn.functional.normalize(out["image_intermediates"][-1] @ visual.proj, dim=-1)
    assert tokens.shape == (2, 7, 7, 512)
    torch.testing.assert_close(tokens.reshape(2, 49, 512), ref, atol=1e-5, rtol=1e-5)


def test_value_path_is_the_last_attention_with_each_token_attending_to_itself(random_vit):
    """method="value" must equal the last block's own attention run with a diagonal mask."""
    torch.manual_seed(2)
    pixels = torch.randn(1, 3, 224, 224)
    visual = random_vit.model.visual
    last = visual.transformer.resblocks[-1]
    with torch.inference_mode():
        n = len(visual.transformer.resblocks)
        out = visual.forward_intermediates(pixels, indices=[n - 2], output_fmt="NLC",
                                           output_extra_tokens=True, intermediates_only=True)
        x = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)
        eye = torch.full((x.shape[1], x.shape[1]), float("-inf"))
        eye.fill_diagonal_(0.0)
        own = last.ls_1(last.attention(q_x=last.ln_1(x), attn_mask=eye))
        ref = torch.nn.functional.normalize(visual.ln_post(own[:, 1:]) @ visual.proj, dim=-1)
    tokens, _ = patch_tokens(random_vit, pixels, method="value")
    torch.testing.assert_close(tokens.reshape(1, 49, 512), ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(tokens, patch_tokens(random_vit, pixels, method="tokens")[0], atol=1e-2)
    with pytest.raises(ValueError, match="unknown patch-map method"):
        patch_tokens(random_vit, pixels, method="gradcam")


def test_patch_map_on_a_wide_image_covers_the_centre_crop(random_vit):
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (100, 160, 3), dtype=np.uint8))
    pmap = patch_map(random_vit, image, "a cat")
    assert pmap.grid.shape == (7, 7)
    assert pmap.box == (30.0, 0.0, 130.0, 100.0)  # 'shortest' resize + centre crop
    up = pmap.upsampled()
    assert up.shape == (100, 160)
    assert np.isnan(up[:, :30]).all() and np.isnan(up[:, 130:]).all() and not np.isnan(up[:, 30:130]).any()
    data = json.loads(json.dumps(pmap.as_dict()))
    assert len(data["grid"]) == 7 and data["grid"][0][0] == pytest.approx(float(pmap.grid[0, 0]), abs=1e-6)
    whole = encode_pil(random_vit, [image])[0] @ random_vit.encode_texts(["a cat"])[0]
    assert pmap.image_cosine == pytest.approx(float(whole), abs=1e-5)


def test_view_box_follows_the_resize_mode():
    assert view_box((200, 100), "shortest") == (50.0, 0.0, 150.0, 100.0)
    assert view_box((200, 100), "longest") == (0.0, -50.0, 200.0, 150.0)
    assert view_box((200, 100), "squash") == (0.0, 0.0, 200.0, 100.0)


def test_upsampling_hits_cell_centres_and_keeps_constants():
    grid = np.arange(4, dtype=np.float32).reshape(2, 2)
    pmap = PatchMap("t", grid, 0.0, (0, 0, 4, 4), (4, 4))
    up = pmap.upsampled()
    assert up[0, 0] == pytest.approx(0.0) and up[3, 3] == pytest.approx(3.0)  # clamped corners
    assert up[0, 1] < up[0, 2]  # interpolates between cells
    flat = PatchMap("t", np.full((3, 3), 0.2, np.float32), 0.0, (0, 0, 9, 9), (9, 9)).upsampled((18, 18))
    np.testing.assert_allclose(flat, 0.2, atol=1e-6)


def test_display_scales():
    v = np.array([[0.1, 0.2], [0.3, 0.5]])
    np.testing.assert_allclose(display_values(v, "minmax"), [[0, 0.25], [0.5, 1]])
    rel = display_values(v, "relative")
    assert rel[np.unravel_index(np.argmax(np.abs(v - v.mean())), v.shape)] in (0.0, 1.0)
    assert display_values(v - 5, "relative") == pytest.approx(rel)  # only differences matter
    np.testing.assert_allclose(display_values(np.full((2, 2), 3.0), "minmax"), 0.5)
    with pytest.raises(ValueError):
        display_values(v, "log")


def test_overlay_blends_with_the_given_opacity():
    image = Image.new("RGB", (16, 8), (200, 100, 50))
    pmap = PatchMap("t",
                    np.array([[0.0, 1.0]], np.float32).repeat(2, 0), 0.0, view_box((16, 8), "shortest"),
                    (16, 8))
    untouched = np.asarray(overlay(image, pmap, opacity=0.0))
    assert untouched.shape == (8, 16, 3)
    np.testing.assert_array_equal(untouched[:, 4:12], np.asarray(image)[:, 4:12])
    assert (untouched[:, :4] < np.asarray(image)[:, :4]).all()  # outside the model's view: dimmed
    full = np.asarray(overlay(image, pmap, opacity=1.0, scale="minmax")).astype(int)
    assert full[:, 4].sum() < full[:, 11].sum()  # low end dark, high end bright (inferno)
    with pytest.raises(ValueError, match="opacity"):
        overlay(image, pmap, opacity=1.5)


def _fake(visual):
    return SimpleNamespace(model=SimpleNamespace(visual=visual), identifier="test-model")


def test_towers_without_patch_maps_say_so():
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    resnet = ModifiedResNet(layers=(1, 1, 1, 1), output_dim=16, heads=2, image_size=32, width=8)
    with pytest.raises(PatchMapUnsupported, match="ModifiedResNet, not an open_clip ViT"):
        check_patch_support(_fake(resnet))
    pooled = VisionTransformer(image_size=32, patch_size=8, width=32, layers=1, heads=2, mlp_ratio=2.0,
                               attentional_pool=True, attn_pooler_queries=4, attn_pooler_heads=2,
                               output_dim=16)
    with pytest.raises(PatchMapUnsupported, match="attentional pooler"):
        check_patch_support(_fake(pooled))
    plain = VisionTransformer(image_size=32, patch_size=8, width=32, layers=1, heads=2, mlp_ratio=2.0,
                              output_dim=16)
    check_patch_support(_fake(plain))  # a plain ViT is fine


# ---- with the project's shapes model ------------------------------------------------------------
def _localisation_wins(model, target, other, text, method="tokens", n=24, size=64):
    """Fraction of two-object images (target on alternating sides) where the map for `text` is
    higher on average over the target's box than over the other object's box."""
    rng = np.random.default_rng(11)
    images, boxes = [], []
    for i in range(n):
        if i % 2:
            image, target_box, other_box = draw_pair(target, other, size=size, rng=rng)
        else:
            image, other_box, target_box = draw_pair(other, target, size=size, rng=rng)
        images.append(image)
        boxes.append((target_box, other_box))
    wins = 0
    for pmap, pair in zip(patch_maps(model, images, text, method), boxes):
        up = pmap.upsampled()
        over = [up[y0:y1 + 1, x0:x1 + 1].mean() for x0, y0, x1, y1 in pair]
        wins += over[0] > over[1]
    return wins / n


@pytest.mark.parametrize("method", ["tokens", "value"])
def test_patch_map_finds_the_object_the_text_names(shapes_model, method):
    # Both directions on the same kind of image: a model with random weights prefers one colour
    # whatever the text says, so it passes at most one of these two.
    assert _localisation_wins(shapes_model, ("red", "circle"), ("blue", "square"), "a red circle",
                              method) >= 0.75
    assert _localisation_wins(shapes_model, ("blue", "square"), ("red", "circle"), "a blue square",
                              method) >= 0.75


def test_heatmap_cli_writes_overlay_and_grid(shapes_model_dir, tmp_path, capsys):
    from explorer.cli import main

    image, _, _ = draw_pair(("red", "circle"), ("blue", "square"), size=64)
    image.save(tmp_path / "pair.png")
    out = tmp_path / "overlay.png"
    code = main(["heatmap", str(tmp_path / "pair.png"), "--text", "a red circle", "--out", str(out), "--json",
                 "--model", f"local-dir:{shapes_model_dir}", "--device", "cpu"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["grid_size"] == [8, 8] and len(data["grid"]) == 8 and data["method"] == "tokens"
    assert data["min"] <= data["mean"] <= data["max"]
    with Image.open(out) as written:
        assert written.size == (64, 64)


def test_heatmap_cli_bad_input(shapes_model_dir, tmp_path, capsys):
    from explorer.cli import main

    (tmp_path / "broken.png").write_bytes(b"not a png")
    model = ["--model", f"local-dir:{shapes_model_dir}", "--device", "cpu"]
    assert main(["heatmap", str(tmp_path / "broken.png"), "--text", "x", "--json", *model]) == 1
    assert "not an image" in capsys.readouterr().err
    assert main(["heatmap", str(tmp_path / "broken.png"), "--text", "x", *model]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert main(["heatmap", "x.png", "--text", "x", "--out", str(tmp_path / "no" / "o.png"), *model]) == 2
    assert "does not exist" in capsys.readouterr().err


def _count_decodes(monkeypatch) -> list:
    """Every image decode (images.load_image and images.prepare, wherever they were imported) is
    recorded in the returned list."""
    from explorer.app.ui import heatmaps_tab
    from explorer.embed import images
    from explorer.inputs import sources

    calls = []
    for module, name in ((images, "load_image"), (images, "prepare"), (heatmaps_tab, "load_image"),
                         (sources, "prepare")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, **k: calls.append(a[:1]) or _real(*a, **k))
    return calls


def test_another_text_for_a_patch_map_neither_decodes_nor_encodes_the_image(shapes_model, tmp_path,
                                                                            monkeypatch):
    """Issue 29: after a first map, a map of the same image for another text re-uses the image's patch
    tokens (kept in the map state): one text encoded, no image decoded, no pass through the image tower;
    and it is the map that text would get from scratch."""
    from explorer.app.ui import heatmaps_tab
    from tests.helpers import local_context

    ctx = local_context(shapes_model, tmp_path, tmp_path)
    path = tmp_path / "pair.png"
    draw_pair(("red", "circle"), ("blue", "square"), size=64, rng=3)[0].save(path)
    items = heatmaps_tab.upload_items([str(path)])
    scale = "relative to the map's mean"
    decodes = _count_decodes(monkeypatch)
    images_before, texts_before = shapes_model.image_encodes, shapes_model.text_encodes
    _, first = heatmaps_tab.compute_patch_map(ctx, items, "pair.png", "a red circle", "tokens", scale)
    assert first is not None and len(decodes) == 1 and shapes_model.image_encodes == images_before + 1
    images_before, texts_before, decodes[:] = shapes_model.image_encodes, shapes_model.text_encodes, []
    info, second = heatmaps_tab.compute_patch_map(ctx, items, "pair.png", "a blue square zzq", "tokens",
                                                  scale, first)
    assert second is not None and "a blue square zzq" in info
    assert decodes == [] and shapes_model.image_encodes == images_before
    assert shapes_model.text_encodes == texts_before + 1     # the new text, and nothing else
    assert second.image is first.image and second.tokens is first.tokens
    fresh = patch_map(shapes_model, heatmaps_tab.load_image(path), "a blue square zzq")
    np.testing.assert_allclose(second.pmap.grid, fresh.grid, atol=1e-5)
    assert second.pmap.image_cosine == pytest.approx(fresh.image_cosine, abs=1e-5)
    # another method, or the file changed on disk, is a new pass through the tower
    images_before = shapes_model.image_encodes
    _, other = heatmaps_tab.compute_patch_map(ctx, items, "pair.png", "a red circle", "value-only", scale,
                                              second)
    assert other.tokens is not second.tokens and shapes_model.image_encodes == images_before + 1
    draw_shape("green", "triangle", size=80, rng=4).save(path)
    _, changed = heatmaps_tab.compute_patch_map(ctx, items, "pair.png", "a red circle", "value-only", scale,
                                                other)
    assert changed.tokens is not other.tokens and changed.pmap.image_size == (80, 80)


def test_a_text_edit_on_the_similarity_matrix_encodes_only_the_new_text(shapes_model, tmp_path, monkeypatch):
    """The matrix's images come from the app's embedding cache: another set of texts over the same
    images decodes and encodes no image."""
    from explorer.app.ui import heatmaps_tab
    from tests.helpers import local_context

    ctx = local_context(shapes_model, tmp_path, tmp_path)
    paths = []
    for i, (color, shape) in enumerate((("red", "circle"), ("blue", "square"))):
        paths.append(str(tmp_path / f"{i}.png"))
        draw_shape(color, shape, size=48, rng=i).save(paths[-1])
    first = heatmaps_tab.compute_matrix(ctx, paths, "a red circle", None, 12, "Cosine")
    assert first.state is not None, first.summary
    decodes = _count_decodes(monkeypatch)
    images_before, texts_before = shapes_model.image_encodes, shapes_model.text_encodes
    again = heatmaps_tab.compute_matrix(ctx, paths, "a red circle\na blue square qqz", None, 12, "Cosine")
    assert again.state.texts == ["a red circle", "a blue square qqz"]
    assert decodes == [] and shapes_model.image_encodes == images_before
    assert shapes_model.text_encodes == texts_before + 1


def test_colouring_by_the_look_up_table_stays_within_one_level_of_the_colour_map():
    from explorer.science.heatmaps import _interpolated

    values = np.random.default_rng(3).random((50, 60))
    values[0, 0], values[0, 1], values[0, 2] = 0.0, 1.0, np.nan
    exact = _interpolated(np.nan_to_num(values))
    colours = colorize(values)
    assert colours.dtype == np.uint8 and colours.shape == (50, 60, 3)
    assert np.abs(colours.astype(int) - exact.astype(int)).max() <= 1
    assert tuple(colours[0, 0]) == (0, 0, 4) and tuple(colours[0, 1]) == (252, 255, 164)
    assert tuple(colours[0, 2]) == (0, 0, 4)  # NaN: the dark end
