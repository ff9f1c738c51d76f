"""Hostile images (issue 9): decoding bounded by what the model keeps, a per-image memory ceiling,
PIL's warnings as reasons instead of stderr noise, and one bad image never sinking the others."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image, ImageFile

from explorer.embed import images
from explorer.embed.images import DEFAULT_LIMITS, Fit, ImageError, Limits, fit_of, load_image, prepare
from explorer.inputs.sources import embed_files
from tests import shapes

ROOT = Path(__file__).resolve().parents[1]
MODES = ("shortest", "longest", "squash")


def transform(size=224, mode="shortest"):
    """open_clip's own eval preprocessing: no weights needed."""
    return open_clip.image_transform(size, is_train=False, resize_mode=mode)


def smooth(width: int, height: int) -> Image.Image:
    """A photo-like picture: smooth gradients and a few soft-edged blobs (no near-Nyquist noise)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / max(width, 1), y / max(height, 1)
    rgb = np.stack([200 * u + 30 * np.sin(9 * v), 60 + 150 * v, 120 + 100 * np.cos(7 * u + 3 * v)], -1)
    for cx, cy, r in ((0.3, 0.4, 0.15), (0.7, 0.6, 0.2)):
        rgb += 60 * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / r ** 2)[..., None]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def encoded(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


class Spy:
    """A preprocessing that records the size of every image it is given (fit_of still reads it)."""

    def __init__(self, preprocess):
        self.preprocess, self.transforms, self.sizes = preprocess, preprocess.transforms, []

    def __call__(self, image):
        self.sizes.append(image.size)
        return self.preprocess(image)


def png_header_only(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def corrupt_exif_jpeg() -> bytes:
    """A good JPEG whose EXIF block claims more data than it holds (PIL warns while opening it)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x010E, 2, 1000, 26) + struct.pack("<I", 0)
    exif = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    return encoded(smooth(200, 150), "JPEG", exif=exif)


# --- reading the model's preprocessing -------------------------------------------------------------

def test_fit_of_reads_open_clip_preprocessing_in_every_mode(shapes_model):
    assert fit_of(transform(224)) == Fit((224, 224), "shortest", (224, 224), truncates=True)
    assert fit_of(transform((224, 160))) == Fit((160, 224), "shortest", (160, 224))  # torchvision: (h, w)
    assert fit_of(transform(224, "longest")) == Fit((224, 224), "longest")
    assert fit_of(transform((224, 160), "squash")) == Fit((160, 224), "squash")
    assert fit_of(shapes_model.preprocess) == Fit((32, 32), "shortest", (32, 32), truncates=True)
    import torchvision.transforms as T
    imagenet = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    assert fit_of(imagenet) == Fit((256, 256), "shortest", (224, 224), truncates=True)
    fallback = Fit((images.FALLBACK_SIDE, images.FALLBACK_SIDE), "cap")
    assert fit_of(lambda image: image) == fallback
    assert fit_of(open_clip.image_transform(224, is_train=True)) == fallback  # random crops: unknown


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(20, 1000), (1000, 20), (640, 480), (481, 640), (2000, 1500), (3, 3)])
@pytest.mark.parametrize("target", [224, (224, 160), 32])
def test_fit_resized_is_what_the_preprocessing_computes(mode, size, target):
    preprocess = transform(target, mode)
    expected = fit_of(preprocess).resized(*size)
    if min(expected) < 1:
        return  # refused before the preprocessing would fail
    assert preprocess.transforms[0](Image.new("RGB", size)).size == expected


