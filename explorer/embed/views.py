"""Augmented views of one image, as pixels for the model (the test-time "views" switch).

View 0 is the model's own preprocessing of the image (what plain classification encodes). Views 1..
are ZERO's augmentation (github.com/FarinaMatteo/zero, data/augs.py `MultiViewCropAndFlip`):
torchvision's RandomResizedCrop to the model's input size (its defaults: scale 0.08-1, aspect ratio
3/4-4/3, bilinear) then RandomHorizontalFlip, then the model's preprocessing, which at that size only
converts and normalises (a Resize and CenterCrop to the size an image already has return it as is).
The crops are taken from the image as decoded for the model (explorer.embed.images: at least 3x its
input resolution on a side), not always from the full-resolution file as theirs are.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

AUGMENTATION = "random resized crop (scale 0.08-1) + horizontal flip, as ZERO's data/augs.py"


def augmented_views(image: Image.Image, n_views: int, preprocess: Callable, seed: int) -> torch.Tensor:
    """[n_views, 3, H, W]: view 0 = preprocess(image), the rest ZERO's crop-and-flip of it, drawn from
    torch's generator seeded with `seed` (the global generator is left as it was)."""
    if n_views < 1:
        raise ValueError(f"n_views must be at least 1, not {n_views}")
    original = preprocess(image)
    extra = crop_and_flip_views(image, n_views - 1, tuple(original.shape[-2:]), preprocess, seed)
    return torch.cat([original[None], extra])


def crop_and_flip_views(image: Image.Image, count: int, size: tuple[int, int], preprocess: Callable,
                        seed: int) -> torch.Tensor:
    """[count, 3, H, W]: views 1.. of augmented_views alone (`size` = (H, W), the model's input)."""
    crop_and_flip = transforms.Compose([
        transforms.RandomResizedCrop((int(size[0]), int(size[1]))),
        transforms.RandomHorizontalFlip(),
    ])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        views = [preprocess(crop_and_flip(image)) for _ in range(count)]
    return torch.stack(views) if views else torch.empty((0, 3, int(size[0]), int(size[1])))


def view_seed(seed: int, index: int) -> int:
    """The seed of image `index`'s views in a run seeded `seed`: each image its own draws."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
