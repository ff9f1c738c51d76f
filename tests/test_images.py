"""Tests for explorer.embed.images: safe decoding, limits, batch loading and folder scanning."""
from __future__ import annotations

import gc
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from explorer.embed import images
from explorer.embed.images import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_PIXELS,
    ImageError,
    Limits,
    Thumbnails,
    load_image,
    prepare,
)
from explorer.inputs.folders import walk_folder

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    img.save(path, fmt, **kw)
    return path


def stored(path: Path) -> Image.Image:
    """The file as PIL sees it (header only), without leaving it open."""
    with Image.open(path) as im:
        return im


def close(a, b, tol=6):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def noisy_jpeg(path: Path, size=(300, 200)) -> Path:
    rng = np.random.default_rng(0)
    return save(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)), path, "JPEG")


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height, with no real pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# --- orientation --------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation, top_colour", [(6, RED), (8, BLUE)])
def test_exif_orientation_applied(tmp_path, orientation, top_colour):
    img = Image.new("RGB", (40, 20), RED)
    img.paste(BLUE, (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(img, tmp_path / "rot.jpg", "JPEG", exif=exif, quality=95)
    assert stored(path).size == (40, 20)
    out = load_image(path)
    assert out.size == (20, 40)
    assert close(out.getpixel((10, 2)), top_colour, tol=30)  # 6: rotate cw (left -> top); 8: ccw


# --- modes --------------------------------------------------------------------------------------

def test_rgb_and_greyscale(tmp_path):
    out = load_image(save(Image.new("RGB", (4, 4), (10, 20, 30)), tmp_path / "a.png"))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (10, 20, 30)
    out = load_image(save(Image.new("L", (4, 4), 77), tmp_path / "l.png"))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (77, 77, 77)


def test_palette_without_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putdata([0, 1])
    out = load_image(save(img, tmp_path / "p.png"))
    assert out.mode == "RGB" and [out.getpixel((x, 0)) for x in range(2)] == [RED, BLUE]


@pytest.mark.parametrize("ext", [".png", ".gif"])
def test_palette_with_transparency_goes_white(tmp_path, ext):
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.putdata([0, 1])
    path = save(img, tmp_path / f"pt{ext}", transparency=0)
    assert stored(path).mode == "P"
    out = load_image(path)
    assert out.mode == "RGB" and [out.getpixel((x, 0)) for x in range(2)] == [WHITE, BLUE]


def test_rgba_composited_onto_white(tmp_path):
    img = Image.new("RGBA", (3, 1))
    img.putdata([(255, 0, 0, 0), (0, 0, 255, 255), (0, 0, 0, 128)])
    out = load_image(save(img, tmp_path / "rgba.png"))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == WHITE and out.getpixel((1, 0)) == BLUE
    assert close(out.getpixel((2, 0)), (127, 127, 127), tol=2)


def test_la_composited_onto_white(tmp_path):
    img = Image.new("LA", (3, 1))
    img.putdata([(0, 0), (100, 255), (0, 128)])
    out = load_image(save(img, tmp_path / "la.png"))
    assert [out.getpixel((x, 0)) for x in range(2)] == [WHITE, (100, 100, 100)]
    assert close(out.getpixel((2, 0)), (127, 127, 127), tol=2)


def test_16bit_png_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 128 * 257, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "16.png")
    assert stored(path).mode in ("I;16", "I")
    out = load_image(path)
    assert [out.getpixel((x, 0)) for x in range(4)] == [(0, 0, 0), (4, 4, 4), (128, 128, 128), WHITE]


def test_32bit_int_tiff_scaled(tmp_path):
    values = np.array([[0, 128 * 257, 65535]], dtype=np.int32)
    path = save(Image.fromarray(values, "I"), tmp_path / "i.tif")
    assert stored(path).mode == "I"
    out = load_image(path)
    assert [out.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", "JPEG")
    assert stored(path).mode == "CMYK"
    out = load_image(path)
    assert out.mode == "RGB" and close(out.getpixel((4, 4)), RED, tol=10)


def test_bilevel(tmp_path):
    img = Image.new("1", (2, 1))
    img.putdata([0, 1])
    out = load_image(save(img, tmp_path / "b.png"))
    assert [out.getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), WHITE]


@pytest.mark.parametrize("ext", [".gif", ".webp"])
def test_animated_gives_first_frame(tmp_path, ext):
    frames = [Image.new("RGB", (8, 8), c) for c in (RED, GREEN, BLUE)]
    kw = {"lossless": True} if ext == ".webp" else {}
    path = tmp_path / f"anim{ext}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, **kw)
    with Image.open(path) as check:
        assert check.n_frames == 3
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (8, 8) and out.getpixel((4, 4)) == RED


# --- bad files ----------------------------------------------------------------------------------

def bad_files(tmp_path: Path) -> dict[str, Path]:
    jpeg = noisy_jpeg(tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "random.jpg").write_bytes(np.random.default_rng(1).bytes(4096))
    (tmp_path / "text.png").write_text("this is not an image\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    i = png.find(b"IDAT")
    png[i + 50: i + 150] = bytes(100)
    (tmp_path / "corrupt.png").write_bytes(bytes(png))
    return {
        "truncated or corrupt image": tmp_path / "half.jpg",
        "corrupt png": tmp_path / "corrupt.png",
        "not an image or unsupported format": tmp_path / "random.jpg",
        "not an image (text)": tmp_path / "text.png",
        "empty file": tmp_path / "empty.png",
        "file not found": tmp_path / "missing.png",
        "is a directory": tmp_path / "folder.png",
    }


def test_bad_files_have_distinct_clear_reasons(tmp_path):
    cases = bad_files(tmp_path)
    reasons = {}
    for label, path in cases.items():
        with pytest.raises(ImageError) as info:
            load_image(path)
        assert info.value.path == str(path)
        assert "\n" not in info.value.reason
        reasons[label] = info.value.reason
    assert reasons["truncated or corrupt image"].startswith("truncated or corrupt image")
    assert reasons["corrupt png"].startswith("truncated or corrupt image")
    assert reasons["not an image or unsupported format"] == "not an image or unsupported format"
    assert reasons["not an image (text)"] == "not an image or unsupported format"
    assert reasons["empty file"] == "empty file"
    assert reasons["file not found"] == "file not found"
    assert reasons["is a directory"] == "is a directory, not a file"
    kinds = {r.split(" (")[0] for r in reasons.values()}
    assert len(kinds) == 5


def test_truncated_refused_without_touching_pil_globals(tmp_path):
    before = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
    jpeg = noisy_jpeg(tmp_path / "whole.jpg").read_bytes()
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(jpeg[: len(jpeg) // 2], name="cut.jpg")
    load_image(tmp_path / "whole.jpg")
    assert (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS) == before


def test_other_formats_refused_even_with_image_extension(tmp_path):
    path = save(Image.new("RGB", (4, 4), RED), tmp_path / "really_ppm.png", "PPM")
    with pytest.raises(ImageError, match="not an image or unsupported format"):
        load_image(path)


# --- limits -------------------------------------------------------------------------------------

@pytest.fixture
def no_pixel_decoding(monkeypatch):
    def refuse(self, *a, **k):
        raise AssertionError("pixel data was decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_pixel_limit_checked_from_header(tmp_path, no_pixel_decoding):
    path = save(Image.new("L", (2000, 1000)), tmp_path / "big.png")
    with pytest.raises(ImageError) as info:
        load_image(path, Limits(max_pixels=1_000_000))
    assert info.value.reason == ("image too large: 2000x1000 = 2,000,000 pixels exceeds the limit of"
                                 " 1,000,000 pixels (set with --max-pixels or EXPLORER_MAX_PIXELS)")


def test_header_only_bomb_refused_with_default_limit(tmp_path, no_pixel_decoding):
    path = png_header_only(tmp_path / "bomb.png", 10_000, 10_000)  # 100M pixels, between PIL's warn/error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageError) as info:
            load_image(path)
    assert "100,000,000" in info.value.reason and f"{DEFAULT_MAX_PIXELS:,}" in info.value.reason


def test_pil_decompression_bomb_error_caught(tmp_path, no_pixel_decoding):
    path = png_header_only(tmp_path / "bomb.png", 30_000, 30_000)  # beyond PIL's own hard limit
    with pytest.raises(ImageError) as info:
        load_image(path, Limits(max_pixels=10**12))
    # the setting is above Pillow's guard, which this process keeps: the guard is the limit in force
    assert info.value.reason == (
        f"image too large: 900,000,000 pixels exceeds the limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
        "(Pillow's decompression-bomb guard, which --max-pixels cannot raise in this process)")


def test_a_bomb_past_pillows_hard_limit_quotes_the_limit_in_force(tmp_path, no_pixel_decoding):
    """Pillow refuses above twice its guard (178,956,970 pixels) inside Image.open, with its own words;
    the reason quotes the limit in force (the README's and --max-pixels' 89,478,485) and the setting."""
    path = png_header_only(tmp_path / "bomb.png", 20_000, 10_000)  # 200M pixels: Pillow's error, not warning
    for limits, limit in ((DEFAULT_LIMITS, DEFAULT_MAX_PIXELS), (Limits(max_pixels=50_000_000), 50_000_000)):
        with pytest.raises(ImageError) as info:
            load_image(path, limits)
        assert info.value.reason == (f"image too large: 200,000,000 pixels exceeds the limit of {limit:,} "
                                     "pixels (set with --max-pixels or EXPLORER_MAX_PIXELS)")
        assert "178" not in info.value.reason


def test_byte_limit_checked_before_reading(tmp_path, monkeypatch):
    path = noisy_jpeg(tmp_path / "a.jpg")
    size = path.stat().st_size
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("file was opened"))
    with pytest.raises(ImageError) as info:
        load_image(path, Limits(max_bytes=1000))
    assert info.value.reason.startswith(f"file too large: {size:,} bytes exceeds the limit of 1,000 bytes")
    with pytest.raises(ImageError, match=f"{size:,} bytes exceeds the limit of 1,000"):
        load_image(path.read_bytes(), Limits(max_bytes=1000))


# --- bytes input, resources ---------------------------------------------------------------------

def test_bytes_input(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (5, 3), GREEN).save(buf, "PNG")
    out = load_image(buf.getvalue())
    assert out.size == (5, 3) and out.getpixel((0, 0)) == GREEN
    with pytest.raises(ImageError) as info:
        load_image(b"not an image", name="upload.png")
    assert info.value.path == "upload.png" and "upload.png" in str(info.value)
    with pytest.raises(ImageError, match="empty file"):
        load_image(b"", name="nothing.png")


def test_result_fully_loaded_and_file_closed(tmp_path):
    path = save(Image.new("RGB", (6, 6), BLUE), tmp_path / "a.png")
    anim = tmp_path / "anim.gif"
    Image.new("RGB", (6, 6), RED).save(anim, save_all=True, append_images=[Image.new("RGB", (6, 6), GREEN)])
    gc.collect()  # other tests' garbage (gradio apps leave event loops) is not this test's to judge
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        outs = [load_image(path), load_image(anim)]
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    for out in outs:
        assert type(out) is Image.Image and out.mode == "RGB"
    os.remove(path)
    os.remove(anim)
    assert outs[0].getpixel((1, 1)) == BLUE and outs[1].getpixel((1, 1)) == RED


# --- prepare and thumbnails ---------------------------------------------------------------------

def test_prepare_runs_the_preprocessing_and_turns_its_failure_into_a_reason(tmp_path):
    path = save(Image.new("RGB", (8, 6), RED), tmp_path / "a.png")
    assert prepare(path, lambda im: im.size) == (8, 6)

    def broken(image):
        raise ValueError("odd shape")
    with pytest.raises(ImageError) as info:
        prepare(path, broken, name="a.png")
    assert info.value.path == "a.png" and info.value.reason == "preprocessing failed (ValueError: odd shape)"
    with pytest.raises(ImageError, match="empty file"):
        prepare(b"", broken, name="b.png")  # decoding fails first: the preprocessing never runs


def test_thumbnails_are_cached_until_the_file_changes(tmp_path, monkeypatch):
    path = save(Image.new("RGB", (600, 300), RED), tmp_path / "a.png")
    thumbs = Thumbnails(size=64)
    decoded = []
    real = images.load_image
    monkeypatch.setattr(images, "load_image", lambda *a, **k: decoded.append(a[0]) or real(*a, **k))
    first = thumbs.image(path)
    assert first.size == (64, 32) and first.getpixel((5, 5)) == RED
    assert thumbs.image(path) is first and len(decoded) == 1
    assert thumbs.data_uri(path).startswith("data:image/jpeg;base64,") and len(decoded) == 1
    save(Image.new("RGB", (600, 300), BLUE), path)
    os.utime(path, ns=(10**18, 10**18))  # a new mtime, whatever the clock's resolution
    assert thumbs.image(path).getpixel((5, 5)) == BLUE and len(decoded) == 2
    assert thumbs.image(tmp_path / "gone.png") is None


def test_a_thumbnail_file_is_made_once_and_handed_out_again_without_decoding(tmp_path, monkeypatch):
    """Issue 29: Search shows thumbnails as files; a file already made is neither decoded nor encoded
    again, a file swept away (gradio's cache) is written again, and a changed image gets a new file."""
    path = save(Image.new("RGB", (600, 300), RED), tmp_path / "a.png")
    folder = tmp_path / "cache"
    thumbs = Thumbnails(size=64)
    decoded, encoded = [], []
    real_load, real_encode = images.load_image, images.encode_picture
    monkeypatch.setattr(images, "load_image", lambda *a, **k: decoded.append(a[0]) or real_load(*a, **k))
    monkeypatch.setattr(images, "encode_picture", lambda *a, **k: encoded.append(1) or real_encode(*a, **k))
    first = thumbs.file(path, folder)
    assert Path(first).parent.parent == folder and first.endswith(".webp")
    with Image.open(first) as shown:
        assert shown.size == (64, 32) and shown.format == "WEBP"
    assert thumbs.file(path, folder) == first and len(decoded) == 1 and len(encoded) == 1
    assert [p for p in folder.rglob("*") if p.is_file()] == [Path(first)]  # no partial file left
    Path(first).unlink()  # swept: written again from the thumbnail in memory, not decoded again
    assert thumbs.file(path, folder) == first and Path(first).is_file() and len(decoded) == 1
    save(Image.new("RGB", (600, 300), BLUE), path)
    os.utime(path, ns=(10**18, 10**18))
    again = thumbs.file(path, folder)
    assert again != first and len(decoded) == 2
    with Image.open(again) as shown:
        assert shown.convert("RGB").getpixel((5, 5))[2] > 200  # blue
    assert thumbs.file(tmp_path / "gone.png", folder) is None
    assert Thumbnails(size=64).file(path, folder) != again  # another instance: another salt, another name


def test_save_picture_writes_the_same_picture_once(tmp_path):
    picture = Image.new("RGB", (40, 20), RED)
    first = images.save_picture(picture, tmp_path, "WEBP", name="map", quality=90, method=0)
    assert first.endswith("map.webp") and Path(first).parent.parent == tmp_path
    assert images.save_picture(picture.copy(), tmp_path, "WEBP", name="map", quality=90, method=0) == first
    other = images.save_picture(Image.new("RGB", (40, 20), BLUE), tmp_path, "WEBP", name="map")
    assert other != first and len([p for p in tmp_path.rglob("*") if p.is_file()]) == 2


# --- walk_folder: the files it finds -----------------------------------------------------------------

def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def rel(paths, root):
    return [p.relative_to(root).as_posix() for p in paths]


def test_walk_folder_order_nesting_extensions_hidden(tmp_path):
    root = tmp_path / "root"
    for name in ["b.jpg", "a.PNG", "sub/z.webp", "sub/deeper/c.TIFF", "sub/a.Jpeg", "a_dir/x.gif",
                 "notes.txt", "sub/readme.md", "noext", ".hidden.jpg", ".cache/in_hidden.png",
                 "sub/.git/obj.png", "photo.jpg.txt"]:
        touch(root / name)
    (root / "dir.png").mkdir()  # a directory with an image extension is not a file
    first = walk_folder(root).files
    assert rel(first, root) == ["a.PNG", "a_dir/x.gif", "b.jpg", "sub/a.Jpeg", "sub/deeper/c.TIFF",
                                "sub/z.webp"]
    assert all(p.is_absolute() for p in first)
    assert walk_folder(str(root)).files == first


def test_walk_folder_symlinks(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    touch(root / "real/a.jpg")
    touch(outside / "secret.jpg")
    touch(outside / "secret2.png")
    (root / "link_to_file.jpg").symlink_to(root / "real/a.jpg")
    (root / "link_to_outside_dir").symlink_to(outside, target_is_directory=True)
    (root / "link_to_outside_file.png").symlink_to(outside / "secret2.png")
    (root / "real/loop").symlink_to(root, target_is_directory=True)  # link to an ancestor
    (root / "real/self").symlink_to(root / "real", target_is_directory=True)
    (root / "broken.jpg").symlink_to(root / "nowhere.jpg")
    found = walk_folder(root).files
    assert rel(found, root) == ["link_to_file.jpg", "real/a.jpg"]
    assert rel(walk_folder(root, follow_links=False).files, root) == ["real/a.jpg"]


def test_walk_folder_follows_links_to_dirs_inside_root(tmp_path):
    root = tmp_path / "root"
    touch(root / "store/deep/x.png")
    (root / "shortcut").symlink_to(root / "store/deep", target_is_directory=True)
    # each real directory is scanned once: "shortcut" comes first in name order and wins
    assert rel(walk_folder(root).files, root) == ["shortcut/x.png"]


def test_walk_folder_root_is_a_link(tmp_path):
    touch(tmp_path / "real/a.png")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    assert walk_folder(tmp_path / "alias").files == [tmp_path / "alias/a.png"]


def test_walk_folder_bad_root(tmp_path):
    with pytest.raises(ImageError, match="folder not found"):
        walk_folder(tmp_path / "missing")
    with pytest.raises(ImageError, match="not a folder"):
        walk_folder(touch(tmp_path / "file.png"))


def test_module_does_not_import_gradio():
    assert "gradio" not in Path(images.__file__).read_text()


def test_thumbnails_notice_a_rewrite_that_keeps_the_file_size(tmp_path):
    path = save(Image.new("RGB", (60, 30), RED), tmp_path / "a.bmp")
    thumbs = Thumbnails(size=32)
    assert thumbs.image(path).getpixel((2, 2)) == RED
    size = path.stat().st_size
    save(Image.new("RGB", (60, 30), BLUE), path)  # a BMP of the same dimensions has the same size...
    assert path.stat().st_size == size
    os.utime(path, ns=(10**18, 10**18))             # ...so only the mtime tells the edit apart
    assert thumbs.image(path).getpixel((2, 2)) == BLUE


def test_the_pixel_limit_itself_is_allowed(tmp_path):
    path = save(Image.new("RGB", (50, 40), RED), tmp_path / "a.png")
    assert load_image(path, Limits(max_pixels=2000)).size == (50, 40)
    with pytest.raises(ImageError, match="image too large: 50x40"):
        load_image(path, Limits(max_pixels=1999))