# --- ordinary images: the same tensors as before ---------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_ordinary_images_give_exactly_the_tensors_they_gave_before(tmp_path, mode, shapes_model):
    cases = {
        "photo.png": (smooth(640, 480), "PNG"), "photo.jpg": (smooth(600, 400), "JPEG"),
        "portrait.jpg": (smooth(300, 500), "JPEG"), "tiny.png": (smooth(20, 12), "PNG"),
        "panorama.png": (smooth(600, 120), "PNG"), "rgba.png": (smooth(200, 200).convert("RGBA"), "PNG"),
        "grey.png": (smooth(90, 60).convert("L"), "PNG"), "palette.gif": (smooth(64, 64).convert("P"), "GIF")
    }
    for name, (image, fmt) in cases.items():
        image.save(tmp_path / name, fmt)
    exact = 0
    for preprocess in (transform(224, mode), transform((224, 160), mode)):
        for name, (image, fmt) in cases.items():
            before = preprocess(load_image(tmp_path / name))  # the unbounded path, as it was
            after = prepare(tmp_path / name, preprocess)
            resized = fit_of(preprocess).resized(*image.size)
            drafted = fmt == "JPEG" and image.width >= 2 * resized[0] and image.height >= 2 * resized[1]
            if not drafted and image.width <= 8 * resized[0] and image.height <= 8 * resized[1]:
                assert torch.equal(after, before), (mode, name)    # up to SHRINK_FROM x: untouched
                exact += 1
            else:  # a JPEG at 2x the model's input or more decodes at a DCT scale: close, not equal
                assert torch.allclose(after, before, atol=0.15), (mode, name, (after - before).abs().max())
    assert exact >= 12  # 16 cases; in "longest" mode 640 and 600 px JPEGs are 2 x 160 or more
    small = shapes.draw_shape("red", "circle", size=90)  # the tiny model: up to 3 x 32 untouched
    small.save(tmp_path / "shape.png")
    assert torch.equal(prepare(tmp_path / "shape.png", shapes_model.preprocess),
                       shapes_model.preprocess(load_image(tmp_path / "shape.png")))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_large_images_match_the_unbounded_path_up_to_resampling(mode, fmt):
    data = encoded(smooth(3000, 2200), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    preprocess = Spy(transform(224, mode))
    bounded, direct = prepare(data, preprocess), preprocess.preprocess(load_image(data))
    resized = fit_of(preprocess).resized(3000, 2200)
    if fmt == "PNG":
        assert preprocess.sizes == [(3 * resized[0], 3 * resized[1])
                                    ]  # GAP x what the resize makes, not 6.6 M pixels
    else:  # a JPEG is decoded at the smallest DCT scale that still covers the model's input (DRAFT_GAP = 1)
        (w, h), = preprocess.sizes
        assert resized[0] <= w < 2 * resized[0] and resized[1] <= h < 2 * resized[1]
    diff = (bounded - direct).abs()
    assert diff.mean() < 0.006 and diff.max() < 0.06, (diff.mean(), diff.max())  # 1 grey level is 0.015


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_large_rotated_image_is_bounded_the_right_way_round(fmt):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 6000 x 2000, shown 2000 x 6000
    data = encoded(smooth(6000, 2000), fmt, exif=exif)
    preprocess = Spy(transform((224, 160)))  # not square: which side is which matters
    bounded, direct = prepare(data, preprocess), preprocess.preprocess(load_image(data))
    (w, h), = preprocess.sizes  # portrait, the right way round: 3 x (160, 480) for a PNG, the draft's scale
    assert (w, h) == (480, 1440) if fmt == "PNG" else (160 <= w < 320 and 480 <= h < 960)
    assert (bounded - direct).abs().mean() < 0.006


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_within_the_memory_ceiling():
    data = encoded(smooth(4000, 3000), "JPEG", quality=90)
    ceiling = Limits(max_decode_bytes=8 * 2**20)  # the full decode would need 46 MiB
    with pytest.raises(ImageError,
                       match=r"decoding 4000x3000 JPEG needs about \d+ MiB, more than the limit of 8 MiB"):
        load_image(data, ceiling)
    tensor = prepare(data, transform(224), ceiling)  # drafted to 1/4: 1000 x 750
    assert tensor.shape == (3, 224, 224)


# --- extreme aspect ratios --------------------------------------------------------------------------

def strip(width: int, height: int) -> bytes:
    """A strip, red at both ends and green in the middle third (what a centre crop keeps)."""
    image = Image.new("RGB", (width, height), (220, 20, 20))
    if height > width:
        image.paste((20, 200, 20), (0, height // 3, width, 2 * height // 3))
    else:
        image.paste((20, 200, 20), (width // 3, 0, 2 * width // 3, height))
    return encoded(image)


@pytest.mark.parametrize("size", [(1, 20_000), (20_000, 1), (3, 50_000)])
def test_a_centre_cropping_model_gets_the_centre_of_an_extreme_strip(size):
    preprocess = Spy(transform(32))  # the test model's size: unbounded, 1 x 20,000 is 32 x 640,000
    started = time.perf_counter()
    tensor = prepare(strip(*size), preprocess)
    assert time.perf_counter() - started < 5
    assert max(preprocess.sizes[0]) < 20  # the central square and a margin, not the whole strip
    pixels = tensor * torch.tensor(open_clip.OPENAI_DATASET_STD)[:, None, None] + \
        torch.tensor(open_clip.OPENAI_DATASET_MEAN)[:, None, None]
    assert torch.allclose(pixels.mean(dim=(1, 2)), torch.tensor([20, 200, 20]) / 255, atol=0.02)  # green


@pytest.mark.parametrize("size, mode", [((20, 2000), 224), ((10, 3000), (224, 160)), ((3, 30_000), 32)])
def test_the_crop_matches_the_unbounded_path_up_to_resampling(size, mode):
    data = encoded(smooth(*size))
    preprocess = Spy(transform(mode))
    bounded = prepare(data, preprocess)
    assert preprocess.sizes[0][1] < size[1] / 8  # it was cropped
    direct = preprocess.preprocess(load_image(data))
    assert torch.allclose(bounded, direct, atol=0.035), (bounded - direct).abs().max()


def test_a_squashing_model_gets_the_whole_strip_shrunk():
    preprocess = Spy(transform(224, "squash"))
    tensor = prepare(strip(1, 2_000_000), preprocess)
    assert preprocess.sizes[0] == (1, 672) and tensor.shape == (3, 224, 224)


def test_a_model_that_keeps_the_whole_image_refuses_what_would_vanish(no_pixel_decoding_after_open):
    with pytest.raises(ImageError) as info:
        prepare(strip(1, 2_000_000), transform(224, "longest"), name="strip.png")
    assert info.value.reason == ("aspect ratio 1:2,000,000 is too extreme: this model keeps the whole image,"
                                 " which would be less than one pixel across")


def test_unknown_preprocessing_gets_a_plain_size_cap():
    seen = []
    prepare(strip(1, 200_000), lambda image: seen.append(image.size))
    prepare(encoded(smooth(5000, 100)), lambda image: seen.append(image.size))
    prepare(encoded(smooth(300, 200)), lambda image: seen.append(image.size))
    assert seen == [(1, 3 * images.FALLBACK_SIDE), (3 * images.FALLBACK_SIDE, 61), (300, 200)]


# --- memory ceiling ---------------------------------------------------------------------------------

@pytest.fixture
def no_pixel_decoding_after_open(monkeypatch):
    """Every attempt to decode pixels fails, and is recorded (a swallowed failure still shows)."""
    attempts = []

    def refuse(self, *a, **k):
        attempts.append(self)
        raise AssertionError("pixel data was decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    yield attempts
    assert not attempts, "pixel data was decoded"


def test_memory_ceiling_is_checked_from_the_header(tmp_path, no_pixel_decoding_after_open):
    path = png_header_only(tmp_path / "big.png", 9000, 8000)  # 72 M pixels: within the pixel limit
    with pytest.raises(ImageError) as info:
        load_image(path, Limits(max_decode_bytes=64 * 2**20))
    assert info.value.reason == ("image too large: decoding 9000x8000 PNG needs about 449 MiB, more than the"
                                 " limit of 64 MiB (set with --max-decode-mb or EXPLORER_MAX_DECODE_MB)")
    for mode in MODES:  # a model's fit shrinks only what is decoded: the check still comes first
        with pytest.raises(ImageError, match="decoding 9000x8000 PNG needs about"):
            prepare(path, transform(224, mode), Limits(max_decode_bytes=64 * 2**20))
    assert DEFAULT_LIMITS.max_decode_bytes == 256 * 2**20
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (200, 100)).save(rgba)
    with pytest.raises(ImageError, match=r"200x100 PNG needs about 3.2 MiB"):  # 9 B/px + 3 MiB
        load_image(rgba, Limits(max_decode_bytes=200 * 100 * 4 - 1))


# --- PIL's warnings -----------------------------------------------------------------------------------

def test_decompression_bomb_warning_refuses_the_image_silently(tmp_path, capfd, no_pixel_decoding_after_open):
    path = png_header_only(tmp_path / "bomb.png", 10_000, 10_000)  # over PIL's warning threshold
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as info:
            load_image(path, Limits(max_pixels=10**12, max_decode_bytes=10**12))
    assert info.value.reason == (  # issue 25: the limit in force, and why --max-pixels cannot lift it
        f"image too large: 10000x10000 = 100,000,000 pixels exceeds the limit of {Image.MAX_IMAGE_PIXELS:,}"
        " pixels (Pillow's decompression-bomb guard, which --max-pixels cannot raise in this process)")
    assert not escaped and capfd.readouterr().err == ""


def test_other_warnings_never_reach_stderr_and_explain_a_failure(capfd):
    data = corrupt_exif_jpeg()
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        assert load_image(data).size == (200, 150)  # the image is fine: the warning is dropped
        assert prepare(data, transform(224)).shape == (3, 224, 224)
        with pytest.raises(ImageError) as info:
            load_image(data[: len(data) - 200], name="cut.jpg")
    assert not escaped and capfd.readouterr().err == ""
    assert info.value.reason.startswith("truncated or corrupt image")
    assert info.value.reason.endswith("; PIL warned: Truncated File Read") and "\n" not in info.value.reason


def test_warning_state_survives_decodes_in_many_threads():
    before = (list(warnings.filters), warnings.showwarning)
    data = corrupt_exif_jpeg()
    errors = []

    def work():
        try:
            for _ in range(30):
                load_image(data)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and (list(warnings.filters), warnings.showwarning) == before


# --- one bad image never sinks the others ---------------------------------------------------------------

def test_memory_errors_become_reasons(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    smooth(50, 40).save(path)

    def exhausted(image):
        raise MemoryError()
    with pytest.raises(ImageError) as info:
        prepare(path, exhausted, name="a.png")
    assert info.value.reason == "preprocessing failed (MemoryError)"
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: (_ for _ in ()).throw(MemoryError()))
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.reason == "out of memory while decoding"


def test_embed_files_keeps_the_good_images_when_one_exhausts_memory(shapes_model, tmp_path, monkeypatch):
    paths = []
    for i, (color, shape) in enumerate([("red", "circle"), ("blue", "square"), ("green", "cross")]):
        paths.append(tmp_path / f"{i}.png")
        shapes.draw_shape(color, shape, size=40 + i).save(paths[-1])
    real = shapes_model.preprocess

    class Greedy(Spy):
        def __call__(self, image):
            if image.size == (41, 41):
                raise MemoryError()
            return real(image)
    monkeypatch.setattr(shapes_model, "preprocess", Greedy(real))
    found = embed_files(shapes_model, paths)
    assert found.names == ["0.png", "2.png"] and len(found.embeddings) == 2
    assert [(f.path, f.reason) for f in found.failures] == [("1.png", "preprocessing failed (MemoryError)")]


# --- the check: the command line with two extreme strips beside good images --------------------

def test_classify_with_extreme_strips_stays_small(shapes_model_dir, tmp_path):
    good = []
    for color, shape in [("red", "circle"), ("blue", "square"), ("green", "triangle")]:
        good.append(tmp_path / f"{color}.png")
        shapes.draw_shape(color, shape, size=64).save(good[-1])
    tall = tmp_path / "tall_200k.png"
    Image.new("RGB", (1, 200_000), (220, 20, 20)).save(tall)
    taller = tmp_path / "tall_2m.png"
    Image.new("RGB", (1, 2_000_000), (220, 20, 20)).save(taller)
    assert taller.stat().st_size < 10_000
    args = [str(good[0]), str(tall), str(good[1]), str(taller), str(good[2])]
    # A parent of its own, so that RUSAGE_CHILDREN is this one command's peak and nothing else's.
    measure = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(json.dumps({'rc': r.returncode, 'out': r.stdout, 'err': r.stderr, "
               "'seconds': time.perf_counter() - t, "
               "'peak_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")
    result = subprocess.run([
        sys.executable, "-c", measure, sys.executable, "-m", "explorer", "classify", *args, "--labels",
        "a red circle, a blue square, a green triangle", "--model", f"local-dir:{shapes_model_dir}", "--json"
    ], cwd=ROOT, capture_output=True, text=True, timeout=300, env={
        "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"
    })
    run = json.loads(result.stdout)
    print(f"classify with 1x200,000 and 1x2,000,000 strips: peak RSS {run['peak_kb'] / 1024:.0f} MiB, "
          f"{run['seconds']:.1f} s")
    assert run["rc"] == 0, run["err"]  # every image classified (a centre-cropping model: their centres)
    doc = json.loads(run["out"])
    top = {r["path"]: r["labels"][0]["label"] for r in doc["results"]}
    assert top[str(good[0])] == "a red circle" and top[str(good[1])] == "a blue square"
    assert top[str(good[2])] == "a green triangle" and {str(tall), str(taller)} <= set(top)
    assert doc["errors"] == [] and "Warning" not in run["err"]
    assert run["peak_kb"] < 1.5 * 1024 * 1024, run["peak_kb"]


def test_the_patch_map_of_an_extreme_strip_is_bounded_too(shapes_model, tmp_path, monkeypatch):
    from explorer.app.context import AppContext
    from explorer.app.ui import heatmaps_tab
    from explorer.embed.model import ModelSlot
    from explorer.inputs.settings import load_settings

    path = tmp_path / "strip.png"
    path.write_bytes(strip(2_000_000, 1))
    ctx = AppContext.create(load_settings(env={"EXPLORER_INDEX_DIR": str(tmp_path / "i")}), ModelSlot(),
                            upload_dir=tmp_path / "uploads")
    ctx.slot.model = shapes_model
    seen = []
    preprocess = shapes_model.preprocess
    monkeypatch.setattr(shapes_model, "preprocess",
                        lambda image: seen.append(image.size) or preprocess(image))
    info, state = heatmaps_tab.compute_patch_map(ctx, heatmaps_tab.upload_items([str(path)]), "strip.png",
                                                 "a red circle", "tokens", "relative to the map's mean")
    assert state is not None, info
    assert max(seen[0]) < 10_000  # the model's preprocessing never saw the 2,000,000 px side
