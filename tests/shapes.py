"""Synthetic coloured-shape images: the data the project's tiny test CLIP is trained and checked on.

Pure PIL + numpy and deterministic: every function takes either a `numpy.random.Generator`, an int
seed, or None (which means seed 0), so the same call always draws the same picture.

    COLORS        6 named RGB colours (red, green, blue, yellow, purple, orange)
    SHAPES        4 shapes (circle, square, triangle, cross)
    CLASSES       all 24 (colour, shape) pairs, colour-major
    caption()     ("red", "circle") -> "a red circle"
    draw_shape()  one object on a random dark, low-saturation, slightly noisy background
    draw_pair()   two objects, one in the left half and one in the right half, plus their boxes
    make_labelled_folder()  an ImageFolder-style tree root/a_red_circle/0.png ...
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "COLORS", "SHAPES", "CLASSES", "caption", "class_name", "draw_shape", "draw_pair",
    "make_labelled_folder", "draw_shapes",
]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 25, 25),
    "green": (30, 190, 40),
    "blue": (35, 75, 235),
    "yellow": (245, 225, 30),
    "purple": (150, 40, 200),
    "orange": (250, 135, 10),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

CLASSES: list[tuple[str, str]] = [(c, s) for c in COLORS for s in SHAPES]

Box = tuple[int, int, int, int]

_COLOR_JITTER = 12      # +- per channel on the object colour
_NOISE_STD = 5.0        # background/object pixel noise (in 0..255 units)


def class_name(color: str, shape: str) -> str:
    """("red", "circle") -> "red circle" (the bare class name, for prompt templates)."""
    return f"{color} {shape}"


def caption(color: str, shape: str) -> str:
    """("red", "circle") -> "a red circle"."""
    return f"a {color} {shape}"


def _rng(rng) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(int(rng))


def _check(color: str, shape: str) -> None:
    if color not in COLORS:
        raise ValueError(f"unknown colour {color!r}; expected one of {list(COLORS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {list(SHAPES)}")


def _background(size: int, rng: np.random.Generator) -> Image.Image:
    """A dark-to-mid neutral colour (low saturation) with a faint tint."""
    gray = rng.uniform(10, 130)
    tint = rng.uniform(-12, 12, size=3)
    base = np.clip(gray + tint, 0, 255)
    arr = np.broadcast_to(base, (size, size, 3)).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def _object_color(color: str, rng: np.random.Generator) -> tuple[int, int, int]:
    jitter = rng.integers(-_COLOR_JITTER, _COLOR_JITTER + 1, size=3)
    return tuple(int(v) for v in np.clip(np.array(COLORS[color]) + jitter, 0, 255))


def _draw_object(draw: ImageDraw.ImageDraw, shape: str, box: Box, fill) -> None:
    x0, y0, x1, y1 = box  # inclusive pixel box, square
    s = x1 - x0
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "cross":
        t = max(1, round(s / 3))
        a = x0 + (s - t) / 2
        b = y0 + (s - t) / 2
        draw.rectangle((round(a), y0, round(a + t), y1), fill=fill)
        draw.rectangle((x0, round(b), x1, round(b + t)), fill=fill)
    else:  # pragma: no cover - guarded by _check
        raise ValueError(shape)


def _add_noise(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + rng.normal(0.0, _NOISE_STD, size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _place(rng: np.random.Generator, lo_x: int, hi_x: int, lo_y: int, hi_y: int, side: int) -> Box:
    """A square box of `side` pixels inside [lo_x, hi_x) x [lo_y, hi_y)."""
    x0 = int(rng.integers(lo_x, max(lo_x, hi_x - side) + 1))
    y0 = int(rng.integers(lo_y, max(lo_y, hi_y - side) + 1))
    return (x0, y0, x0 + side - 1, y0 + side - 1)


def draw_shape(color: str, shape: str, size: int = 64, rng=None) -> Image.Image:
    """One `color` `shape` (40-75% of the side) at a random spot on a random background."""
    _check(color, shape)
    rng = _rng(rng)
    img = _background(size, rng)
    side = max(4, int(round(size * rng.uniform(0.40, 0.75))))
    margin = max(1, int(round(size * 0.06)))
    box = _place(rng, margin, size - margin, margin, size - margin, side)
    _draw_object(ImageDraw.Draw(img), shape, box, _object_color(color, rng))
    return _add_noise(img, rng)


def draw_pair(left: tuple[str, str], right: tuple[str, str], size: int = 64,
              rng=None) -> tuple[Image.Image, Box, Box]:
    """Two objects: `left` inside the left half, `right` inside the right half.

    Returns (image, left_box, right_box); boxes are (x0, y0, x1, y1) pixel coordinates, inclusive.
    Each object is 30-44% of the image side, so it fills most of its half.
    """
    _check(*left)
    _check(*right)
    rng = _rng(rng)
    img = _background(size, rng)
    draw = ImageDraw.Draw(img)
    half = size // 2
    margin = max(1, int(round(size * 0.04)))
    boxes = []
    for (color, shape), (lo, hi) in ((left, (margin, half - margin // 2)),
                                     (right, (half + margin // 2, size - margin))):
        side = max(4, int(round(size * rng.uniform(0.30, 0.44))))
        side = min(side, hi - lo)
        box = _place(rng, lo, hi, margin, size - margin, side)
        _draw_object(draw, shape, box, _object_color(color, rng))
        boxes.append(box)
    return _add_noise(img, rng), boxes[0], boxes[1]


def make_labelled_folder(root, classes, n_per_class: int, size: int = 64, seed: int = 0,
                         ext: str = "png") -> list[tuple[Path, str]]:
    """Write root/<caption with underscores>/<i>.<ext> (ImageFolder layout).

    Returns [(path, caption)] in writing order, e.g. (root/a_red_circle/0.png, "a red circle").
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: list[tuple[Path, str]] = []
    for color, shape in classes:
        label = caption(color, shape)
        folder = root / label.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            path = folder / f"{i}.{ext}"
            draw_shape(color, shape, size=size, rng=rng).save(path)
            out.append((path, label))
    return out


def draw_shapes(color: str, shape: str, k: int, size: int = 64, rng=None) -> Image.Image:
    """`k` (1..9) objects of one kind, each in its own cell of a 3 x 3 grid (cells chosen at random), each
    filling 60-90% of its cell, on a random background: a picture of exactly k things, for counting."""
    _check(color, shape)
    if not 1 <= k <= 9:
        raise ValueError(f"k must be 1..9, got {k}")
    rng = _rng(rng)
    img = _background(size, rng)
    draw = ImageDraw.Draw(img)
    cell = size // 3
    for index in rng.permutation(9)[:k]:
        row, col = divmod(int(index), 3)
        side = max(3, int(round(cell * rng.uniform(0.6, 0.9))))
        box = _place(rng, col * cell, (col + 1) * cell, row * cell, (row + 1) * cell, side)
        _draw_object(draw, shape, box, _object_color(color, rng))
    return _add_noise(img, rng)
