"""The model layer: every identifier form, exact length-cut text encoding, caches, clear load errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from explorer.embed.model import ModelLoadError, ModelSlot, load_model
from explorer.science.prompts import load_template_set

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 1, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _write_local_dir(folder, model_cfg, weights=True):
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    if weights:
        torch.manual_seed(1)
        model = open_clip.create_model(f"local-dir:{folder}")
        torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def _stock_text(model, texts):
    with torch.inference_mode():
        features = model.model.encode_text(model.tokenizer(texts))
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def test_length_cut_text_path_equals_stock_encode_text(random_vit):
    assert random_vit.uses_text_cut
    long_text = "a photo of " + " ".join(["a very very large dog"] * 30)  # longer than 77 tokens
    texts = [t.replace("{}", "golden retriever") for t in load_template_set("openai")] + [long_text, "x", ""]
    ours = random_vit.encode_texts(texts)
    stock = _stock_text(random_vit, texts)
    assert ours.dtype == np.float32 and ours.shape == (len(texts), 512)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert float((1 - (ours * stock).sum(axis=1)).max()) < 1e-5


def test_text_cache_encodes_only_new_texts(random_vit):
    before = random_vit.text_encodes
    first = random_vit.encode_texts(["a photo of a zebra.", "a photo of a yak."])
    assert random_vit.text_encodes == before + 2
    again = random_vit.encode_texts(["a photo of a yak.", "a photo of a zebra.", "a photo of an okapi."])
    assert random_vit.text_encodes == before + 3  # only the okapi was new
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[1], first[0])


def test_image_encoding_is_normalised_and_counted(random_vit):
    from PIL import Image

    images = [Image.new("RGB", (64, 48), c) for c in ["red", "blue", "red"]]
    before = random_vit.image_encodes
    out = random_vit.encode_pixels(torch.stack([random_vit.preprocess(im) for im in images]))
    assert random_vit.image_encodes == before + 3
    assert out.shape == (3, 512) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[0], out[2], atol=1e-6)
    assert not np.allclose(out[0], out[1])


def test_model_exposes_identity(random_vit):
    assert random_vit.identifier == "ViT-B-32"
    assert random_vit.embed_dim == 512 and random_vit.image_size == 224
    assert random_vit.logit_scale == pytest.approx(1 / 0.07, rel=1e-4)
    identity = random_vit.identity.as_dict()
    assert identity["name"] == "ViT-B-32" and identity["embed_dim"] == 512
    assert identity["preprocess"][2] == "bicubic"


def test_checkpoint_file_as_pretrained_and_local_dir_give_same_embeddings(tmp_path):
    import open_clip

    folder = _write_local_dir(tmp_path / "tiny", TINY_CFG)
    from_dir = load_model(f"local-dir:{folder}", device="cpu")
    # The same weights through "built-in name + checkpoint file": register the config under a name first.
    (tmp_path / "tiny-test-arch.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(str(tmp_path / "tiny-test-arch.json"))
    cfg_name = "tiny-test-arch"
    assert cfg_name in open_clip.list_models()
    from_file = load_model(cfg_name, str(folder / "open_clip_pytorch_model.bin"), device="cpu")
    texts = ["a red circle", "a blue square"]
    np.testing.assert_allclose(from_dir.encode_texts(texts), from_file.encode_texts(texts), atol=1e-6)
    assert from_dir.identifier.startswith("local-dir:") and from_dir.pretrained is None


def test_text_tower_without_causal_mask_falls_back_to_stock_path(tmp_path):
    cfg = json.loads(json.dumps(TINY_CFG))
    cfg["text_cfg"].update({"no_causal_mask": True, "pool_type": "last"})
    folder = _write_local_dir(tmp_path / "bidir", cfg)
    model = load_model(f"local-dir:{folder}", device="cpu")
    assert not model.uses_text_cut
    texts = ["a cat", "a photo of a big dog"]
    np.testing.assert_allclose(model.encode_texts(texts), _stock_text(model, texts), atol=1e-6)


@pytest.mark.parametrize("make, expected", [
    (lambda p: ("local-dir:" + str(p / "nowhere"), None), "folder not found"),
    (lambda p:
     ("local-dir:" + str(_write_local_dir(p / "noweights", TINY_CFG, weights=False)), None), "no weights"),
    (lambda p: ("ViT-B-32-typo", None), "not an open_clip model name"),
    (lambda p: ("ViT-B-32", "no_such_tag"), "neither a checkpoint file nor a pretrained tag"),
    (lambda p: ("hf-hub:justonename", None), "hf-hub:organisation/repository"),
])
def test_bad_identifiers_fail_with_a_clear_message(tmp_path, make, expected):
    name, pretrained = make(tmp_path)
    with pytest.raises(ModelLoadError, match=expected):
        load_model(name, pretrained, device="cpu")


def test_corrupt_config_and_corrupt_weights_are_reported(tmp_path):
    bad_json = tmp_path / "badjson"
    bad_json.mkdir()
    (bad_json / "open_clip_config.json").write_text("{not json")
    (bad_json / "open_clip_pytorch_model.bin").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match="could not load local-dir:"):
        load_model(f"local-dir:{bad_json}", device="cpu")
    folder = _write_local_dir(tmp_path / "badweights", TINY_CFG)
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="could not load local-dir:"):
        load_model(f"local-dir:{folder}", device="cpu")


def test_offline_hub_model_fails_cleanly(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError, match="ViT-B-32 \\(laion2b_s34b_b79k\\)"):
        load_model("ViT-B-32", "laion2b_s34b_b79k", device="cpu")


def test_slot_keeps_model_after_a_typo_and_replaces_it_after_a_good_load(tmp_path):
    folder = _write_local_dir(tmp_path / "tiny", TINY_CFG)
    slot = ModelSlot()
    first = slot.load(f"local-dir:{folder}", device="cpu")
    assert first is not None and slot.error is None
    assert slot.load("not-a-model") is None
    assert slot.model is first and "not-a-model" in slot.status() and "Still using" in slot.status()
    second_dir = _write_local_dir(tmp_path / "tiny2", TINY_CFG)
    second = slot.load(f"local-dir:{second_dir}", device="cpu")
    assert second is not None and slot.model is second and slot.error is None
    assert slot.load(f"local-dir:{tmp_path / 'missing'}") is None and "folder not found" in slot.status()


def test_device_and_precision_choice():
    from explorer.embed.model import pick_device, pick_precision

    cpu = torch.device("cpu")
    assert pick_precision(cpu) == "fp32"
    assert pick_precision(torch.device("cuda")) == "fp16"
    assert pick_precision(cpu, "bf16") == "bf16"
    with pytest.raises(ModelLoadError):
        pick_precision(cpu, "fp16")
    assert pick_device("cpu") == cpu
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            pick_device("cuda")


def _matmul_dtypes(model, run) -> set:
    """The dtypes the model's linear layers compute in while `run()` executes."""
    seen = set()
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.add(out.dtype))
             for m in model.model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_autocast_path_runs_in_the_asked_precision_and_stays_close_to_fp32(shapes_model_dir):
    """The GPU's fp16/bf16 autocast path, exercised on the CPU with bf16 (CUDA itself is unverified here)."""
    from PIL import Image

    from tests.helpers import encode_pil

    fp32 = load_model(f"local-dir:{shapes_model_dir}", device="cpu", precision="fp32")
    bf16 = load_model(f"local-dir:{shapes_model_dir}", device="cpu", precision="bf16")
    assert bf16.precision == "bf16"
    texts = ["a red circle", "a photo of a blue square."]
    images = [Image.new("RGB", (40, 40), (220, 30, 30)), Image.new("RGB", (40, 40), (30, 60, 230))]
    # The layers really compute in the precision asked for (the outputs are float32 either way).
    assert _matmul_dtypes(bf16, lambda: encode_pil(bf16, images)) == {torch.bfloat16}
    assert _matmul_dtypes(bf16, lambda: bf16.encode_texts(["a new text"])) == {torch.bfloat16}
    assert _matmul_dtypes(fp32, lambda: encode_pil(fp32, images)) == {torch.float32}
    for a, b in ((fp32.encode_texts(texts), bf16.encode_texts(texts)),
                 (encode_pil(fp32, images), encode_pil(bf16, images))):
        assert b.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        assert float((a * b).sum(axis=1).min()) > 0.98


