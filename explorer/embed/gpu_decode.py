"""Decoding JPEGs on the model's device, a batch at a time: nvJPEG on a GPU, through
torchvision.io.decode_jpeg (which decodes on the CPU as well: that is how it is tested).

The model's preprocessing (`Recipe`, read from it as images.fit_of reads the geometry) is done on the
decoded batch where it lies: resize as open_clip resizes (torch's antialiased bicubic or bilinear is
PIL's filter), centre crop or pad, normalise with the transform's own mean and std. Only what the
device decoder is known to take goes to it, judged from the JPEG's header before any pixel is decoded
(`device_jpeg`): 8-bit Huffman-coded JPEGs (baseline, extended, progressive) with one (grey) or three
(YCbCr) components, one frame header, ending in an EOI marker, within every images.Limits limit (a
file that breaks one goes to PIL, which refuses it from its header with images.py's reason). EXIF
orientation is read from the header and applied with flips and transposes. Everything else (PNG,
WEBP, CMYK or RGB-coded JPEGs, arithmetic or 12-bit JPEGs, truncated files, trailing data, a malformed
EXIF block, preprocessing that is not recognised) takes the shared PIL path, images.prepare, so it
gives exactly what the CPU path gives, failures and their reasons included. A batch the decoder
refuses is decoded again one file at a time, and a file it still refuses goes to PIL.

decode_batch is the whole step for bytes in memory. The index pipeline splits it: its worker
processes read each file and sort it (`triage`: bytes for the device, or decoded by PIL there), a
`Batch` carries the JPEG bytes in one buffer the DataLoader pins, and `on_device` decodes each batch
in a thread, one batch ahead, so the decoder works while the model encodes the batch before.
"""
from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from PIL import Image

from .images import DEFAULT_LIMITS, Fit, ImageError, Limits, check_size, crop_box, fit_of, prepare
from .names import DECODE_CHOICES

# torchvision 0.29 marks its image decoders deprecated (in favour of TorchCodec) with a warning on
# every call; the decoder itself is what this module is about, so that one warning is not shown.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io\.image")

DECODE_BYTES = 1 << 30   # decoded pixels (uint8) per decoder call: a batch of large JPEGs is split
RESIZE_BYTES = 1 << 30   # float pixels resized at once: a group of large images is split
_SOF = {0xC0, 0xC1, 0xC2}   # Huffman-coded baseline, extended, progressive frames
_OTHER_SOF = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
              0xCF}  # lossless, hierarchical, arithmetic
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length


@dataclass(frozen=True)
class Recipe:
    """The model's preprocessing as tensor operations: geometry (images.Fit), the resize filter
    ("bicubic" or "bilinear", antialiased as PIL's), the crop's padding value and Normalize's mean/std."""
    fit: Fit
    mode: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fill: int = 0

    @property
    def crop(self) -> tuple[int, int] | None:
        """(width, height) of the centre crop after the resize ("longest": the padding up to size)."""
        return self.fit.crop or (self.fit.size if self.fit.mode == "longest" else None)

    @property
    def out_size(self) -> tuple[int, int]:
        """(height, width) of every preprocessed image."""
        width, height = self.crop or self.fit.size
        return height, width


def recipe_of(preprocess: Callable) -> Recipe | None:
    """The Recipe of `preprocess` (open_clip's image_transform in each resize mode, or torchvision's
    Resize + CenterCrop + ToTensor + Normalize), or None when it is anything else."""
    fit = fit_of(preprocess)
    steps = list(getattr(preprocess, "transforms", None) or ())
    names = [getattr(t, "__name__", type(t).__name__) for t in steps]
    norms = [t for t, n in zip(steps, names) if n == "Normalize"]
    resize = next((t for t, n in zip(steps, names) if n in ("Resize", "ResizeKeepRatio")), None)
    mode = getattr(getattr(resize, "interpolation", None), "value", None)
    if (fit.mode == "cap" or mode not in ("bicubic", "bilinear") or len(norms) != 1 or "PILToTensor" in names
            or sum(n in ("ToTensor", "MaybeToTensor") for n in names) != 1):
        return None
    mean, std = tuple(map(float, norms[0].mean)), tuple(map(float, norms[0].std))
    if len(mean) != 3 or len(std) != 3:
        return None
    crop = next((t for t, n in zip(steps, names) if n in ("CenterCrop", "CenterCropOrPad")), None)
    fill = getattr(crop, "fill", 0)
    return Recipe(fit, mode, mean, std, int(fill) if isinstance(fill, (int, float)) else 0)


