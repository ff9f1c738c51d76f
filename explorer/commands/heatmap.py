"""clip-explorer heatmap IMAGE --text "..." --out FILE.png [--json]: where in an image a text matches."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from explorer.embed.images import ImageError, fit_of, load_image
from explorer.inputs.settings import load_settings
from explorer.science.names import METHOD_ALIASES, METHODS

from .common import IMAGE_LIMIT_FLAGS, add_model_arguments, model_from, prompt_warnings


def register(commands) -> None:
    parser = commands.add_parser("heatmap",
                                 help="patch-level map of where a text matches an image (ViT models)")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("--text", required=True, help="the text to locate, e.g. 'a red circle'")
    parser.add_argument("--out", help="write the overlay here (PNG, JPEG, ...)")
    parser.add_argument("--opacity", type=float, default=0.5, help="opacity of the map over the image, 0..1")
    parser.add_argument("--scale", choices=("relative", "minmax"), default="relative",
                        help="colour the map relative to its mean (default) or from its min to its max")
    parser.add_argument(
        "--method", choices=METHODS + tuple(METHOD_ALIASES), default="tokens",
        help="tokens: the last block's patch tokens (default); maskclip: MaskCLIP (Zhou et al. "
        "2022) as its authors compute it, the last block's value path plus its residual and "
        "MLP; value-only: the value path without residual and MLP ('value' is an old name "
        "for it)")
    parser.add_argument("--json", action="store_true",
                        help="print the grid of raw patch-text cosines as JSON")
    add_model_arguments(parser, extra=IMAGE_LIMIT_FLAGS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not args.out and not args.json:
        raise ValueError("nothing to do: give --out FILE.png, --json, or both")
    if not args.text.strip():
        raise ValueError("--text is empty")
    if not 0 <= args.opacity <= 1:
        raise ValueError(f"--opacity must be between 0 and 1, got {args.opacity}")
    if args.out and not Path(args.out).parent.is_dir():
        raise ValueError(f"--out: folder {Path(args.out).parent} does not exist")
    from explorer.science.heatmaps import overlay, patch_map  # torch: only once a model is needed

    settings = load_settings(args)
    model = model_from(settings)
    try:
        image = load_image(args.image, settings.limits, fit=fit_of(model.preprocess))
    except ImageError as exc:  # the one input could not be read: exit 1, as for any unreadable input
        print(f"error: {exc}", file=sys.stderr)
        return 1
    warnings = prompt_warnings(model, [args.text.strip()])
    pmap = patch_map(model, image, args.text.strip(),
                     args.method)  # PatchMapUnsupported is a ValueError: exit 2
    if args.out:
        overlay(image, pmap, args.opacity, args.scale).save(args.out)
    if args.json:
        json.dump({"model": model.identifier, "image": args.image, "out": args.out,
                   **pmap.as_dict(), "warnings": warnings}, sys.stdout, indent=2)
        print()
    else:
        gh, gw = pmap.grid.shape
        print(f"{args.image}: {gh}x{gw} {pmap.method} patch map for {pmap.text!r}: patch cosines "
              f"{pmap.grid.min():+.3f} .. {pmap.grid.max():+.3f} (mean {pmap.grid.mean():+.3f}); "
              f"whole-image cosine {pmap.image_cosine:+.3f}")
        print(f"wrote {args.out}")
    return 0
