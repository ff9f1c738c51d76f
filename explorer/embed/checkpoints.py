"""Can a model's weights be had, and what to type if not: decided in seconds, before the Hugging Face
Hub client would spend a minute retrying a connection that cannot succeed.

Local forms (local-dir:, a checkpoint file, no pretrained weights) need nothing from the Hub. Hub
weights (an open_clip pretrained tag, hf-hub:org/repo) come from the Hugging Face cache or the Hub,
and one HEAD request with a short timeout says whether the Hub answers. Cached but unreachable, the
load runs with the Hub client offline; neither cached nor reachable, `Unavailable` says what to type.
"""
from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
HUB_TIMEOUT_S = 3.0
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"
                )  # open_clip's names, in its order
EXAMPLE_ARCH, EXAMPLE_REPO = "ViT-B-32", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
_offline_lock = threading.Lock()


@dataclass(frozen=True)
class HubFile:
    """A file a model needs from a Hub repository: any one of `names` will do."""
    repo: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Fix:
    """One way to load weights: what it is, and what to type as the model and the pretrained value."""
    what: str
    model: str
    pretrained: str | None = None

    def flags(self) -> str:
        return f"--model {self.model}" + (f" --pretrained {self.pretrained}" if self.pretrained else "")


@dataclass(frozen=True)
class Advice:
    """Why a model cannot be had (one line), the ways round it, and where weights are cached."""
    reason: str
    fixes: tuple[Fix, ...]
    note: str

    def text(self) -> str:
        """For a terminal: the reason, one line per fix with its flags, the note."""
        width = max(len(fix.flags()) for fix in self.fixes)
        lines = [f"  {fix.flags():<{width}}  {fix.what}" for fix in self.fixes]
        return "\n".join([self.reason, "Instead, use weights you have or can fetch:", *lines, self.note])


class Unavailable(Exception):
    """The weights are neither cached nor reachable; `advice` says what to do instead."""

    def __init__(self, advice: Advice):
        super().__init__(advice.text())
        self.advice = advice


def cache_dir() -> str:
    """The Hugging Face hub cache folder the Hub client reads and fills (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def hub_files(name: str, pretrained: str | None) -> list[HubFile]:
    """What loading `name` with `pretrained` fetches from the Hub; [] for the local forms."""
    if name.startswith(HF_HUB):
        repo = name[len(HF_HUB):]
        return [HubFile(repo, ("open_clip_config.json",)), HubFile(repo, WEIGHT_FILES)]
    if name.startswith(LOCAL_DIR) or not pretrained or os.path.isfile(pretrained):
        return []
    from open_clip import get_pretrained_cfg

    cfg = get_pretrained_cfg(name, pretrained)
    if cfg.get("file") or not cfg.get("hf_hub"):
        return []  # no Hub entry (a plain URL, or unknown): open_clip's own path decides
    # open_clip's form: 'org/repo/' (its default file) or 'org/repo/file.bin' (safetensors twin tried first)
    repo, filename = os.path.split(cfg["hf_hub"])
    if not filename or filename == WEIGHT_FILES[1]:
        return [HubFile(repo, WEIGHT_FILES)]
    stem, ext = os.path.splitext(filename)
    return [HubFile(repo, (stem + ".safetensors", filename) if ext in (".bin", ".pth") else (filename,))]


def is_cached(file: HubFile) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(
        isinstance(try_to_load_from_cache(file.repo, name, cache_dir=cache_dir()), str)
        for name in file.names)


def hub_reachable(endpoint: str, timeout: float = HUB_TIMEOUT_S) -> bool:
    """True when the Hub answers one HEAD request within `timeout` seconds (any HTTP status counts)."""
    answered = threading.Event()

    def probe():
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
            answered.set()
        except urllib.error.HTTPError:
            answered.set()
        except Exception:  # noqa: BLE001 - no answer, whatever the reason
            pass

    # In a thread, because a name lookup does not obey urlopen's timeout.
    thread = threading.Thread(target=probe, daemon=True, name="hub-probe")
    thread.start()
    thread.join(timeout)
    return answered.is_set()


def plan(name: str, pretrained: str | None) -> str:
    """How the load may run: 'local' (nothing from the Hub), 'online' (the Hub answers) or 'cached'
    (everything is cached and the Hub does not answer or is switched off: load with it offline).
    Raises Unavailable, with advice, when the weights are neither cached nor reachable."""
    from huggingface_hub import constants

    files = hub_files(name, pretrained)
    if not files:
        return "local"
    cached = all(is_cached(file) for file in files)
    if constants.is_offline_mode():
        if cached:
            return "cached"
        raise Unavailable(advice(name, pretrained, "HF_HUB_OFFLINE is set", offline=True))
    if hub_reachable(constants.ENDPOINT):
        return "online"
    if cached:
        return "cached"
    why = f"the Hugging Face Hub ({constants.ENDPOINT}) could not be reached within {HUB_TIMEOUT_S:g} s"
    raise Unavailable(advice(name, pretrained, why, offline=False))


def advice(name: str, pretrained: str | None, why: str, offline: bool) -> Advice:
    """The advice for a model whose weights cannot be had: the same model's Hub repository and
    architecture in the examples where they are known."""
    hub = hub_files(name, pretrained)
    repo = name[len(HF_HUB):] if name.startswith(HF_HUB) else (hub[0].repo if hub else EXAMPLE_REPO)
    arch = EXAMPLE_ARCH if name.startswith((HF_HUB, LOCAL_DIR)) else name
    fixes = (Fix("a folder with open_clip_config.json and weights", "local-dir:/path/to/folder"),
             Fix(f"a checkpoint file for {arch}", arch, "/path/to/checkpoint.pt"),
             Fix("a Hub repository (fetched once, then cached)", f"hf-hub:{repo}"))
    if offline:
        note = ("HF_HUB_OFFLINE is set: unset it to download once online. "
                f"Weights are cached under {cache_dir()}.")
    else:
        note = (f"Weights are cached under {cache_dir()} (set by HF_HOME); once cached, HF_HUB_OFFLINE=1 "
                "loads them without the network.")
    label = f"{name} ({pretrained})" if pretrained else name
    return Advice(f"could not load {label}: its weights are not in the Hugging Face cache and {why}", fixes,
                  note)


@contextmanager
def hub_offline(active: bool = True):
    """The Hub client offline while the block runs (cached files only, no request); process-wide,
    so loads that use it take turns."""
    if not active:
        yield
        return
    from huggingface_hub import constants

    with _offline_lock:
        # is_offline_mode() reads it per call
        before, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = before


def hub_logs_once() -> None:
    """The Hub client logs through a handler of its own and also passes each record up to the root
    logger (which the app, or open_clip's first logging.info call, has given a handler): every line
    printed twice. Keep its own handler only."""
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.disable_propagation()