@dataclass(frozen=True)
class JpegInfo:
    """What a JPEG's header says: its frame size and EXIF orientation (1-8, 1: as stored)."""
    width: int
    height: int
    orientation: int = 1

    @property
    def upright(self) -> tuple[int, int]:
        """(width, height) once the orientation is applied."""
        return (self.height, self.width) if self.orientation >= 5 else (self.width, self.height)


def jpeg_info(data: bytes) -> JpegInfo | None:
    """The header of a JPEG the device decoder takes (see the module's doc), read from the markers
    before the first scan; None for anything else, or for a header that does not parse."""
    if data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        return None  # not a JPEG, or truncated, or trailing data: PIL's to judge
    frame, orientation, pos, end = None, None, 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF or marker in _STANDALONE:
            pos += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        segment = data[pos + 4:pos + 2 + length]
        if length < 2 or len(segment) != length - 2:
            return None
        if marker == 0xDA:  # start of scan: the header is complete
            return None if frame is None else JpegInfo(*frame, orientation or 1)
        if marker in _SOF and frame is None:
            frame = _frame(segment)
            if frame is None:
                return None
        elif marker in _SOF or marker in _OTHER_SOF or marker == 0xD9:
            return None
        elif marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            if orientation is not None:
                return None  # PIL joins the blocks into one; leave that to it
            orientation = _orientation(segment[6:])
            if orientation is None:
                return None
        elif marker == 0xEE and segment[:5] == b"Adobe" and len(segment) >= 12 and segment[11] == 0:
            return None  # Adobe transform 0: the three components are RGB, not YCbCr
        pos += 2 + length
    return None


def _frame(segment: bytes) -> tuple[int, int] | None:
    """(width, height) from a frame header that the decoder takes: 8 bits, 1 or 3 components (not R, G, B)."""
    if len(segment) < 6:
        return None
    precision, height, width, count = segment[0], int.from_bytes(segment[1:3], "big"), \
        int.from_bytes(segment[3:5], "big"), segment[5]
    if precision != 8 or count not in (1, 3) or not width or not height or len(segment) < 6 + 3 * count:
        return None
    if count == 3 and bytes(segment[6:15:3]) == b"RGB":  # component ids R, G, B: stored as RGB
        return None
    return width, height


