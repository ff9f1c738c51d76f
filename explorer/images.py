"""Safe image loading: the only place in the project that opens image files (folders.py walks folders).

Every failure becomes an `ImageError` with a one-line, human-readable reason. Limits (file size,
pixel count, decoded bytes) are checked from the header before any pixel data is decoded. PIL's
warnings never reach stderr: a DecompressionBombWarning refuses the image, other warnings are
dropped, or added to the reason when the image fails. PIL's globals (`MAX_IMAGE_PIXELS`,
`ImageFile.LOAD_TRUNCATED_IMAGES`) are never changed; with PIL's default for the latter, truncated
files are refused (a caller that sets it True elsewhere makes PIL pad truncated files instead).

Decoding for a model is bounded by what the model keeps (`Fit`, read from its preprocessing by
`fit_of`), so a 1 x 2,000,000 strip costs no more than a photo: a JPEG is decoded at the smallest
reduced scale that still covers the model's input (Image.draft, DRAFT_GAP); for centre-cropping models an image more than CROP_FROM times longer than the part
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
import io
import math
import os
import stat
import threading
import warnings
from dataclasses import dataclass
from typing import Callable

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
    much memory decoding one image may take (`max_decode_bytes`: the raster PIL allocates, from the
    header, after any reduced-scale JPEG decoding; the peak is a small multiple of it)."""
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
            data = fp.read(limits.max_bytes + 1)
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
        data = bytes(source)
    else:
        label = name or os.fspath(source)
        data = read_file(source, limits, name=label)
    return _decode(io.BytesIO(data), label, limits, fit)


def prepare(source: str | os.PathLike | bytes, preprocess: Callable, limits: Limits = DEFAULT_LIMITS, *,
            name: str | None = None):
    """The decode step every encoder input goes through: decode safely, bounded by what the model's
    preprocessing keeps (fit_of), then that preprocessing (resize, crop, normalise) -> a tensor.
    Any failure, MemoryError included, is an ImageError."""
    image = load_image(source, limits, name=name, fit=fit_of(preprocess))
    try:
        return preprocess(image)
    except Exception as exc:  # an odd image must not end a run
        label = name or ("<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source))
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
    """Small RGB copies of image files, cached by path, size and mtime (a changed file is read again)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, size: int = 256, capacity: int = 512):
        self.limits, self.size = limits, size
        self._cache = LRU(capacity)

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


def check_size(label: str, size: int, max_bytes: int) -> None:
    """ImageError unless a file of `size` bytes is non-empty and within the limit (every reader of
    image bytes checks with this: local files, GPU decoding, object stores)."""
    if size == 0:
        raise ImageError(label, "empty file")
    if size > max_bytes:
        raise ImageError(label, f"file too large: {size:,} bytes exceeds the limit of {max_bytes:,} bytes"
                                f" ({max_bytes / 1024 / 1024:.1f} MiB)")


# catch_warnings swaps process-wide state: two threads inside it at once could leave warnings
# recorded into a dead list for good. So decodes in one process take turns; a forked child (a
# DataLoader worker) gets a fresh lock, as the thread holding the parent's does not exist there.
_WARNINGS_LOCK = threading.Lock()


def _new_warnings_lock() -> None:
    global _WARNINGS_LOCK
    _WARNINGS_LOCK = threading.Lock()


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
    with Image.open(fp, formats=ALLOWED_FORMATS) as im:
        width, height = im.size
        if width * height > limits.max_pixels:
            raise ImageError(label, f"image too large: {width}x{height} = {width * height:,} pixels"
                                    f" exceeds the limit of {limits.max_pixels:,} pixels")
        if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
            raise ImageError(label, f"image too large: {width}x{height} = {width * height:,} pixels is more than"
                                    f" PIL's limit of {Image.MAX_IMAGE_PIXELS:,} (a possible decompression bomb)")
        if fit is not None:
            _draft(im, fit, label)
        needed = _raster_bytes(im)
        if needed > limits.max_decode_bytes:
            raise ImageError(label, f"image too large: decoding {im.size[0]}x{im.size[1]} ({im.mode}) needs"
                                    f" {_mib(needed)} MiB, more than the limit of {_mib(limits.max_decode_bytes)} MiB")
        im.load()  # first frame only; raises on truncated data
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # malformed EXIF: keep the pixels as stored
            pass
        if fit is None:
            return _to_rgb(im)
        _usable(fit, *im.size, label)  # again: a PNG's EXIF orientation may only be known now
        box = crop_box(fit, *im.size)
        return _shrink(_to_rgb(im.crop(box) if box else im), fit)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}".removesuffix(".0")


def _raster_bytes(im: Image.Image) -> int:
    """What PIL allocates to decode `im` at its current size: 1 byte a pixel for 8-bit single-band
    modes, 2 for 16-bit ones, 4 for everything else (RGB is stored padded to 4)."""
    per_pixel = 1 if im.mode in ("1", "L", "P") else 2 if im.mode.startswith("I;16") else 4
    return im.size[0] * im.size[1] * per_pixel


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
        raise ImageError(label, f"aspect ratio {width // g:,}:{height // g:,} is too extreme: this model keeps"
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
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale 16-bit (or 32-bit int / float) greyscale to 0..255."""
    is_float = arr.dtype.kind == "f"
    arr = np.nan_to_num(arr.astype(np.float64))
    lo, hi = float(arr.min()), float(arr.max())
    if not is_float and lo >= 0 and hi <= 65535:
        scaled = arr / 257.0  # 16-bit range
    elif lo >= 0 and hi <= 1.0:
        scaled = arr * 255.0  # float image in 0..1
    else:
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
