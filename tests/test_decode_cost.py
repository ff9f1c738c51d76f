"""Decode-cost bombs (issue 22): the peak memory a decode takes, estimated from the header for every
format the app accepts, refused before any pixel is decoded; RLE BMP (decoded by PIL in pure Python)
and many-scan JPEGs bounded in time; EPS refused by format whatever the file is called."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import EpsImagePlugin, Image, ImageFile

from explorer.embed import images
from explorer.embed.images import Fit, ImageError, Limits, load_image
from explorer.inputs.settings import HOSTED_DEFAULTS, Settings, flag_and_variable, load_settings

ROOT = Path(__file__).resolve().parents[1]
MODEL_FIT = Fit((224, 224), "shortest", (224, 224))
HOSTED = load_settings(env={"EXPLORER_HOSTED": "1"}).limits
LOCAL = Settings().limits


# --- bombs, written by hand where Pillow would have to build the whole image first -----------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def flat_png(width: int, height: int, colour_type: int = 3, interlaced: bool = False,
             transparent: bool = False) -> bytes:
    """A flat 8-bit PNG, streamed scanline by scanline (Adam7 passes when interlaced): tiny, huge."""
    channels = {0: 1, 2: 3, 3: 1, 6: 4}[colour_type]
    passes = ([(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
               (0, 1, 1, 2)] if interlaced else [(0, 0, 1, 1)])
    compressor, body = zlib.compressobj(9), []
    for x0, y0, dx, dy in passes:
        cols, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if cols > 0 and rows > 0:
            row = b"\0" + bytes([1] * channels) * cols
            body.extend(compressor.compress(row) for _ in range(rows))
    body.append(compressor.flush())
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0,
                                                              int(interlaced)))
    if colour_type == 3:
        out += _chunk(b"PLTE", b"\0\0\0\xff\x80\0")
        if transparent:
            out += _chunk(b"tRNS", b"\0")
    return out + _chunk(b"IDAT", b"".join(body)) + _chunk(b"IEND", b"")


def rle8_bmp(width: int, height: int, row: bytes | None = None) -> bytes:
    """An RLE8 BMP; by default each row is one pixel and an end-of-line escape, which PIL's pure-Python
    decoder pads one byte at a time (a few KB describing a huge, slow image)."""
    row = b"\x01\x07\x00\x00" if row is None else row
    data = row * height + b"\x00\x01"
    palette = b"".join(struct.pack("<BBBB", i, i, i, 0) for i in range(256))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    offset = 14 + 40 + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def lossless_webp(side: int, frames: int = 1) -> bytes:
    flat = Image.new("RGB", (side, side), (30, 140, 200))
    more = [Image.new("RGB", (side, side), (30, 140, 10 * i)) for i in range(frames - 1)]
    return encoded(flat, "WEBP", lossless=True, save_all=frames > 1, append_images=more)


def photo(width: int = 1024, height: int = 768) -> Image.Image:
    gradient = Image.linear_gradient("L").resize((width, height))
    return Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                               Image.new("L", (width, height), 90)))


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
       b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")


@pytest.fixture(scope="module")
def hosted_bombs(tmp_path_factory) -> dict[str, Path]:
    """Bombs within the hosted pixel limit (40 M) whose decode would take far more than 160 MiB."""
    folder = tmp_path_factory.mktemp("bombs")
    side = 6000  # 36 M pixels
    bilevel = Image.new("1", (side, side), 1)
    made = {
        "lossless.webp": lossless_webp(side),
        "animated.webp": lossless_webp(side, frames=12),
        "palette.png": flat_png(side, side, 3),
        "palette_trns.png": flat_png(side, side, 3, transparent=True),
        "interlaced.png": flat_png(side, side, 6, interlaced=True),
        "rle8.bmp": rle8_bmp(side, side),
        "animated.gif": encoded(Image.new("P", (side, side)), "GIF", save_all=True,
                                append_images=[Image.new("P", (side, side), 1)] * 3),
        "frames.tif": encoded(bilevel, "TIFF", compression="group4", save_all=True,
                              append_images=[bilevel] * 20),
    }
    for name, data in made.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in made}


PEAK_SCRIPT = """
import json, sys, time
from explorer.embed import images
from explorer.embed.images import Fit, ImageError, Limits
limits = Limits(*json.loads(sys.argv[1]))
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
out = {}
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
    base, started = status("VmRSS:"), time.perf_counter()
    try:
        images.load_image(data, limits, fit=Fit((224, 224), "shortest", (224, 224)))
        reason = None
    except ImageError as exc:
        reason = exc.reason
    out[path] = dict(reason=reason, seconds=time.perf_counter() - started, growth=status("VmHWM:") - base)