def _orientation(tiff: bytes) -> int | None:
    """The Orientation tag (0x0112) of IFD0 in an EXIF block (1 when absent or out of range, as
    PIL's exif_transpose treats it); None when the block does not parse."""
    order = {b"II": "little", b"MM": "big"}.get(bytes(tiff[:2]))
    if order is None or len(tiff) < 8 or int.from_bytes(tiff[2:4], order) != 42:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    for k in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k]
        if len(entry) < 12:
            return None
        if int.from_bytes(entry[:2], order) == 0x0112:
            if int.from_bytes(entry[2:4], order) != 3:  # SHORT
                return None
            value = int.from_bytes(entry[8:10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def device_jpeg(data: bytes, recipe: Recipe | None, limits: Limits = DEFAULT_LIMITS) -> JpegInfo | None:
    """The JpegInfo of a file the device should decode, or None where PIL must: not such a JPEG, no
    recipe, or over a limit (pixels, PIL's own bomb limit, the decoded bytes of a full-size decode:
    PIL refuses it with its reason, or decodes it at a reduced DCT scale), or too extreme an aspect ratio."""
    info = jpeg_info(data) if recipe is not None else None
    if info is None:
        return None
    pixels = info.width * info.height
    bomb = Image.MAX_IMAGE_PIXELS or pixels
    if pixels > min(limits.max_pixels, bomb) or 3 * pixels > limits.max_decode_bytes:
        return None
    return info if min(recipe.fit.resized(*info.upright)) >= 1 else None


def triage(data: bytes, preprocess: Callable, recipe: Recipe | None, limits: Limits = DEFAULT_LIMITS, *,
           name: str = "<bytes>") -> JpegInfo | torch.Tensor:
    """One file's bytes sorted: its JpegInfo when the device decodes it, else its preprocessed tensor
    from images.prepare. The size limit is checked first; raises ImageError."""
    check_size(name, len(data), limits.max_bytes)
    info = device_jpeg(data, recipe, limits)
    return info if info is not None else prepare(data, preprocess, limits, name=name)


@dataclass
class Batch:
    """Sorted files on their way to `finish`: per file a key, a name and what triage made of it
    (a JpegInfo, whose bytes are `buffer[spans[k]]`, a tensor, or a failure reason as a str).
    The JPEG bytes share one buffer, so the DataLoader pins one block per batch."""
    keys: list
    names: list[str]
    items: list
    buffer: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.uint8))
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)

    def pin_memory(self) -> Batch:
        self.buffer = self.buffer.pin_memory()
        return self


def pack(entries: Iterable[tuple[Hashable, str, object]]) -> Batch:
    """A Batch from (key, name, item) where item is (bytes, JpegInfo), a tensor, or a reason (str)."""
    keys, names, items, parts, spans, total = [], [], [], [], {}, 0
    for k, (key, name, item) in enumerate(entries):
        if isinstance(item, tuple):
            data, item = item
            spans[k] = (total, total + len(data))
            parts.append(data)
            total += len(data)
        keys.append(key)
        names.append(name)
        items.append(item)
    buffer = torch.frombuffer(bytearray(b"".join(parts)), dtype=torch.uint8) if total else \
        torch.empty(0, dtype=torch.uint8)
    return Batch(keys, names, items, buffer, spans)


def decode_batch(blobs: list[bytes], preprocess: Callable, device: str | torch.device = "cpu",
                 limits: Limits = DEFAULT_LIMITS, *, names: list[str] | None = None
                 ) -> tuple[torch.Tensor | None, list[tuple[int, str]]]:
    """Decode and preprocess image files' bytes for the model whose preprocessing is `preprocess`:
    JPEGs on `device` (see the module's doc), anything else through images.prepare.

    Returns (pixels [B, 3, H, W] float32 on `device`, or None when nothing decoded; failures as
    (position in `blobs`, reason)): the rows of pixels are the blobs that did not fail, in order.
    `names` (default "<bytes>") are what the failure reasons call the files."""
    recipe = recipe_of(preprocess)
    names = names or ["<bytes>"] * len(blobs)
    entries = []
    for i, (blob, name) in enumerate(zip(blobs, names)):
        try:
            item = triage(blob, preprocess, recipe, limits, name=name)
            entries.append((i, name, (blob, item) if isinstance(item, JpegInfo) else item))
        except ImageError as exc:
            entries.append((i, name, exc.reason))
    _, pixels, failures = finish(pack(entries), preprocess, torch.device(device), limits)
    return pixels, failures


