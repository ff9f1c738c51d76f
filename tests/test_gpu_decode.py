"""Decoding JPEGs on the model's device (explorer/embed/gpu_decode.py), tested where it also runs: on the CPU
(torchvision's decode_jpeg decodes there too). The device path must embed as the PIL path does
(images.prepare), refuse or hand over to PIL every file it should not decode itself, before decoding
it, and give an index the same contents and failures as decoding in the workers."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from bench.bench_index import photo
from explorer.embed import gpu_decode
from explorer.embed.gpu_decode import JpegInfo, choose, decode_batch, decode_jpegs, jpeg_info, recipe_of
from explorer.embed.images import ImageError, Limits, prepare
from explorer.index.build import build_index
from explorer.index.store import Store

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(1024, 768), (640, 480), (300, 500), (100, 80), (2000, 150), (48, 900)]


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def rotated(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(image, exif=exif.tobytes())


def claims_size(data: bytes, width: int, height: int) -> bytes:
    """`data` with its frame header saying width x height (the pixels stay what they were)."""
    at = data.index(b"\xff\xc0") + 5  # marker, length, precision
    return data[:at] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[at + 4:]


def as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    rng = np.random.default_rng(13)
    return [jpeg(photo(rng, w, h), quality=90) for w, h in SIZES] + [jpeg(photo(rng, 320, 240).convert("L"))]


@pytest.fixture
def device_calls(monkeypatch) -> list[list[bytes]]:
    """Every call to the device decoder, as the list of files it was given."""
    calls, real = [], gpu_decode._decode_jpeg

    def spy(datas, device):
        calls.append([bytes(d.numpy()) for d in datas])
        return real(datas, device)

    monkeypatch.setattr(gpu_decode, "_decode_jpeg", spy)
    return calls


def reference(blob: bytes, preprocess, name: str = "<bytes>", limits: Limits = Limits()):
    """What the PIL path makes of `blob`: its tensor, or its failure reason."""
    try:
        return prepare(blob, preprocess, limits, name=name)
    except ImageError as exc:
        return exc.reason


def cosines(model, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return (model.encode_pixels(a) * model.encode_pixels(b)).sum(axis=1)


def test_recipe_is_read_from_the_models_preprocessing(random_vit, shapes_model):
    recipe = recipe_of(random_vit.preprocess)
    cfg = random_vit.model.visual.preprocess_cfg
    assert recipe.mode == "bicubic" and recipe.out_size == (224, 224)
    assert recipe.fit.mode == "shortest" and recipe.fit.crop == (224, 224)
    assert recipe.mean == pytest.approx(cfg["mean"]) and recipe.std == pytest.approx(cfg["std"])
    assert recipe_of(shapes_model.preprocess).out_size == (32, 32)
    assert recipe_of(lambda image: image) is None  # unknown preprocessing: the PIL path does it all
    assert choose("auto", torch.device("cpu"), random_vit.preprocess) == "cpu"
    assert choose("gpu", torch.device("cpu"), random_vit.preprocess) == "gpu"
    with pytest.raises(ValueError, match="decode must be one of"):
        choose("nvjpeg", torch.device("cpu"), random_vit.preprocess)


# The PIL path decodes a JPEG at a reduced DCT scale (images.DRAFT_GAP) and so is itself a little off the
# model's own preprocessing of the full image: for the 32-pixel shapes model, 300 x 500 decodes at 1/8
# (38 x 63) and embeds at cosine 0.981 to the full decode. The device path decodes in full, so it is held
# to the model's preprocessing of the full image, and to the PIL path within that path's own error.
@pytest.mark.parametrize("which, to_pil", [("random_vit", 0.99), ("shapes_model", 0.975)])
def test_the_device_path_embeds_as_the_pil_path(request, which, to_pil, photos, device_calls):
    model = request.getfixturevalue(which)
    pixels, failures = decode_batch(photos, model.preprocess, "cpu")
    assert failures == []
    assert device_calls == [photos]  # all of them, in one decoder call
    expected = torch.stack([prepare(blob, model.preprocess) for blob in photos])
    assert pixels.shape == expected.shape and pixels.dtype == torch.float32
    assert cosines(model, pixels, expected).min() >= to_pil
    full = torch.stack([model.preprocess(Image.open(io.BytesIO(blob)).convert("RGB")) for blob in photos])
    assert cosines(model, pixels, full).min() >= 0.995


@pytest.mark.parametrize("resize_mode", ["shortest", "longest", "squash"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_each_open_clip_resize_mode_is_done_as_open_clip_does_it(resize_mode, interpolation, photos):
    from open_clip.transform import image_transform

    preprocess = image_transform(64, False, resize_mode=resize_mode, interpolation=interpolation,
                                 fill_color=0)
    assert recipe_of(preprocess).mode == interpolation
    ordinary = [blob for blob, (w, h) in zip(photos, SIZES) if max(w, h) < 4 * min(w, h)]
    pixels, failures = decode_batch(ordinary, preprocess, "cpu")
    full = torch.stack([preprocess(Image.open(io.BytesIO(blob)).convert("RGB")) for blob in ordinary])
    assert failures == [] and pixels.shape == full.shape
    assert (pixels - full).abs().max() < 0.05  # PIL rounds to 8 bits between resize and normalise: ~1/255/std


def test_every_exif_orientation_is_turned_as_pil_turns_it():
    image = photo(np.random.default_rng(5), 64, 40)
    for orientation in range(1, 9):
        data = rotated(image, orientation)
        info = jpeg_info(data)
        assert info == JpegInfo(64, 40, orientation)
        upright = decode_jpegs([as_tensor(data)], [info])[0]
        expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
        assert np.array_equal(upright.permute(1, 2, 0).numpy(), expected), orientation


def test_an_exif_rotated_photo_is_decoded_on_the_device_upright(random_vit, device_calls):
    data = rotated(photo(np.random.default_rng(6), 640, 480), 6)
    pixels, failures = decode_batch([data], random_vit.preprocess, "cpu")
    assert failures == [] and device_calls == [[data]]
    assert cosines(random_vit, pixels, prepare(data, random_vit.preprocess)[None]).min() >= 0.99


def test_hostile_and_other_files_fail_or_go_to_pil_as_the_cpu_path_says(random_vit, photos, device_calls):
    rng = np.random.default_rng(7)
    good, picture = photos[1], photo(rng, 200, 150)
    bad_exif = good[:2] + b"\xff\xe1\x00\x10Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff" + good[2:]
    files = {
        "good.jpg": good, "truncated.jpg": good[:len(good) // 2],
        "huge.jpg": claims_size(jpeg(picture), 60000,
                                60000), "wide.jpg": claims_size(jpeg(picture), 12000, 8000),
        "picture.png": _png(picture), "cmyk.jpg": jpeg(picture.convert("CMYK")), "text.jpg": b"not an image",
        "empty.jpg": b"", "bad_exif.jpg": bad_exif, "webp.jpg": _webp(picture)
    }
    names, blobs = list(files), list(files.values())
    limits = Limits(max_pixels=50_000_000)
    pixels, failures = decode_batch(blobs, random_vit.preprocess, "cpu", limits, names=names)
    expected = {name: reference(blob, random_vit.preprocess, name, limits) for name, blob in files.items()}
    assert {names[i]: reason
            for i, reason in failures} == {n: r
                                           for n, r in expected.items() if isinstance(r, str)}
    reasons = {names[i]: reason for i, reason in failures}
    assert reasons["truncated.jpg"].startswith("truncated or corrupt image")
    assert reasons["huge.jpg"].startswith("image too large") and reasons["wide.jpg"].startswith(
        "image too large")
    assert reasons["empty.jpg"] == "empty file"
    assert reasons["text.jpg"] == "not an image or unsupported format"
    decoded = [n for n in names if n not in reasons]
    assert decoded == ["good.jpg", "picture.png", "cmyk.jpg", "bad_exif.jpg", "webp.jpg"]
    assert device_calls == [[good]]  # nothing else reached the decoder, the huge headers least of all
    for row, name in enumerate(decoded[1:], start=1):  # the PIL path's own tensors
        assert torch.equal(pixels[row], expected[name]), name


def test_a_file_the_decoder_refuses_is_found_and_given_to_pil(random_vit, photos, monkeypatch):
    rng = np.random.default_rng(8)
    good = photos[1]
    mangled = good[:len(good) // 2] + bytes(rng.integers(0, 256, 2000,
                                                         dtype=np.uint8)) + good[len(good) // 2 + 2000:]
    refused_by_device = photos[2]  # a sound JPEG this decoder happens to refuse: PIL decodes it
    calls, real = [], gpu_decode._decode_jpeg

    def flaky(datas, device):
        calls.append(len(datas))
        if any(bytes(d.numpy()) == refused_by_device for d in datas):
            raise RuntimeError("Failed to decode batch: 6")
        return real(datas, device)

    monkeypatch.setattr(gpu_decode, "_decode_jpeg", flaky)
    blobs = [photos[0], refused_by_device, mangled, photos[3]]
    pixels, failures = decode_batch(blobs, random_vit.preprocess, "cpu")
    assert calls == [4, 1, 1, 1, 1]  # the batch, then one file at a time
    assert failures == [(2, reference(mangled, random_vit.preprocess))]
    assert failures[0][1].startswith("truncated or corrupt image")
    assert len(pixels) == 3 and torch.equal(pixels[1], prepare(refused_by_device, random_vit.preprocess))


def test_a_large_batch_is_decoded_in_slices(random_vit, photos, device_calls, monkeypatch):
    monkeypatch.setattr(gpu_decode, "DECODE_BYTES", 3 * 1024 * 768)  # one 1024 x 768 photo's pixels
    monkeypatch.setattr(gpu_decode, "RESIZE_BYTES", 1)
    pixels, failures = decode_batch(photos[:3], random_vit.preprocess, "cpu")
    assert failures == [] and [len(call) for call in device_calls] == [1, 2]
    expected = torch.stack([prepare(blob, random_vit.preprocess) for blob in photos[:3]])
    assert cosines(random_vit, pixels, expected).min() >= 0.99


def test_preprocessing_without_a_recipe_is_all_done_by_pil(photos, device_calls):
    from torchvision import transforms

    preprocess = transforms.Compose([
        transforms.Resize(40, interpolation=transforms.InterpolationMode.NEAREST),
        transforms.CenterCrop(40),
        transforms.ToTensor()
    ])
    assert recipe_of(preprocess) is None
    pixels, failures = decode_batch(photos[:3], preprocess, "cpu")
    assert failures == [] and device_calls == []
    assert torch.equal(pixels, torch.stack([prepare(blob, preprocess) for blob in photos[:3]]))
    batch = gpu_decode.pack([("a", "a.jpg", (photos[0], jpeg_info(photos[0]))), ("b", "b.jpg", "empty file")])
    keys, pixels, failures = gpu_decode.finish(batch, preprocess, torch.device("cpu"))
    assert keys == ["a"] and failures == [("b", "empty file")] and device_calls == []
    assert torch.equal(pixels[0], prepare(photos[0], preprocess))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _webp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP")
    return buffer.getvalue()


def _mixed_folder(folder: Path) -> None:
    """Photos, a grey one and an EXIF-rotated one, and bad or non-JPEG files mixed in."""
    rng = np.random.default_rng(21)
    (folder / "sub").mkdir(parents=True)
    for i, (w, h) in enumerate(SIZES[:5]):
        photo(rng, w, h).save(folder / f"photo{i}.jpg", quality=90)
    photo(rng, 320, 240).convert("L").save(folder / "sub" / "grey.jpg")
    (folder / "sub" / "rotated.jpg").write_bytes(rotated(photo(rng, 400, 300), 8))
    good = (folder / "photo1.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[:len(good) // 3])
    (folder / "huge.jpg").write_bytes(claims_size(good, 60000, 60000))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_bytes(b"not an image at all")
    photo(rng, 300, 200).save(folder / "drawing.png")
    photo(rng, 300, 200).convert("CMYK").save(folder / "sub" / "cmyk.jpg")


def test_an_index_decoded_on_the_device_matches_one_decoded_in_the_workers(random_vit, tmp_path,
                                                                           device_calls):
    _mixed_folder(tmp_path / "photos")
    cpu = build_index(random_vit, tmp_path / "photos", tmp_path / "cpu", batch_size=4, workers=0,
                      decode="cpu")
    assert device_calls == []
    gpu = build_index(random_vit, tmp_path / "photos", tmp_path / "gpu", batch_size=4, workers=2,
                      decode="gpu")
    assert sum(len(call) for call in device_calls) == 7  # the photos, the grey and the rotated one
    assert (gpu.added, gpu.total, gpu.done) == (cpu.added, cpu.total, cpu.done) == (9, 9, 13)
    assert [(f.path, f.reason) for f in gpu.failed] == [(f.path, f.reason) for f in cpu.failed]
    assert {f.path for f in gpu.failed} == {"empty.jpg", "huge.jpg", "notes.jpg", "truncated.jpg"}
    a, b = Store(tmp_path / "cpu"), Store(tmp_path / "gpu")
    try:
        paths = sorted(a.states())
        assert paths == sorted(b.states())
        for path in paths:
            va, vb = a.embedding_of(path), b.embedding_of(path)
            assert (va is None) == (vb is None), path
            if va is not None:
                assert float(va @ vb) > 0.99, path
    finally:
        a.close()
        b.close()
    again = build_index(random_vit, tmp_path / "photos", tmp_path / "gpu", batch_size=4, workers=0,
                        decode="gpu")
    assert (again.added, again.unchanged, again.done) == (0, 9, 4)  # only the failures are tried again
    assert [f.reason for f in again.failed] == [f.reason for f in cpu.failed]
    with pytest.raises(ValueError, match="decode must be one of"):
        build_index(random_vit, tmp_path / "photos", tmp_path / "gpu", decode="fast")


def test_a_device_run_stopped_early_keeps_its_batches_and_resumes(shapes_model, tmp_path):
    _mixed_folder(tmp_path / "photos")
    asked = []
    stopped = build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", batch_size=4, workers=2,
                          decode="gpu", should_stop=lambda: asked.append(1) or len(asked) > 2)
    assert stopped.cancelled and stopped.done == 8
    rest = build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", batch_size=4, workers=2,
                       decode="gpu")
    assert not rest.cancelled and rest.total == 9 and rest.added + stopped.added == 9


def test_the_index_command_takes_decode(shapes_model_dir, tmp_path):
    _mixed_folder(tmp_path / "photos")
    shutil.rmtree(tmp_path / "photos" / "sub")
    result = subprocess.run([
        sys.executable, "-m", "explorer", "index",
        str(tmp_path / "photos"), "--index",
        str(tmp_path / "idx"), "--model", f"local-dir:{shapes_model_dir}", "--decode", "gpu", "--workers",
        "0", "--json"
    ], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1, result.stderr  # bad files were reported, the rest indexed
    doc = json.loads(result.stdout)
    assert (doc["added"], doc["failed"]) == (6, 4)
