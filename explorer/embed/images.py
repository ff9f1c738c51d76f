"""Safe image loading: the only place in the project that opens image files (folders.py walks folders).

Every failure becomes an `ImageError` with a one-line, human-readable reason. Limits (file size,
pixel count, and the peak memory the decode will take, `decode_cost`, measured per format) are
checked from the header before any pixel data is decoded; each refusal names its setting.
`use_decoder` routes every decode through decode_pool.py's worker processes (the hosted app). PIL's
warnings never reach stderr: a DecompressionBombWarning refuses the image, other warnings are
dropped, or added to the reason when the image fails. PIL's globals (`MAX_IMAGE_PIXELS`,
`ImageFile.LOAD_TRUNCATED_IMAGES`) are never changed; with PIL's default for the latter, truncated
files are refused (a caller that sets it True elsewhere makes PIL pad truncated files instead).

Decoding for a model is bounded by what the model keeps (`Fit`, read from its preprocessing by
`fit_of`), so a 1 x 2,000,000 strip costs no more than a photo: a JPEG is decoded at the smallest
reduced scale that still covers the model's input (Image.draft, DRAFT_GAP); for centre-cropping models an
image more than CROP_FROM times longer than the part
the model keeps is cropped to that part (plus the resampling filter's reach); and an image more
than SHRINK_FROM times the size the model resizes it to is first resized to GAP times that size
(Image.resize with `reducing_gap`: an integer Image.reduce, then bicubic), so the model's own resize
lands on the same pixels. GAP = 3 is PIL's rule for a two-step resize that matches the direct one:
tensors equal the unbounded path's up to resampling. Below SHRINK_FROM a second resize costs more
than it saves (a 1024 x 768 photo: 7 ms direct, 19 ms shrunk first), so ordinary photos are not touched.
Models that keep the whole image ("longest") refuse an aspect ratio they would shrink below a pixel.
"""
from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import re
import secrets
import stat
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .cache import LRU

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# The only decoders PIL may use (JPEG covers MPO): anything else (EPS runs Ghostscript, for one)
# is refused whatever the file is called.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "DIB", "GIF", "TIFF")
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 89_478_485
DEFAULT_MAX_DECODE_BYTES = 256 * 1024 * 1024
GAP = 3              # keep >= GAP x the resolution the preprocessing resamples to
# A JPEG decodes at the smallest DCT scale (1/2, 1/4, 1/8) that keeps >= DRAFT_GAP x that resolution.
# 1 (not GAP): the DCT's own scaling is a box filter, so the model's resize has little left to alias;
# bench/bench_decode.py measures the time saved and the embeddings' cosine to a full decode.
DRAFT_GAP = 1
CROP_FROM = 8        # crop only images more than CROP_FROM times the region the model keeps
SHRINK_FROM = 8      # shrink first only images more than SHRINK_FROM times what the model resizes to
FALLBACK_SIDE = 1024  # unknown preprocessing: keep the whole image, at most GAP x this on a side

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