def finish(batch: Batch, preprocess: Callable, device: torch.device, limits: Limits = DEFAULT_LIMITS
           ) -> tuple[list, torch.Tensor | None, list[tuple[Hashable, str]]]:
    """Decode a Batch's JPEGs on `device` and preprocess them there; join the tensors decoded
    elsewhere -> (keys of the decoded files in batch order, their pixels on `device`, (key, reason)
    of each failure). A JPEG the decoder refuses is decoded by images.prepare instead."""
    recipe = recipe_of(preprocess)
    rows = [k for k, item in enumerate(batch.items) if not isinstance(item, str)]
    if not rows:
        return [], None, [(key, item) for key, item in zip(batch.keys, batch.items)]
    out = torch.empty((len(rows), 3, *recipe.out_size), device=device) if recipe else None
    jpegs = [r for r, k in enumerate(rows) if isinstance(batch.items[k], JpegInfo)]
    refused = set(jpegs) if out is None else _decode_into(
        out, jpegs, [batch.items[rows[r]]
                     for r in jpegs], [batch.buffer[slice(*batch.spans[rows[r]])]
                                       for r in jpegs], recipe, device)
    tensors, reasons = {}, {}
    for r, k in enumerate(rows):
        item = batch.items[k]
        if r in refused:
            try:
                item = prepare(batch.buffer[slice(*batch.spans[k])].numpy().tobytes(), preprocess, limits,
                               name=batch.names[k])
            except ImageError as exc:
                reasons[k] = exc.reason
                continue
        if isinstance(item, torch.Tensor):
            tensors[r] = item
    out = _place(out, tensors, len(rows), device)
    keep = [r for r, k in enumerate(rows) if k not in reasons]
    pixels = out if len(keep) == len(rows) else (out[keep] if keep else None)
    failures = {k: item for k, item in enumerate(batch.items) if isinstance(item, str)} | reasons
    return [batch.keys[rows[r]] for r in keep], pixels, [(batch.keys[k], failures[k])
                                                         for k in sorted(failures)]


def _place(out: torch.Tensor | None, tensors: dict[int, torch.Tensor], n: int, device: torch.device
           ) -> torch.Tensor | None:
    """`out` with the tensors decoded elsewhere written into their rows (None: no recipe, so every
    row is such a tensor, and `out` takes their shape; None again when there are none)."""
    if out is None:
        first = next(iter(tensors.values()), None)
        if first is None:
            return None
        out = torch.empty((n, *first.shape), device=device)
    for r, tensor in tensors.items():
        out[r] = tensor.to(device, non_blocking=True)
    return out


def _decode_into(out: torch.Tensor, rows: list[int], infos: list[JpegInfo], datas: list[torch.Tensor],
                 recipe: Recipe | None, device: torch.device) -> set[int]:
    """Decode `datas` on `device` and write each preprocessed image into out[rows[j]]; returns the
    rows the decoder refused (or that did not fit in the device's memory). Works through the batch in
    slices of DECODE_BYTES decoded pixels."""
    refused, start = set(), 0
    while start < len(rows):
        stop, budget = start, 0
        while stop < len(rows) and (stop == start or budget + 3 * infos[stop].width * infos[stop].height
                                    <= DECODE_BYTES):
            budget += 3 * infos[stop].width * infos[stop].height
            stop += 1
        images = decode_jpegs(datas[start:stop], infos[start:stop], device)
        refused |= {rows[start + j] for j, image in enumerate(images) if image is None}
        decoded = [(rows[start + j], image) for j, image in enumerate(images) if image is not None]
        try:
            _preprocess_into(out, decoded, recipe)
        except torch.OutOfMemoryError:  # PIL decodes these on the host instead, at a reduced scale
            refused |= {row for row, _ in decoded}
        start = stop
    return refused


def decode_jpegs(datas: list[torch.Tensor], infos: list[JpegInfo], device: str | torch.device = "cpu"
                 ) -> list[torch.Tensor | None]:
    """JPEG bytes (1-D uint8 CPU tensors) -> RGB uint8 [3, H, W] on `device`, upright (EXIF orientation
    applied), in one decoder call; when that fails, one call per file. None for a file the decoder
    refuses or decodes to another size than its header's."""
    device = torch.device(device)
    try:
        images = _decode_jpeg(list(datas), device)
    except Exception:  # one bad file fails the whole call: find it
        images = [_decode_one(data, device) for data in datas]
    return [None if image is None or tuple(image.shape) != (3, info.height, info.width)
            else _upright(image, info.orientation) for image, info in zip(images, infos)]


def _decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    try:
        return _decode_jpeg([data], device)[0]
    except Exception:
        return None


