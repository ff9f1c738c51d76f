"""The names the index layer's choices go by, importable without torch (build.py imports it): the
command line's parsers list them, and `clip-explorer --help` stays quick (tests/test_cli_start.py)."""
from __future__ import annotations

ENGINES = ("local", "ray")   # where an index is built: this machine, or a Ray Data pipeline (build_ray)
