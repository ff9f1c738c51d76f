"""One frozen settings object, read from CLI flags and EXPLORER_* environment variables.

Precedence: an explicit flag beats the environment, which beats the default. The app, the CLI and
the tests all build their settings through `load_settings`, so a variable means the same everywhere.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from explorer.embed.images import Limits, setting_names

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"


def _on_spaces(env) -> bool:
    return bool(env.get("SPACE_ID"))


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    device: str = "auto"            # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"         # auto | fp32 | fp16 | bf16
    host: str | None = None         # None: gradio's own default (GRADIO_SERVER_NAME, else 127.0.0.1)
    port: int | None = None  # None: gradio's own default (GRADIO_SERVER_PORT, else 7860 or the next free)
    max_upload_mb: float = 20.0     # per file
    max_pixels: int = 89_478_485    # decompression-bomb limit (PIL's default warning threshold)
    max_decode_mb: float = 256.0    # memory one image may take once decoded (checked from its header)
    hosted: bool = False            # hosted demo: no server paths may be typed
    allowed_roots: tuple[Path, ...] = field(default_factory=tuple)
    index_dir: Path | None = None   # where the web app keeps its indexes (None: the user cache folder)
    models: tuple[str, ...] = ()    # hosted: the models visitors may pick ("name" or "name@pretrained")
    session_ttl_minutes: float = 120.0   # hosted: a session's files are deleted after this long unused
    session_quota_mb: float = 1024.0     # hosted: disk one session's uploads and indexes may fill
    hosted_quota_mb: float = 8192.0      # hosted: disk all sessions together may fill
    # The input gate (explorer/inputs/gate.py): what one request may send. Hosted defaults: HOSTED_DEFAULTS.
    max_texts: int = 20_000          # labels, templates, captions or classes in one box or file
    max_text_chars: int = 4_000      # characters in one label, template, caption or sentence
    max_text_kb: float = 8192.0      # one text box, text file or JSON document, in KiB
    max_json_depth: int = 32         # nesting of any JSON a person sends
    max_prompts: int = 500_000       # texts one request may encode (labels x templates + sentences)
    max_view_encodes: int = 100_000  # image views one request may encode (test-time switches: images x views)
    max_upload_files: int = 5_000    # files one upload (its files and zips together) may unpack to
    max_upload_total_mb: float = 500.0   # bytes one upload may unpack to, in MiB
    decode_seconds: float = 0.0      # one image's decode budget in a decode worker (0: decode in-process)
    decode_workers: int = 0          # decode worker processes (0: decode in-process, as the CLI does)
    session_jobs: int = 0            # hosted: jobs one session may have running or queued (0: no limit)
    cache_grace_seconds: float = 30.0    # hosted: gradio's cached uploads younger than this are never trimmed
    max_compare_models: int = 4      # models one comparison (Compare tab, `compare` command) may run in turn

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def model_choices(self) -> list[tuple[str, str | None]]:
        """(model, pretrained) pairs a visitor may load: EXPLORER_MODELS, the startup model first."""
        chosen = [parse_model_entry(entry) for entry in self.models]
        startup = (self.model, self.pretrained)
        return [startup] + [c for c in chosen if c != startup]

    @property
    def max_upload_total_bytes(self) -> int:
        return int(self.max_upload_total_mb * 2**20)

    @property
    def limits(self) -> Limits:
        """The per-image limits every decode in the app and the CLI applies."""
        return Limits(self.max_upload_bytes, self.max_pixels, int(self.max_decode_mb * 2**20))


# Stricter defaults for a public demo (hosted mode), used where no flag or variable sets the value.
# Sized so that one request of each kind stays within seconds of CPU and a few hundred MiB (docs/hosting.md,
# "Hosted mode": the limits and who enforces them).
HOSTED_DEFAULTS = {
    "max_upload_mb": 10.0,
    "max_pixels": 40_000_000,
    "max_decode_mb": 160.0,
    "max_texts": 256,
    "max_text_chars": 400,
    "max_text_kb": 64.0,
    "max_json_depth": 8,
    "max_prompts": 4_096,
    "max_view_encodes": 512,
    "max_upload_files": 1_000,
    "max_upload_total_mb": 256.0,
    "decode_seconds": 5.0,
    "decode_workers": 2,
    "max_compare_models": 3,   # each model of a comparison loads and encodes the folder in turn
    "session_jobs": 1,   # 2 let one visitor's back-to-back jobs slow another's 3.3x on 2 CPUs (hostile suite)
}


def parse_model_entry(entry: str) -> tuple[str, str | None]:
    """'ViT-B-32@laion2b_s34b_b79k' -> ('ViT-B-32', 'laion2b_s34b_b79k'); 'hf-hub:org/repo' -> (it, None)."""
    name, _, pretrained = entry.strip().partition("@")
    if not name.strip():
        raise ValueError(f"empty model name in {entry!r}")
    return name.strip(), pretrained.strip() or None


def _models(text: str) -> tuple[str, ...]:
    entries = tuple(e.strip() for e in text.split(",") if e.strip())
    for entry in entries:
        parse_model_entry(entry)
    return entries


# name -> (parser from string, help)
_ENV_FIELDS = {
    "model": (str, "open_clip model name, hf-hub:org/repo or local-dir:/path"),
    "pretrained": (str, "pretrained tag or checkpoint file (empty for none)"),
    "device": (str, "auto, cpu, cuda, cuda:N or mps"),
    "precision": (str, "auto, fp32, fp16 or bf16"),
    "host": (str, "address the app listens on"),
    "port": (int, "port the app listens on"),
    "max_upload_mb": (float, "largest image file accepted, in MiB"),
    "max_pixels": (int, "largest image accepted, in pixels"),
    "max_decode_mb": (float, "memory one decoded image may take, in MiB"),
    "hosted": (lambda s: _flag(s), "hosted demo mode (1/true/yes/on; 0/false/no/off)"),
    "allowed_roots": (lambda s: tuple(Path(p).expanduser().resolve() for p in s.split(os.pathsep)
                                      if p), "folders the app may index, separated by ':'"),
    "index_dir": (
        lambda s: Path(s).expanduser().resolve(),
        "folder where the web app keeps its search indexes (default ~/.cache/clip-explorer/indexes)"),
    "models": (_models, "hosted: models visitors may pick, comma-separated, each name or name@pretrained"),
    "session_ttl_minutes": (float, "hosted: minutes before an unused session's files are deleted"),
    "session_quota_mb": (float, "hosted: MiB of uploads and indexes one session may keep"),
    "hosted_quota_mb": (float, "hosted: MiB of uploads and indexes all sessions together may keep"),
    "max_texts": (int, "labels, templates, captions or classes one box or file may hold"),
    "max_text_chars": (int, "characters one label, template, caption or sentence may hold"),
    "max_text_kb": (float, "KiB one text box, text file or JSON document may hold"),
    "max_json_depth": (int, "nesting depth any JSON a person sends may have"),
    "max_prompts": (int, "texts one request may encode (labels x templates, plus description sentences)"),
    "max_view_encodes": (int, "image views one request may encode (test-time switches: images x views)"),
    "max_upload_files": (int, "files one upload (its files and zips together) may unpack to"),
    "max_upload_total_mb": (float, "MiB one upload (its files and zips together) may unpack to"),
    "decode_seconds": (float, "seconds one image may take to decode in a decode worker"),
    "decode_workers": (int, "decode worker processes (0: decode in the app's own process)"),
    "session_jobs": (int, "hosted: jobs one session may have running or queued at once (0: no limit)"),
    "cache_grace_seconds": (float, "hosted: seconds an upload in gradio's cache is safe from an early sweep "
                            "when the shared disk quota is short"),
    "max_compare_models": (lambda s: _at_least(int(s), 2), "models one comparison may run, one after another "
                           "(at least 2)"),
}


def _at_least(value: int, least: int) -> int:
    if value < least:
        raise ValueError(f"must be at least {least}")
    return value


def _flag(text: str) -> bool:
    """'1', 'true', 'yes', 'on' -> True; '0', 'false', 'no', 'off', '' -> False; anything else is an error
    (a typo must not leave a public demo in local mode)."""
    word = text.strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected 1/true/yes/on or 0/false/no/off")


def flag_and_variable(name: str) -> tuple[str, str]:
    """The flag and the environment variable that set a setting:
    ('--allowed-roots', 'EXPLORER_ALLOWED_ROOTS')."""
    if name not in _ENV_FIELDS:
        raise KeyError(f"no setting named {name!r}")
    return setting_names(name)


def add_settings_arguments(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """Add --model, --pretrained, ... to `parser`; unset flags stay None so the environment can fill them."""
    for name, (_, help_text) in _ENV_FIELDS.items():
        if only is not None and name not in only:
            continue
        flag, variable = flag_and_variable(name)
        if name == "hosted":
            parser.add_argument(flag, action="store_const", const="1", default=None, help=help_text)
        else:
            parser.add_argument(flag, default=None, help=f"{help_text} (env {variable})")


def load_settings(args: argparse.Namespace | None = None, env: dict[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    values: dict = {}
    for name, (parse, _) in _ENV_FIELDS.items():
        raw = getattr(args, name, None) if args is not None else None
        if raw is None:
            raw = env.get(flag_and_variable(name)[1])
        if raw is None:
            continue
        try:
            values[name] = parse(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise ValueError(f"bad value for {name}: {raw!r} ({exc})") from None
    if values.get("pretrained", "x") in ("", "none", "None"):
        values["pretrained"] = None
    if "model" in values and "pretrained" not in values and values["model"] != DEFAULT_MODEL:
        # A model other than the default does not inherit the default's pretrained tag.
        values["pretrained"] = None
    if "hosted" not in values and _on_spaces(env):
        values["hosted"] = True
    if values.get("hosted"):
        for name, value in HOSTED_DEFAULTS.items():
            values.setdefault(name, value)
    settings = Settings(**values)
    if not settings.allowed_roots:
        settings = replace(settings, allowed_roots=(Path.home().resolve(),))
    if settings.index_dir is None:
        cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
        settings = replace(settings, index_dir=(cache / "clip-explorer" / "indexes").resolve())
    return settings
