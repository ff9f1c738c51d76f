"""The names the science layer's methods go by, importable without torch (heatmaps.py imports it): the
command line's parsers list them, and `clip-explorer --help` stays quick (tests/test_cli_start.py)."""
from __future__ import annotations

METHODS = ("tokens", "maskclip", "value-only")   # patch-map methods (heatmaps.patch_tokens)
METHOD_ALIASES = {"value": "value-only"}  # the old name of "value-only", still accepted