class ImageError(Exception):
    """An image (or folder) that could not be used; `.path` names it, `.reason` says why in one line."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class ImageFailure:
    path: str
    reason: str


@dataclass(frozen=True)
class Limits:
    """How large an image file (bytes) and an image (pixels) may be before it is refused, and how
    much memory decoding one image may take (`max_decode_bytes`: its peak, every copy counted,
    estimated from the header by decode_cost after any reduced-scale JPEG decoding)."""
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES


@dataclass(frozen=True)
class Fit:
    """What will be done to a decoded image, so that decoding does no more than that needs.

    `size` (width, height) is what the resize aims at and `mode` how, as open_clip's resize_mode:
    "shortest" (the shorter side to size, then a centre crop of `crop`), "longest" (the whole image
    inside size, then padded), "squash" (each axis to size), or "cap" (the whole image, no larger
    than size: thumbnails and preprocessing `fit_of` does not recognise). `truncates`: the resize
    is torchvision's Resize(int), which truncates the longer side where open_clip's rounds it.
    """
    size: tuple[int, int]
    mode: str
    crop: tuple[int, int] | None = None
    truncates: bool = False

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """The size the resize gives a width x height image, computed as the resize computes it
        (0 on a side: the image cannot be used)."""
        tw, th = self.size
        if self.mode == "squash":
            return tw, th
        if self.truncates:
            return (tw, int(tw * height / width)) if width <= height else (int(th * width / height), th)
        ratio = (min if self.mode == "shortest" else max)(width / tw, height / th)
        if self.mode == "cap":
            ratio = max(ratio, 1.0)
            return max(1, round(width / ratio)), max(1, round(height / ratio))
        return round(width / ratio), round(height / ratio)


DEFAULT_LIMITS = Limits()


def read_file(path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS, *, name: str | None = None) -> bytes:
    """The bytes of one image file, or ImageError (not found, a folder, not a regular file, empty,
    larger than the limit). The size is checked before anything is read."""
    label = name or os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(label, "file not found") from None
    except OSError as exc:  # permission denied, name too long, ...
        raise ImageError(label, f"cannot read file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(label, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(label, "not a regular file")
    check_size(label, st.st_size, limits.max_bytes)
    try:  # O_NONBLOCK: a FIFO put in the file's place after the stat must not block the open
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as fp:
            if not stat.S_ISREG(os.fstat(fp.fileno()).st_mode):
                raise ImageError(label, "not a regular file")
            # No more than the file holds: read(n) reserves n bytes first, which a decode worker's
            # address-space limit would refuse.
            data = fp.read(min(limits.max_bytes, st.st_size) + 1)
            if len(data) > st.st_size:  # it grew since the stat
                data += fp.read(limits.max_bytes + 1 - len(data))
    except OSError as exc:
        raise ImageError(label, f"cannot read file ({exc.strerror or exc})") from None
    check_size(label, len(data), limits.max_bytes)  # the file may have changed since stat
    return data


def load_image(source: str | os.PathLike | bytes, limits: Limits = DEFAULT_LIMITS, *,
               name: str | None = None, fit: Fit | None = None) -> Image.Image:
    """Decode one image safely to RGB or raise ImageError with a clear reason.

    `source` is a file path or the file's bytes; `name` (default: the path, or "<bytes>") is what
    error messages call it. EXIF orientation is applied, transparency is composited onto white,
    16-bit greyscale is scaled to 8 bits, and animated images give their first frame.
    Size, pixel and memory limits are checked before decoding. PIL's own bomb check still runs
    inside `Image.open`: above Image.MAX_IMAGE_PIXELS an image is refused whatever the limit says.
    With `fit` (see Fit, fit_of) the result is only as large as that needs, see the module's doc;
    an image the fit cannot use at all (too extreme an aspect ratio) is refused.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        check_size(label, len(source), limits.max_bytes)
        source = data = bytes(source)
    else:
        label = name or os.fspath(source)
        data = None
    decoder = _DECODER
    if decoder is not None:  # a decode pool (decode_pool.py): its worker reads, checks and decodes
        return decoder(source if data is not None else os.fspath(source), limits, fit, label)
    if data is None:
        data = read_file(source, limits, name=label)
    return _decode(io.BytesIO(data), label, limits, fit)


Decoder = Callable[[bytes | str, Limits, "Fit | None", str], Image.Image]
_DECODER: Decoder | None = None


def use_decoder(decoder: Decoder | None) -> None:
    """Route every load_image (and so prepare and Thumbnails) in this process through `decoder`
    (source bytes or path, limits, fit, name) -> RGB image or ImageError: decode_pool.configure
    installs its pool's. None: decode in this process (the default; the CLI's way). A forked child
    (a DataLoader worker) always decodes in-process."""
    global _DECODER
    _DECODER = decoder


def decoder_in_use() -> Decoder | None:
    return _DECODER


def prepare(source: str | os.PathLike | bytes, preprocess: Callable, limits: Limits = DEFAULT_LIMITS, *,
            name: str | None = None):
    """The decode step every encoder input goes through: decode safely, bounded by what the model's
    preprocessing keeps (fit_of), then that preprocessing (resize, crop, normalise) -> a tensor.
    Any failure, MemoryError included, is an ImageError."""
    image = load_image(source, limits, name=name, fit=fit_of(preprocess))
    try:
        return preprocess(image)
    except Exception as exc:  # an odd image must not end a run
        label = name or ("<bytes>" if isinstance(source,
                                                 (bytes, bytearray, memoryview)) else os.fspath(source))
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ImageError(label, f"preprocessing failed ({detail})") from None


_PIXEL_STEPS = {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "PILToTensor", "Normalize",
                "ConvertImageDtype", "_convert_to_rgb"}