def test_a_text_repeated_in_one_call_fills_every_row(random_vit):
    texts = ["a photo of a quokka.", "a photo of a tapir.", "a photo of a quokka."]  # never encoded before
    before = random_vit.text_encodes
    out = random_vit.encode_texts(texts)
    assert random_vit.text_encodes == before + 2  # each distinct text once...
    np.testing.assert_array_equal(out[2], out[0])  # ...and every row filled
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_packed_rows_two_prompts_to_a_row_equal_stock_encode_text(random_vit, monkeypatch):
    """OpenAI's 80 templates of mixed lengths are packed two prompts to a row (each attending only
    to itself); the embeddings are still open_clip's, and packing really happened."""
    from explorer.embed import model as model_module

    texts = [t.replace("{}", "golden retriever") for t in load_template_set("openai")] + ["x", ""]
    lengths = model_module._token_lengths(random_vit._tokenize(texts)).tolist()
    packed = model_module._pack_rows(lengths)
    assert packed is not None and len(packed[0]) < len(texts)          # fewer rows than prompts
    calls = []
    real = model_module._pack_rows
    monkeypatch.setattr(model_module, "_pack_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    ours = random_vit._encode_uncached(texts, 256)   # past the text cache
    assert calls, "the packed path was not taken"
    assert float((1 - (ours * _stock_text(random_vit, texts)).sum(axis=1)).max()) < 1e-5
