"""The patch-map methods "maskclip" and "value-only", against direct transcriptions of their definitions.

MaskCLIP (Zhou, Loy, Dai, "Extract Free Dense Labels from CLIP", ECCV 2022). The authors' code,
github.com/chongzhou96/MaskCLIP (read in its fork volgachen/MaskCLIP), mmseg/models/backbones/vit.py:
in the last TransformerEncoderLayer, with x its input,

    y = norm1(x); y = F.linear(y, in_proj_weight, in_proj_bias)      # q, k and v
    q, k, v = (F.linear(part, out_proj.weight, out_proj.bias) for each third)
    v += x                                                            # the block's residual
    v = ffn(norm2(v), identity=v)                                     # MLP with its residual
    v = norm1(v)   # VisionTransformer.forward: the final norm (final_norm=True)

and mmseg/models/decode_heads/maskclip_head.py projects v with CLIP's visual projection (a 1x1
conv without bias), L2-normalises it and takes the dot product with the text embeddings. q and k
are thrown away. The transcriptions below use torch ops on the block's weights directly.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from explorer.science.heatmaps import METHODS, patch_map
from tests.shapes import draw_pair

TEXT = "a red circle"


def _last_block_input(model, image):
    """The input of the tower's last block, from open_clip's own forward_intermediates (not our hook)."""
    visual = model.model.visual
    pixels = model.preprocess(image)[None]
    n = len(visual.transformer.resblocks)
    with torch.inference_mode():
        out = visual.forward_intermediates(pixels, indices=[n - 2], output_fmt="NLC",
                                           output_extra_tokens=True, intermediates_only=True)
    return torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)


def _ln(x, norm):
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _to_map(model, features, grid_shape):
    """ln_post, the visual projection, L2 normalisation, dot product with the normalised text."""
    visual = model.model.visual
    feats = F.normalize(_ln(features[0, 1:], visual.ln_post) @ visual.proj, dim=-1)
    text = torch.from_numpy(model.encode_texts([TEXT])[0])
    return (feats @ text).reshape(grid_shape).numpy()


def _value(block, x):
    """v = out_proj(v_proj(norm1(x))): the third of in_proj that makes the values, then out_proj."""
    width = x.shape[-1]
    attn = block.attn
    qkv = _ln(x, block.ln_1) @ attn.in_proj_weight.T + attn.in_proj_bias
    v = qkv[..., 2 * width:]
    return v @ attn.out_proj.weight.T + attn.out_proj.bias


def maskclip_reference(model, image, grid_shape):
    block = model.model.visual.transformer.resblocks[-1]
    with torch.inference_mode():
        x = _last_block_input(model, image)
        v = _value(block, x) + x                                        # v += x
        hidden = block.mlp.gelu(_ln(v, block.ln_2) @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias)
        v = v + (hidden @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias)   # ffn(norm2(v), identity=v)
        return _to_map(model, v, grid_shape)


def value_only_reference(model, image, grid_shape):
    block = model.model.visual.transformer.resblocks[-1]
    with torch.inference_mode():
        return _to_map(model, _value(block, _last_block_input(model, image)), grid_shape)


@pytest.fixture(scope="module")
def image():
    return draw_pair(("red", "circle"), ("blue", "square"), size=64, rng=3)[0]


def test_the_shapes_model_has_no_layerscale(shapes_model):
    """The transcriptions leave LayerScale out; they are only exact if the blocks have none."""
    block = shapes_model.model.visual.transformer.resblocks[-1]
    assert isinstance(block.ls_1, torch.nn.Identity) and isinstance(block.ls_2, torch.nn.Identity)


def test_maskclip_map_equals_the_authors_definition(shapes_model, image):
    pmap = patch_map(shapes_model, image, TEXT, "maskclip")
    assert pmap.method == "maskclip"
    ref = maskclip_reference(shapes_model, image, pmap.grid.shape)
    torch.testing.assert_close(torch.from_numpy(pmap.grid), torch.from_numpy(ref), atol=1e-5, rtol=1e-5)


def test_value_only_map_equals_its_definition_and_differs_from_maskclip(shapes_model, image):
    pmap = patch_map(shapes_model, image, TEXT, "value-only")
    assert pmap.method == "value-only"
    ref = value_only_reference(shapes_model, image, pmap.grid.shape)
    torch.testing.assert_close(torch.from_numpy(pmap.grid), torch.from_numpy(ref), atol=1e-5, rtol=1e-5)
    maskclip = patch_map(shapes_model, image, TEXT, "maskclip").grid
    assert abs(maskclip - pmap.grid).max() > 1e-2          # the residual and MLP change the map
    tokens = patch_map(shapes_model, image, TEXT, "tokens").grid
    assert abs(maskclip - tokens).max() > 1e-2             # and dropping q/k changes it too


def test_old_name_value_is_value_only_and_unknown_names_are_refused(shapes_model, image):
    assert METHODS == ("tokens", "maskclip", "value-only")
    old = patch_map(shapes_model, image, TEXT, "value")
    assert old.method == "value-only"
    torch.testing.assert_close(torch.from_numpy(old.grid),
                               torch.from_numpy(patch_map(shapes_model, image, TEXT, "value-only").grid))
    with pytest.raises(ValueError, match="maskclip, value-only"):
        patch_map(shapes_model, image, TEXT, "clearclip")


def test_heatmap_cli_takes_maskclip(shapes_model_dir, image, tmp_path, capsys):
    import json

    from explorer.cli import main

    image.save(tmp_path / "pair.png")
    code = main(["heatmap", str(tmp_path / "pair.png"), "--text", TEXT, "--json", "--method", "maskclip",
                 "--model", f"local-dir:{shapes_model_dir}", "--device", "cpu"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "maskclip"


def test_maskclip_map_finds_the_object_the_text_names(shapes_model):
    """Both directions on the same kind of image (a map that prefers one colour whatever the text
    says passes at most one)."""
    from tests.test_heatmaps import _localisation_wins

    assert _localisation_wins(shapes_model, ("red", "circle"), ("blue", "square"), "a red circle",
                              "maskclip") >= 0.75
    assert _localisation_wins(shapes_model, ("blue", "square"), ("red", "circle"), "a blue square",
                              "maskclip") >= 0.75