def fit_of(preprocess: Callable) -> Fit:
    """What `preprocess` does to an image's geometry, read from its transforms: open_clip's
    image_transform in each resize_mode (and torchvision's Resize + CenterCrop) are recognised;
    anything else gives Fit((FALLBACK_SIDE, FALLBACK_SIDE), "cap")."""
    steps = [t for t in getattr(preprocess, "transforms", None) or ()
             if getattr(t, "__name__", type(t).__name__) not in _PIXEL_STEPS]
    kinds = [type(t).__name__ for t in steps]
    try:
        if kinds == ["Resize", "CenterCrop"] and steps[0].max_size is None:
            size = steps[0].size
            side = size if isinstance(size, int) else (size[0] if len(size) == 1 else None)
            if side is not None:
                return Fit((side, side), "shortest", _wh(steps[1].size), truncates=True)
        if kinds == ["ResizeKeepRatio", "CenterCrop"] and steps[0].longest == 0:
            return Fit(_wh(steps[0].size), "shortest", _wh(steps[1].size))
        if kinds == ["ResizeKeepRatio", "CenterCropOrPad"] and steps[0].longest == 1:
            return Fit(_wh(steps[0].size), "longest")
        if kinds == ["Resize"] and not isinstance(steps[0].size, int) and len(steps[0].size) == 2:
            return Fit(_wh(steps[0].size), "squash")
    except (AttributeError, TypeError, ValueError, IndexError):
        pass
    return Fit((FALLBACK_SIDE, FALLBACK_SIDE), "cap")


def _wh(size) -> tuple[int, int]:
    """torchvision's (height, width), or one int for both, as (width, height)."""
    if isinstance(size, int):
        return size, size
    height, width = (size[0], size[0]) if len(size) == 1 else size
    return int(width), int(height)


def file_key(path: str | os.PathLike) -> tuple | None:
    """(absolute path, size, mtime_ns) of a file, or None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


class Thumbnails:
    """Small RGB copies of image files, cached by path, size and mtime (a changed file is read again),
    in memory (`image`, `data_uri`) or as files written once (`file`)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, size: int = 256, capacity: int = 512):
        self.limits, self.size = limits, size
        self._cache = LRU(capacity)
        self._salt = secrets.token_hex(16)

    def image(self, path: str | os.PathLike) -> Image.Image | None:
        """A thumbnail of `path`, or None when it is gone or no longer decodes."""
        key = file_key(path)
        if key is None:
            return None
        thumb = self._cache.get(key)
        if thumb is None:
            try:
                thumb = load_image(path, self.limits, fit=Fit((self.size, self.size), "cap"))
            except ImageError:
                return None
            thumb.thumbnail((self.size, self.size))
            self._cache.put(key, thumb)
        return thumb

    def file(self, path: str | os.PathLike, folder: str | os.PathLike) -> str | None:
        """The thumbnail of `path` as a WebP file under `folder` (as `save_picture` lays it out), made
        once: a file already there for the same path, size and mtime is handed out again, neither
        decoded nor encoded (its ctime refreshed, so a sweep of old files spares one just handed out);
        None when `path` is gone or no longer decodes. Its name is a digest of that key salted per
        instance, so nobody who lacks the key can name it."""
        key = file_key(path)
        if key is None:
            return None
        digest = hashlib.sha256(repr((self._salt, self.size, key)).encode()).hexdigest()[:40]
        target = os.path.join(os.fspath(folder), digest, THUMB_NAME)
        try:
            os.utime(target)
            return target
        except OSError:  # not made yet, or swept since
            pass
        thumb = self.image(path)
        if thumb is None:
            return None
        _write(target, encode_picture(thumb, THUMB_FORMAT))
        return target

    def data_uri(self, path: str | os.PathLike, size: int = 72) -> str | None:
        """A small JPEG of the image as a data: URI (for hover previews), or None."""
        thumb = self.image(path)
        if thumb is None:
            return None
        small = thumb.copy()
        small.thumbnail((size, size))
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=75)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


THUMB_FORMAT, THUMB_NAME = "WEBP", "thumb.webp"  # the web UI's own format for a PIL image, at its defaults


