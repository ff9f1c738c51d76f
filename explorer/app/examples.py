"""The example photos shipped with the app (assets/examples, each credited in its CREDITS.md): which
files, the label that names each one, a caption that describes it, and the example sets the tabs offer.

Plain data and paths, no gradio: the tabs turn these into one-click examples, and the folder can be
indexed like any other (`clip-explorer index assets/examples`). Each file name starts with its label
(`cat-chelsea.jpg` -> "cat"), so the gap's labels-from-file-names rule (captions.labels_of_images)
pairs every photo with its label.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FOLDER = Path(__file__).resolve().parents[2] / "assets" / "examples"
CAPTIONS_CSV = FOLDER / "captions.csv"   # path,caption: one line per photo
CREDITS = FOLDER / "CREDITS.md"


@dataclass(frozen=True)
class Photo:
    file: str      # its name in FOLDER
    label: str     # a class name for zero-shot classification (templates add "a photo of a ...")
    caption: str   # a sentence describing it, for the heatmaps and the gap's captions


PHOTOS = (
    Photo("astronaut.jpg", "astronaut", "an astronaut in a spacesuit"),
    Photo("cat-chelsea.jpg", "cat", "a close-up of a tabby cat"),
    Photo("coffee-cup.jpg", "coffee cup", "an espresso cup on a saucer"),
    Photo("rocket.jpg", "rocket", "a rocket on its launch pad"),
    Photo("galaxy-hubble-deep-field.jpg", "galaxy", "galaxies in deep space"),
    Photo("retina.jpg", "retina", "the back of a human eye"),
    Photo("pagoda.jpg", "pagoda", "a pagoda above a lake"),
    Photo("flower.jpg", "flower", "an orange dahlia"),
)
A_FEW = ("cat", "coffee cup", "rocket")   # a quick first example: three photos


def folder() -> Path:
    """The folder of example photos (what the Search tab can offer to index)."""
    return FOLDER


def chosen(labels: tuple[str, ...] | None = None) -> list[Photo]:
    """The photos with these labels, in PHOTOS order; all of them with None."""
    return [p for p in PHOTOS if labels is None or p.label in labels]


def paths(labels: tuple[str, ...] | None = None) -> list[str]:
    """The files of the photos with these labels (all with None), as strings, as a file input takes them."""
    return [str(FOLDER / p.file) for p in chosen(labels)]


def label_text() -> str:
    """Every photo's label, comma-separated: the ready label list for zero-shot classification."""
    return ", ".join(p.label for p in PHOTOS)


def caption_text(labels: tuple[str, ...] | None = None) -> str:
    """The captions of the photos with these labels (all with None), one per line."""
    return "\n".join(p.caption for p in chosen(labels))