print(json.dumps(out))
"""


def peaks(paths, limits: Limits) -> dict[str, dict]:
    """Decode each file in one fresh process: its reason (None: decoded), seconds and peak RSS growth."""
    args = [json.dumps([limits.max_bytes, limits.max_pixels, limits.max_decode_bytes])
            ] + [str(p) for p in paths]
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=True)
    return json.loads(done.stdout)


# --- the bombs --------------------------------------------------------------------------------------

def test_every_bomb_is_refused_from_its_header_with_the_hosted_limits(hosted_bombs):
    results = peaks(hosted_bombs.values(), HOSTED)
    for name, path in hosted_bombs.items():
        result = results[str(path)]
        assert result["reason"] is not None, f"{name} was decoded"
        assert result["reason"].startswith("image too large"), (name, result["reason"])
        assert "(set with --max-" in result["reason"], result["reason"]
        assert result["seconds"] < 2, (name, result)
        assert result["growth"] < 400 * 2**20, (name, result)
    reasons = {name: results[str(path)]["reason"] for name, path in hosted_bombs.items()}
    assert "decoding 6000x6000 lossless WebP needs about" in reasons["lossless.webp"]
    assert "animated lossless WebP" in reasons["animated.webp"]
    assert "palette PNG with transparency" in reasons["palette_trns.png"]
    assert "interlaced PNG" in reasons["interlaced.png"]
    assert "RLE8 BMP (36,000,000 pixels) is decoded by PIL in pure Python" in reasons["rle8.bmp"]
    for name in ("palette.png", "animated.gif", "frames.tif"):
        limit = "more than the limit of 160 MiB (set with --max-decode-mb or EXPLORER_MAX_DECODE_MB)"
        assert limit in reasons[name]


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    def refuse(self, *a, **k):
        raise AssertionError("pixel data was decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_the_issues_bombs_are_refused_with_the_local_defaults_too(no_pixel_decoding):
    webp = lossless_webp(7000)
    assert len(webp) < 4000
    with pytest.raises(ImageError) as info:
        load_image(webp, LOCAL, fit=MODEL_FIT)
    assert info.value.reason.startswith("image too large: decoding 7000x7000 lossless WebP needs about ")
    assert info.value.reason.endswith(" MiB, more than the limit of 256 MiB"
                                      " (set with --max-decode-mb or EXPLORER_MAX_DECODE_MB)")
    needed = int(info.value.reason.split("needs about ")[1].split(" MiB")[0].replace(",", ""))
    assert 49e6 * 16 / 2**20 <= needed <= 49e6 * 20 / 2**20  # measured 16.3 bytes a pixel
    for transparent in (False, True):  # 9459 x 9459 is within the local pixel limit (89.5 M)
        data = flat_png(9459, 9459, 3, transparent=transparent)
        assert len(data) < 120_000
        with pytest.raises(ImageError, match="decoding 9459x9459 palette PNG.* needs about"):
            load_image(data, LOCAL, fit=MODEL_FIT)
    started, bmp = time.perf_counter(), rle8_bmp(9459, 9459)  # 38 KB; PIL would pad it byte by byte for ~15 s
    with pytest.raises(ImageError, match="decoding 9459x9459 RLE8 BMP needs about"):
        load_image(bmp, LOCAL)
    with pytest.raises(ImageError, match=r"RLE8 BMP \(89,472,681 pixels\) is decoded by PIL in pure Python"):
        load_image(bmp, Limits(max_decode_bytes=10**12))  # memory no object: its time still is
    assert time.perf_counter() - started < 1


def test_the_estimate_covers_the_measured_peak_and_is_not_far_above_it(tmp_path):
    """The factors are honest: measured peak RSS growth (a fresh process) <= estimate <= 1.6 x it."""
    side = 3000
    files = {
        "trns.png": flat_png(side, side, 3, transparent=True),
        "rgba.png": flat_png(side, side, 6, interlaced=True),
        "lossless.webp": lossless_webp(side),
        "rle8.bmp": rle8_bmp(side, side,
                             row=b"\xff\x07" * (side // 255) + bytes([side % 255, 7]) + b"\x00\x00"),
        "progressive.jpg": encoded(photo(side, side), "JPEG", progressive=True, subsampling=0),
        "grey16.png": encoded(Image.new("I;16", (side, side), 3000), "PNG"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    roomy = Limits(10**9, 10**9, 10**12)
    for name, data in files.items():
        result = peaks([tmp_path / name], roomy)[str(tmp_path / name)]
        assert result["reason"] is None, (name, result)
        with Image.open(io.BytesIO(data)) as im:
            full = im.size
            images._draft(im, MODEL_FIT, name)
            estimate = images.decode_cost(im, full, data, MODEL_FIT).bytes
        assert result["growth"] <= estimate <= 1.6 * result["growth"] + (4 << 20), (name, result, estimate)


def test_jpeg_coefficients_are_counted_at_full_size_whatever_the_draft(no_pixel_decoding):
    """A progressive JPEG drafted to 1/8 still needs libjpeg's whole-image coefficient buffer."""
    data = encoded(photo(4000, 4000), "JPEG", progressive=True, subsampling=0)
    with pytest.raises(ImageError, match="decoding 4000x4000 progressive JPEG needs about 9"):
        load_image(data, Limits(max_decode_bytes=64 << 20), fit=MODEL_FIT)  # 6 B/px: ~92 MiB