def encode_picture(image: Image.Image, format: str = "WEBP", **params) -> bytes:
    """`image` encoded in `format` (PIL's name) with PIL's `params` (quality, method...)."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def save_picture(image: Image.Image, folder: str | os.PathLike, format: str = "WEBP", name: str = "image",
                 **params) -> str:
    """`image` encoded (encode_picture) into folder/<sha256 of the bytes>/<name>.<format>, the layout of
    the web UI's file cache: the same picture is the same file, written once. Returns its path. A file
    inside that cache given to a page component is neither encoded nor copied again."""
    data = encode_picture(image, format, **params)
    digest = hashlib.sha256(data).hexdigest()[:40]
    target = os.path.join(os.fspath(folder), digest, f"{name}.{format.lower()}")
    try:
        os.utime(target)  # there already: its ctime refreshed (see Thumbnails.file)
    except OSError:
        _write(target, data)
    return target


def _write(target: str, data: bytes) -> None:
    """`data` written to `target` under a temporary name then renamed into place: a reader never sees
    a partial file, and two writers of the same file never clash."""
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=folder, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
        os.replace(staging, target)
    except BaseException:
        try:
            os.unlink(staging)
        except OSError:
            pass
        raise


def check_size(label: str, size: int, max_bytes: int) -> None:
    """ImageError unless a file of `size` bytes is non-empty and within the limit (every reader of
    image bytes checks with this: local files, GPU decoding, object stores)."""
    if size == 0:
        raise ImageError(label, "empty file")
    if size > max_bytes:
        raise ImageError(label, f"file too large: {size:,} bytes exceeds the limit of {max_bytes:,} bytes"
                                f" ({max_bytes / 1024 / 1024:.1f} MiB; {set_with('max_upload_mb')})")


# catch_warnings swaps process-wide state: two threads inside it at once could leave warnings
# recorded into a dead list for good. So decodes in one process take turns; a forked child (a
# DataLoader worker) gets a fresh lock, as the thread holding the parent's does not exist there.
_WARNINGS_LOCK = threading.Lock()


def _new_warnings_lock() -> None:
    global _WARNINGS_LOCK, _DECODER
    _WARNINGS_LOCK = threading.Lock()
    _DECODER = None  # the parent's pool and its pipes are not this child's


os.register_at_fork(after_in_child=_new_warnings_lock)


def _decode(fp, label: str, limits: Limits, fit: Fit | None) -> Image.Image:
    """Open from a binary file object, check the limits from the header, then decode to RGB
    (bounded by `fit`). PIL's warnings are recorded, never printed; when the image fails, the
    first one is added to the reason."""
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _open(fp, label, limits, fit, caught)
        except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, struct.error, ...
            reason = exc.reason if isinstance(exc, ImageError) else _reason(exc)
            if isinstance(exc, Image.DecompressionBombError):  # raised inside Image.open, before our check
                reason = too_many_pixels(_bomb_pixels(exc), limits)
            said = [str(w.message).splitlines()[0] for w in caught if str(w.message).strip()]
            if said and not reason.startswith("image too large"):
                reason = f"{reason}; PIL warned: {said[0]}"
            raise ImageError(label, reason) from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image or unsupported format"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"image too large: {exc}"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"truncated or corrupt image ({detail})"


def _open(fp, label: str, limits: Limits, fit: Fit | None, caught: list) -> Image.Image:
    _check_webp_header(fp, label, limits)
    with Image.open(fp, formats=ALLOWED_FORMATS) as im:
        width, height = im.size
        _check_pixels(width, height, label, limits)
        if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
            raise ImageError(label, too_many_pixels(f"{width}x{height} = {width * height:,} pixels", limits))
        if fit is not None:
            _draft(im, fit, label)
        _check_cost(im, (width, height), fp, limits, fit, label)
        im.load()  # first frame only; raises on truncated data
        try:
            ImageOps.exif_transpose(im, in_place=True)  # in place: no copy of an image already upright
        except Exception:  # malformed EXIF: keep the pixels as stored
            pass
        if fit is None:
            return _to_rgb(im)
        _usable(fit, *im.size, label)  # again: a PNG's EXIF orientation may only be known now
        box = crop_box(fit, *im.size)
        part = im.crop(box) if box else im
        if part.mode in _SHRINK_FIRST and "transparency" not in part.info:
            # Per-channel resampling commutes with L -> RGB (and RGB -> RGB): shrinking first gives the
            # same pixels without a full-size RGB copy.
            small = _shrink(part, fit)
            return _to_rgb(small) if small is part or small.mode != "RGB" else small
        return _shrink(_to_rgb(part), fit)


def _check_pixels(width: int, height: int, label: str, limits: Limits) -> None:
    if width * height > limits.max_pixels:
        raise ImageError(label, too_many_pixels(f"{width}x{height} = {width * height:,} pixels", limits))


def too_many_pixels(pixels: str, limits: Limits) -> str:
    """'image too large: `pixels` exceeds the limit of N pixels (set with ...)', N the limit in force:
    the max_pixels setting, or Pillow's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS) where that
    is lower, as in this process when the setting is raised above Pillow's default (a decode worker
    sets Pillow's guard to the setting)."""
    guard = Image.MAX_IMAGE_PIXELS
    if not guard or limits.max_pixels <= guard:
        return (f"image too large: {pixels} exceeds the limit of {limits.max_pixels:,} pixels "
                f"({set_with('max_pixels')})")
    return (f"image too large: {pixels} exceeds the limit of {guard:,} pixels (Pillow's decompression-bomb "
            f"guard, which {setting_names('max_pixels')[0]} cannot raise in this process)")


