"""What a model costs: parameters per tower, GFLOPs per image and per text, weight bytes, GPU peak.

GFLOPs are open_clip's own numbers where its model profile lists the architecture
(assets/model_profile.csv, vendored from open_clip's docs/model_profile.csv, MIT; see
assets/model_profile.SOURCE.md). Any other model (`local-dir:`, `hf-hub:`, a name the profile lacks)
is counted the way open_clip's profiler (src/open_clip_train/profiler.py, `--profiler torch`) made that
table: `torch.utils.flop_counter.FlopCounterMode` around one forward pass of ONE image of ones at the
model's image size through the image tower, and ONE text of `context_length` token ids through the text
tower (batch 1), one multiply-add counted as 2 FLOPs. On a CPU, PyTorch's fused attention kernel
(`_scaled_dot_product_flash_attention_for_cpu`) has no FLOP formula, and the MultiheadAttention fast path
(taken under inference mode) is not counted either; the count turns the fast path off and gives the CPU
kernel the formula PyTorch uses for its GPU attention kernels, so a CPU count equals the profile's (made
on CUDA): ViT-B-32 counts 8.818 image / 5.960 text GFLOPs against the profile's 8.82 / 5.96.
A model's count is made once per loaded model object and kept.
"""
from __future__ import annotations

import csv
import dataclasses
import threading
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROFILE_FILE = Path(__file__).resolve().parents[2] / "assets" / "model_profile.csv"
PROFILE_SOURCE = "open_clip's model profile (docs/model_profile.csv)"
COUNTED_SOURCE = ("counted (torch FlopCounterMode, as open_clip's profiler: one {image} image and one text "
                  "of {tokens} tokens, batch 1, a multiply-add = 2 FLOPs)")
_NOT_TEXT = ("visual", "logit_scale", "logit_bias", "text_decoder")   # CoCa's decoder is neither tower
_counted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()    # ClipModel -> (image, text, source)
_counted_lock = threading.Lock()


@dataclass
class ModelCost:
    params: int
    image_params: int
    text_params: int
    image_gflops: float | None
    text_gflops: float | None
    gflops_source: str
    weight_bytes: int                   # parameters + buffers as loaded (their dtypes' element sizes)
    peak_gpu_bytes: int | None = None   # CUDA only: torch.cuda.max_memory_allocated since reset_gpu_peak
    load_seconds: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@lru_cache(maxsize=1)
def _profile() -> dict[str, dict]:
    with PROFILE_FILE.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {row["model"]: {key: (value if key == "model" else float(value)) for key, value in row.items()}
            for row in rows}


def profile_row(name: str) -> dict | None:
    """open_clip's profile row for an architecture name (numbers as floats; image_size too), or None."""
    row = _profile().get(name)
    return None if row is None else dict(row)


def model_cost(model) -> ModelCost:
    """The cost of a loaded ClipModel: its parameters counted, its GFLOPs from open_clip's profile by
    architecture name (when the profile's image size is the model's), else counted once per model."""
    net = model.model
    total = sum(p.numel() for p in net.parameters())
    image = sum(p.numel() for p in net.visual.parameters())
    text = sum(p.numel() for name, p in net.named_parameters() if name.split(".")[0] not in _NOT_TEXT)
    weight_bytes = sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))
    image_gflops, text_gflops, source = _gflops(model)
    return ModelCost(params=total, image_params=image, text_params=text, image_gflops=image_gflops,
                     text_gflops=text_gflops, gflops_source=source, weight_bytes=weight_bytes,
                     peak_gpu_bytes=_gpu_peak(model))


def reset_gpu_peak(model) -> None:
    """Start measuring the model's GPU peak (call before its run; nothing off CUDA)."""
    import torch

    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(model.device)


def _gpu_peak(model) -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated(model.device)) if model.device.type == "cuda" else None


def _gflops(model) -> tuple[float | None, float | None, str]:
    row = profile_row(model.name)
    if row is not None and int(row["image_size"]) == model.image_size:
        return row["image_gflops"], row["text_gflops"], PROFILE_SOURCE
    return count_gflops(model)


def count_gflops(model) -> tuple[float | None, float | None, str]:
    """(image GFLOPs, text GFLOPs, source) counted as open_clip's profiler counts, once per model object
    (a second call returns the kept count); (None, None, "unavailable: ...") when the count fails."""
    with _counted_lock:
        hit = _counted.get(model)
    if hit is None:
        hit = _count_or_explain(model)
        with _counted_lock:
            _counted[model] = hit
    return hit


def _count_or_explain(model) -> tuple[float | None, float | None, str]:
    try:
        image_flops, text_flops, shape = _count_flops(model)
    except Exception as exc:   # an architecture the counter cannot run: say so, never fail the comparison
        return None, None, f"unavailable: counting FLOPs failed ({type(exc).__name__}: {exc})"
    source = COUNTED_SOURCE.format(image="x".join(map(str, shape[-2:])), tokens=model.context_length)
    return image_flops / 1e9, text_flops / 1e9, source


def _count_flops(model) -> tuple[int, int, tuple]:
    """FLOPs of one image and of one text (batch 1, inputs of ones, as open_clip's profiler)."""
    import torch

    net = model.model
    size = getattr(net.visual, "image_size", model.image_size)
    size = tuple(size[-2:]) if isinstance(size, (tuple, list)) else (size, size)
    first = next(net.visual.parameters())
    image = torch.ones((1, 3, *size), device=first.device, dtype=first.dtype)
    text = torch.ones((1, model.context_length), device=first.device, dtype=torch.long)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        with model.inference():
            return _counted_pass(net.encode_image, image), _counted_pass(net.encode_text, text), image.shape
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _counted_pass(forward, batch) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_cpu_attention_formula())
    with counter:
        forward(batch)
    return int(counter.get_total_flops())


def _cpu_attention_formula() -> dict:
    import torch

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {} if op is None else {op: _attention_flops}


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Q K^T and (softmax) V as two batched matmuls, 2 FLOPs a multiply-add (PyTorch's sdpa_flop_count)."""
    batch, heads, queries, dim = query_shape
    keys, value_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * queries * keys * dim + 2 * batch * heads * queries * keys * value_dim