def _decode_jpeg(datas: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """torchvision.io.decode_jpeg to RGB on `device`, one call for the list (nvJPEG's batched decode on
    CUDA). torchvision is imported here, on first use: importing it takes seconds."""
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)


def _upright(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """`image` [C, H, W] turned as PIL's ImageOps.exif_transpose turns an image with this EXIF orientation."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-2, -1)
    if orientation == 6:
        return image.rot90(-1, (-2, -1))
    if orientation == 7:
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return image.rot90(1, (-2, -1))
    return image


def _preprocess_into(out: torch.Tensor, images: list[tuple[int, torch.Tensor]], recipe: Recipe) -> None:
    """Resize, crop and normalise decoded uint8 images as `recipe` says, writing image j into
    out[row]: images of one size go through together, in slices of RESIZE_BYTES float pixels."""
    groups: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = {}
    for row, image in images:
        groups.setdefault(tuple(image.shape[-2:]), []).append((row, image))
    shift = torch.tensor(recipe.mean, device=out.device).view(1, 3, 1, 1)
    scale = torch.tensor(recipe.std, device=out.device).view(1, 3, 1, 1)
    for (height, width), members in groups.items():
        step = max(1, RESIZE_BYTES // (12 * height * width))
        for start in range(0, len(members), step):
            part = members[start:start + step]
            pixels = _geometry(torch.stack([image for _, image in part]), recipe)
            rows = torch.tensor([row for row, _ in part], device=out.device)
            out.index_copy_(0, rows, (pixels / 255 - shift) / scale)


def _geometry(images: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float [N, 3, h, w] in 0..255: images.py's crop of extreme strips,
    the resize, then the centre crop (padded with `fill` where the image is smaller)."""
    fit = recipe.fit
    box = crop_box(fit, images.shape[-1], images.shape[-2])
    if box is not None:
        left, top, right, bottom = box
        images = images[..., top:bottom, left:right]
    width, height = fit.resized(images.shape[-1], images.shape[-2])
    pixels = images.float()
    if (height, width) != tuple(images.shape[-2:]):
        pixels = F.interpolate(pixels, size=(height, width), mode=recipe.mode, align_corners=False,
                               antialias=True).clamp_(0, 255)
    if recipe.crop is None:
        return pixels
    crop_w, crop_h = recipe.crop
    if crop_w > width or crop_h > height:
        pad_w, pad_h = max(0, crop_w - width), max(0, crop_h - height)
        pixels = F.pad(pixels, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2),
                       value=float(recipe.fill))
        height, width = pixels.shape[-2:]
    top, left = int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))
    return pixels[..., top:top + crop_h, left:left + crop_w]


@functools.cache
def _decodes_on(device: str) -> bool:
    """Does torchvision's decode_jpeg work on `device` (tried once per device, on a tiny JPEG)?"""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 30, 30)).save(buffer, format="JPEG")
    try:
        images = _decode_jpeg([torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)],
                              torch.device(device))
        return tuple(images[0].shape) == (3, 8, 16)
    except Exception:
        return False


def choose(decode: str, device: torch.device, preprocess: Callable) -> str:
    """"cpu" or "gpu" for a run asked to decode `decode` ("auto": the device's decoder when the model
    is on CUDA, torchvision decodes there and the preprocessing has a Recipe)."""
    if decode not in DECODE_CHOICES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_CHOICES)}, not {decode!r}")
    if decode != "auto":
        return decode
    usable = device.type == "cuda" and recipe_of(preprocess) is not None and _decodes_on(str(device))
    return "gpu" if usable else "cpu"


def on_device(batches: Iterator[Batch], preprocess: Callable, device: torch.device,
              limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[list, torch.Tensor | None, list]]:
    """`finish` for each Batch, in a thread one batch ahead of the consumer: the decoder works on
    the next batch while the model encodes this one. Closing the generator waits for the batch in
    flight and stops there."""
    with ThreadPoolExecutor(1, thread_name_prefix="gpu-decode") as pool:
        pending = None
        for batch in batches:
            future = pool.submit(finish, batch, preprocess, device, limits)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()