def _bomb_pixels(exc: Exception) -> str:
    """'900,000,000 pixels': the size Pillow's DecompressionBombError names ('the image' if it names none)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(found.group(1)):,} pixels" if found else "the image"


def webp_size(head: bytes) -> tuple[int, int] | None:
    """A WebP's canvas (width, height) read from its first 30 bytes (RIFF + the VP8X, VP8L or VP8 header,
    as libwebp reads them), or None when `head` is not a WebP or is too short."""
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":  # extended: the canvas, 24-bit little-endian, minus one
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8L" and head[20] == 0x2F:  # lossless: 14 bits each, minus one
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":  # lossy key frame
        return (int.from_bytes(head[26:28], "little") & 0x3FFF,
                int.from_bytes(head[28:30], "little") & 0x3FFF)
    return None


def _check_webp_header(fp, label: str, limits: Limits) -> None:
    """Refuse a WebP over the limits before PIL opens it: Pillow's WebP opener makes libwebp's animation
    decoder, which allocates its canvases at once (WEBP_KEPT bytes a pixel), so a 38-byte file could
    take gigabytes of address space before the checks after opening could run. The cost is decode_cost's
    for a WebP opened as RGB(A): the raster, the kept canvases and the frame copy."""
    if not isinstance(fp, io.BytesIO):
        return
    with fp.getbuffer() as view:  # the head only: no copy of the whole file on every decode
        data = bytes(view[:4096])
    size = webp_size(data[:30])
    if size is None:
        return
    _check_pixels(*size, label, limits)
    peak = int(DECODE_OVERHEAD + (4 + WEBP_KEPT + WEBP_FRAME) * size[0] * size[1])
    if peak > limits.max_decode_bytes:
        animated = data[12:16] == b"VP8X" and bool(data[20] & 0x02)  # VP8X flags: animation
        what = ("animated " if animated else "") + ("lossless " if b"VP8L" in data else "") + "WebP"
        raise ImageError(
            label, f"image too large: decoding {size[0]}x{size[1]} {what} needs about {_about(peak)}"
            f" MiB, more than the limit of {_about(limits.max_decode_bytes)} MiB"
            f" ({set_with('max_decode_mb')})")


def _about(n: int) -> str:
    """MiB, whole from 10 on ('930'), else to a tenth ('68.7')."""
    return f"{round(n / 2**20):,}" if n >= 10 * 2**20 else _mib(n)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}".removesuffix(".0")


def setting_names(setting: str) -> tuple[str, str]:
    """('--max-pixels', 'EXPLORER_MAX_PIXELS'): the flag and the environment variable of a setting. The
    one naming rule: inputs/settings.py names its flags and variables with it (flag_and_variable)."""
    return "--" + setting.replace("_", "-"), f"EXPLORER_{setting.upper()}"


def set_with(setting: str) -> str:
    """'set with --max-pixels or EXPLORER_MAX_PIXELS': how a person changes the setting a refusal names."""
    return "set with {} or {}".format(*setting_names(setting))


# --- what a decode costs, from the header --------------------------------------------------------
# Peak memory a decode adds, in bytes per pixel of the decoded size, measured as the growth of
# VmHWM (peak RSS) in a fresh process per sample (4000 x 4000 images, Pillow 12.3, libwebp 1.5):
#   PNG RGB 8-bit 4.9 with a model's fit (raster 4 + the resize's first pass), 8.1 without (+ the RGB
#   copy); L / 1 / P 5.1-5.3; P with tRNS 10.1 (RGBA 4 + RGB 4 + alpha 1); RGBA 13.1; I;16 9.6.
#   Interlaced PNG (Adam7) the same as progressive rows: Pillow decodes the passes into the image.
#   WebP lossy or lossless, RGB or RGBA, still or animated: 16.3-17.3 (libwebp's animation decoder,
#   which Pillow uses for every WebP, keeps a 4 B/px canvas and the previous frame's for as long
#   as the image is open; each frame is copied out through a 4 B/px bytes object).
#   BMP RLE8/RLE4: 5.3 (Pillow's pure-Python decoder builds a bytearray and a bytes copy, 1 B/px each).
#   TIFF: as PNG, plus the compressed file (libtiff is handed a copy) and one strip or tile buffer.
#   JPEG: as PNG after draft, plus, for a progressive or multi-scan file, libjpeg's whole-image
#   coefficient buffer at FULL size whatever the draft: 2 B per coefficient per component
#   (3 B/px at 4:2:0, 6 B/px at 4:4:4: a drafted 4000 x 4000 progressive 4:4:4 JPEG still takes 95 MiB).
_SHRINK_FIRST = {"RGB", "L"}
_DEEP_MODES = ("I", "F")    # I, I;16*, F: rescaled to 8 bits through a float32 array (_to_uint8)
RESIZE_BYTES = 1.5          # the resize's first pass: (GAP / SHRINK_FROM) of the image at 4 B/px
WEBP_KEPT = 8               # libwebp's canvas and previous frame, 4 B/px each, kept while open
WEBP_FRAME = 4.5            # each frame copied out to a bytes object (4), the decoder's rows
RLE_BUFFERS = 2.5           # bytearray (grown, up to 1/8 spare) + its bytes copy
RLE_PIXELS_SHARE = 8        # RLE BMPs may have max_pixels / 8: pure Python pads rows at ~5 M px/s
DECODE_OVERHEAD = 3 << 20  # tables, line buffers, Python objects: ~3 MiB measured whatever the size
MAX_JPEG_SCANS = 100        # encoders write ~10; each scan is a pass over the whole image


@dataclass(frozen=True)
class DecodeCost:
    """What decoding one image will take, estimated from its header: `bytes` at the peak, and
    `what` it is, as a refusal names it ("7000x7000 lossless WebP")."""
    bytes: int
    what: str


def decode_cost(im: Image.Image, full_size: tuple[int, int], data: bytes | None = None,
                fit: Fit | None = None) -> DecodeCost:
    """The peak memory decoding the opened (and drafted) `im` to RGB will take: the raster in its
    mode, the decoder's own buffers, the conversion to RGB (alpha over white, 16-bit to 8) and the
    first resize; factors measured, see above. `full_size`: the size before any draft; `data`:
    the file's bytes (needed for JPEG scans, WebP kinds and TIFF's copy)."""
    width, height = im.size
    pixels = width * height
    raster = pixels * _pixel_bytes(im.mode)
    kept, decoding, what = _decoder_bytes(im, full_size, data or b"")
    converting = _converting_bytes(im, fit) * pixels
    peak = DECODE_OVERHEAD + raster + kept + max(decoding, converting)
    if _orientation(im) in (5, 6, 7, 8, 2, 3, 4):
        peak = max(peak, 2 * raster + kept)  # the transpose: a second raster for a moment
    return DecodeCost(int(peak), f"{full_size[0]}x{full_size[1]} {what}")


def _pixel_bytes(mode: str) -> int:
    """What PIL allocates a pixel: 1 byte for 8-bit single-band modes, 2 for 16-bit ones, 4 for
    everything else (RGB and LA are stored padded to 4)."""
    return 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4


def _converting_bytes(im: Image.Image, fit: Fit | None) -> float:
    """Bytes a pixel the conversion to RGB (and the first resize) adds while the raster still lives."""
    alpha = im.mode in _ALPHA_MODES or "transparency" in im.info
    if im.mode.startswith(_DEEP_MODES):  # PIL's bytes and numpy's copy of them, float32, uint8, L, RGB
        return 2 * _pixel_bytes(im.mode) + 7 + RESIZE_BYTES
    if alpha:  # RGBA (unless it is RGBA already), the RGB result, the alpha band
        return (0 if im.mode == "RGBA" else 4) + 4 + 1 + RESIZE_BYTES
    if fit is not None and im.mode in _SHRINK_FIRST:
        return RESIZE_BYTES  # shrunk before converting (_open)
    return 4 + RESIZE_BYTES


def _decoder_bytes(im: Image.Image, full_size: tuple[int, int], data: bytes) -> tuple[int, int, str]:
    """(bytes the opened image keeps until closed, bytes its decoder needs while decoding, a name
    for its kind) for formats whose decoder holds more than the raster."""
    pixels = im.size[0] * im.size[1]
    kind = im.format or "image"
    if kind == "WEBP":
        lossless = data[12:16] == b"VP8L" or b"VP8L" in data[:4096]
        animated = getattr(im, "n_frames", 1) > 1
        what = ("animated " if animated else "") + ("lossless " if lossless else "") + "WebP"
        return WEBP_KEPT * pixels, WEBP_FRAME * pixels, what
    if kind in ("BMP", "DIB") and im.info.get("compression") in (1, 2):
        return 0, int(RLE_BUFFERS * pixels), f"RLE{8 if im.info['compression'] == 1 else 4} BMP"
    if kind == "JPEG":
        return 0, _jpeg_coefficients(im, full_size, data), _jpeg_kind(im, data)
    if kind == "TIFF":
        return 0, _tiff_buffers(im, data), "TIFF"
    if kind == "PNG":
        trns = " with transparency" if "transparency" in im.info else ""
        return 0, 0, ("interlaced " if im.info.get("interlace") else "") + (
            f"palette PNG{trns}" if im.mode == "P" else "PNG")
    return 0, 0, kind


def _jpeg_scans(data: bytes) -> int:
    """Start-of-scan markers in a JPEG (entropy-coded data escapes 0xFF, so each is a real scan)."""
    return data.count(b"\xff\xda")


def _jpeg_kind(im: Image.Image, data: bytes) -> str:
    return "progressive JPEG" if im.info.get("progressive") else (
        "multi-scan JPEG" if _jpeg_scans(data) > 1 else "JPEG")


def _jpeg_coefficients(im: Image.Image, full_size: tuple[int, int], data: bytes) -> int:
    """libjpeg's whole-image coefficient buffer, which a progressive or multi-scan JPEG needs at full
    size whatever the draft (64 coefficients of 2 bytes per 8x8 block, per component); 0 otherwise."""
    if not im.info.get("progressive") and _jpeg_scans(data) <= 1:
        return 0
    layers = getattr(im, "layer", None) or [("", 1, 1, 0)] * 3
    hmax = max(h for _, h, _, _ in layers) or 1
    vmax = max(v for _, _, v, _ in layers) or 1
    width, height = full_size
    blocks = sum(math.ceil(width * h / hmax / 8) * math.ceil(height * v / vmax / 8) for _, h, v, _ in layers)
    return blocks * 128


def _tiff_buffers(im: Image.Image, data: bytes) -> int:
    """libtiff's copy of a compressed file, and one strip or tile at up to 4 B/px (a strip as tall as
    the image, when the tags say nothing)."""
    tags = getattr(im, "tag_v2", {})
    if tags.get(259, 1) == 1:
        return 0  # uncompressed: PIL's own raw decoder, straight into the raster
    width, height = im.size
    try:
        if 322 in tags and 323 in tags:
            block = int(tags[322]) * int(tags[323])
        else:
            block = width * min(height, int(tags.get(278, height)))
    except (TypeError, ValueError):
        block = width * height
    return len(data) + 4 * min(block, width * height)


def _orientation(im: Image.Image) -> int | None:
    """The EXIF orientation, where reading it costs nothing (a PNG's getexif() would decode it)."""
    if im.format == "PNG" and "exif" not in im.info:
        return None
    try:
        return im.getexif().get(0x0112)
    except Exception:
        return None


def _check_cost(im: Image.Image, full_size: tuple[int, int], fp, limits: Limits, fit: Fit | None,
                label: str) -> None:
    """ImageError unless decoding `im` fits max_decode_bytes (and, for the decoders that are slow per
    pixel, their share of max_pixels), before any pixel is decoded."""
    data = fp.getvalue() if isinstance(fp, io.BytesIO) else b""
    cost = decode_cost(im, full_size, data, fit)
    if cost.bytes > limits.max_decode_bytes:
        raise ImageError(label, f"image too large: decoding {cost.what} needs about {_about(cost.bytes)} MiB,"
                                f" more than the limit of {_about(limits.max_decode_bytes)} MiB"
                                f" ({set_with('max_decode_mb')})")
    pixels = full_size[0] * full_size[1]
    if cost.what.endswith(" BMP") and "RLE" in cost.what and pixels > limits.max_pixels // RLE_PIXELS_SHARE:
        raise ImageError(label, f"image too large: {cost.what} ({pixels:,} pixels) is decoded by PIL in pure"
                                f" Python, so it may have an eighth of the pixel limit,"
                                f" {limits.max_pixels // RLE_PIXELS_SHARE:,} ({set_with('max_pixels')})")
    if im.format == "JPEG" and _jpeg_scans(data) > MAX_JPEG_SCANS:
        raise ImageError(label, f"image too costly: a JPEG in {_jpeg_scans(data):,} scans (encoders write"
                                f" about 10; each is a pass over the whole image; at most {MAX_JPEG_SCANS})")


def _draft(im: Image.Image, fit: Fit, label: str) -> None:
    """Refuse an image `fit` cannot use; let a JPEG decode at the smallest scale that keeps DRAFT_GAP x
    the size the preprocessing resizes it to (other formats ignore draft; DRAFT_GAP None: no draft)."""
    transposed = False
    if im.format != "PNG" or "exif" in im.info:  # a PNG's getexif() decodes it to look past the pixels
        try:
            transposed = im.getexif().get(0x0112) in (5, 6, 7, 8)  # Orientation swaps width and height
        except Exception:
            pass
    width, height = im.size[::-1] if transposed else im.size
    out = _usable(fit, width, height, label)
    if DRAFT_GAP is None:
        return
    want = (min(width, out[0] * DRAFT_GAP), min(height, out[1] * DRAFT_GAP))
    if want != (width, height):
        im.draft(None, want[::-1] if transposed else want)


def _usable(fit: Fit, width: int, height: int, label: str) -> tuple[int, int]:
    """fit.resized(width, height), or ImageError when that loses a side."""
    out = fit.resized(width, height)
    if min(out) < 1:
        g = math.gcd(width, height)
        raise ImageError(
            label, f"aspect ratio {width // g:,}:{height // g:,} is too extreme: this model keeps"
            " the whole image, which would be less than one pixel across")
    return out


def crop_box(fit: Fit, width: int, height: int) -> tuple[int, int, int, int] | None:
    """For a centre-cropping fit, the centred part of the image the model keeps, with a margin for
    the resampling filter; None unless the image is more than CROP_FROM times longer than that.
    The side that sets the scale is kept whole, so the preprocessing scales the crop as the image."""
    if fit.mode != "shortest" or fit.crop is None:
        return None
    out = fit.resized(width, height)
    axis = 1 if out[1] / fit.crop[1] >= out[0] / fit.crop[0] else 0  # the axis the crop cuts most
    side = (width, height)[axis]
    per_out = side / out[axis]  # input pixels per output pixel
    margin = math.ceil(2 * max(1.0, per_out)) + 1  # bicubic reaches 2 output pixels either side
    keep = min(side, math.ceil(max(fit.crop[axis], fit.size[axis]) * per_out) + 2 * margin)
    keep += (side - keep) % 2  # same parity as the side: the crop stays exactly centred
    if side <= CROP_FROM * keep:
        return None
    start = (side - keep) // 2
    return (0, start, width, start + keep) if axis else (start, 0, start + keep, height)


def _shrink(image: Image.Image, fit: Fit) -> Image.Image:
    """`image` resized to exactly GAP x the size the preprocessing will resize it to, when it is
    more than SHRINK_FROM x that: the same geometry, so the preprocessing lands on the same pixels. ("cap":
    no larger than GAP x size, keeping the aspect ratio as far as a pixel allows.)"""
    if fit.mode == "cap":
        scale = min(1.0, GAP * fit.size[0] / image.width, GAP * fit.size[1] / image.height)
        want = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    else:
        out = fit.resized(*image.size)
        if image.width <= out[0] * SHRINK_FROM and image.height <= out[1] * SHRINK_FROM:
            return image  # a second resize would cost more than it saves
        want = (min(image.width, out[0] * GAP), min(image.height, out[1] * GAP))
        if fit.mode != "squash" and (want[0] == image.width or want[1] == image.height):
            return image  # the aspect ratio must stay what it was: both sides shrink or neither
    if want == image.size:
        return image
    return image.resize(want, Image.Resampling.BICUBIC, reducing_gap=GAP)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Return a new, loaded RGB image: alpha over white, high-bit-depth greyscale rescaled to 8 bits."""
    if im.mode.startswith("I") or im.mode == "F":
        im = Image.fromarray(_to_uint8(np.asarray(im)), "L")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale 16-bit (or 32-bit int / float) greyscale to 0..255, in one float32 copy (float64 copies
    took 36 bytes a pixel at the peak)."""
    is_float = arr.dtype.kind == "f"
    work = arr.astype(np.float32)  # a copy, so the ops below may work in place
    np.nan_to_num(work, copy=False)
    lo, hi = float(work.min()), float(work.max())
    if not is_float and lo >= 0 and hi <= 65535:
        work /= 257.0  # 16-bit range
    elif lo >= 0 and hi <= 1.0:
        work *= 255.0  # float image in 0..1
    elif hi > lo:
        work -= lo
        work *= 255.0 / (hi - lo)
    else:
        work[...] = 0
    np.rint(work, out=work)
    np.clip(work, 0, 255, out=work)
    return work.astype(np.uint8)