def test_a_jpeg_in_hundreds_of_scans_is_refused(no_pixel_decoding):
    data = encoded(photo(64, 64), "JPEG")
    scans = data[:-2] + b"\xff\xda" * 300 + data[-2:]
    with pytest.raises(ImageError, match="a JPEG in 301 scans"):
        load_image(scans, LOCAL)


def test_many_frames_cost_one_frame(tmp_path):
    """Animated and multi-frame files are decoded for their first frame only, so many frames are fine."""
    small = Image.new("P", (300, 200), 1)
    gif = encoded(small, "GIF", save_all=True,
                  append_images=[Image.new("P", (300, 200), i % 200) for i in range(300)])
    tif = encoded(small.convert("RGB"), "TIFF", compression="tiff_lzw", save_all=True,
                  append_images=[small.convert("RGB")] * 300)
    webp = encoded(small.convert("RGB"), "WEBP", save_all=True, append_images=[small.convert("RGB")] * 100)
    for data in (gif, tif, webp):
        started = time.perf_counter()
        assert load_image(data, HOSTED, fit=MODEL_FIT).size == (300, 200)
        assert time.perf_counter() - started < 1


# --- what still passes -------------------------------------------------------------------------------

@pytest.mark.parametrize("limits", [LOCAL, HOSTED], ids=["local", "hosted"])
def test_ordinary_photos_are_accepted(limits):
    picture = photo()
    variants = {
        "jpeg": encoded(picture, "JPEG", quality=90),
        "progressive jpeg": encoded(picture, "JPEG", progressive=True),
        "png": encoded(picture, "PNG"),
        "rgba png": encoded(picture.convert("RGBA"), "PNG"),
        "palette png": encoded(picture.convert("P"), "PNG", transparency=0),
        "webp": encoded(picture, "WEBP"),
        "lossless webp": encoded(picture, "WEBP", lossless=True),
        "12 MP jpeg": encoded(photo(4000, 3000), "JPEG"),
    }
    for name, data in variants.items():
        for fit in (MODEL_FIT, None):
            image = load_image(data, limits, fit=fit, name=name)
            assert image.mode == "RGB", name


def test_pixels_are_unchanged_by_shrinking_before_converting():
    """L and RGB images are shrunk before the conversion to RGB (no full-size copy): same pixels."""
    grey = photo(3000, 2000).convert("L")
    fast = load_image(encoded(grey, "PNG"), LOCAL, fit=MODEL_FIT)
    slow = images._shrink(grey.convert("RGB"), MODEL_FIT)
    assert fast.size == slow.size and fast.tobytes() == slow.tobytes()


def test_sixteen_bit_greyscale_is_still_scaled_to_eight_bits():
    data = encoded(Image.new("I;16", (40, 30), 257 * 200), "PNG")
    assert load_image(data, LOCAL).getpixel((3, 3)) == (200, 200, 200)


# --- formats and settings ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["figure.eps", "figure.png"])
def test_eps_is_refused_by_format_whatever_its_name(tmp_path, monkeypatch, name):
    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(self))
    path = tmp_path / name
    path.write_bytes(EPS)
    with pytest.raises(ImageError) as info:
        load_image(path, LOCAL)
    assert info.value.reason == "not an image or unsupported format"
    assert opened == [] and "EPS" not in images.ALLOWED_FORMATS


def test_refusals_name_the_settings_as_the_settings_module_spells_them():
    for setting in ("max_pixels", "max_decode_mb", "max_upload_mb", "decode_seconds"):
        flag, variable = flag_and_variable(setting)
        assert images.set_with(setting) == f"set with {flag} or {variable}"
    with pytest.raises(ImageError, match=r"exceeds the limit of 1,000 pixels \(set with --max-pixels or"
                                         r" EXPLORER_MAX_PIXELS\)"):
        load_image(encoded(photo(50, 40), "PNG"), Limits(max_pixels=1000))
    with pytest.raises(ImageError, match="set with --max-upload-mb or EXPLORER_MAX_UPLOAD_MB"):
        load_image(encoded(photo(50, 40), "PNG"), Limits(max_bytes=100))


def test_hosted_defaults_keep_two_workers_within_the_issues_memory_budget():
    """Two decode workers at max_decode_mb each stay under the 400 MB a bomb may add to the server."""
    assert HOSTED_DEFAULTS["decode_workers"] * HOSTED_DEFAULTS["max_decode_mb"] * 2**20 < 400e6
    assert HOSTED.max_decode_bytes == HOSTED_DEFAULTS["max_decode_mb"] * 2**20
