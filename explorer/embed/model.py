"""The resident model: load any open_clip identifier, place it on a device, encode images and texts.

Every embedding leaving this module is an L2-normalised float32 numpy array. Text encoding runs the
transformer only over the tokens the prompts need (see `_encode_tokens_cut`), and text embeddings are
cached per model, so adding one label encodes only that label's prompts.
"""
from __future__ import annotations

import gc
import hashlib
import itertools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoints
from .cache import LRU
from .names import HF_HUB, LOCAL_DIR, ModelLoadError, describe  # noqa: F401 (torch-free, also read from here)
from .vectors import normalize  # noqa: F401 (torch-free, also read from here)

TEXT_CACHE_SIZE = 50_000
TEXT_CACHE_BYTES = 128 << 20   # text embeddings kept per model (50,000 x 768-d float32 would be 154 MB)
TOKEN_CACHE_BYTES = 32 << 20   # token ids kept per model
RANDOM_INIT_SEED = 0              # the seed of a model loaded without weights (see load_model)
WEIGHT_SAMPLES = 4096          # values per weight tensor in weights_digest
_instances = itertools.count(1)
log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> torch.device:
    """'auto' means CUDA, then Apple MPS, then CPU; anything else is taken as a torch device string."""
    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError(f"device {requested!r} was asked for but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ModelLoadError(f"device {requested!r} was asked for but Apple MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_precision(device: torch.device, requested: str = "auto") -> str:
    """fp32 on CPU; fp16 autocast on a GPU. Overridable with fp32, fp16 or bf16."""
    if requested in (None, "", "auto"):
        return "fp32" if device.type == "cpu" else "fp16"
    if requested not in ("fp32", "fp16", "bf16"):
        raise ModelLoadError(f"unknown precision {requested!r}: use auto, fp32, fp16 or bf16")
    if requested == "fp16" and device.type == "cpu":
        raise ModelLoadError("fp16 is not supported on the CPU: use fp32 or bf16")
    return requested


def check_identifier(name: str, pretrained: str | None) -> None:
    """Cheap checks that catch typos before anything heavy happens (or the resident model is freed)."""
    import open_clip

    if not name or not name.strip():
        raise ModelLoadError("no model name was given")
    if name.startswith(LOCAL_DIR):
        folder = Path(name[len(LOCAL_DIR):]).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"{name}: folder not found")
        if not (folder / "open_clip_config.json").is_file():
            raise ModelLoadError(f"{name}: no open_clip_config.json in that folder")
        if not any(any(folder.glob(pattern)) for pattern in ("*.safetensors", "*.bin", "*.pth", "*.pt")):
            raise ModelLoadError(f"{name}: no weights file (.safetensors, .bin, .pth) in that folder")
        return
    if name.startswith(HF_HUB):
        if "/" not in name[len(HF_HUB):]:
            raise ModelLoadError(f"{name}: expected hf-hub:organisation/repository")
        return
    if name not in open_clip.list_models():
        raise ModelLoadError(f"{name}: not an open_clip model name (see open_clip.list_models())")
    if pretrained and not os.path.isfile(pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ModelLoadError(
                f"{describe(name, pretrained)}: {pretrained!r} is neither a checkpoint file nor a pretrained "
                f"tag of {name} (known tags: {', '.join(tags) or 'none'})")


def _explain_load_failure(exc: BaseException) -> str:
    """One reason for a failure inside open_clip (checkpoints.plan has ruled out an unreachable Hub)."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if any(word in lowered for word in ("connection", "offline", "resolve", "network", "download", "hub")):
        text += (f" — weights come from the Hugging Face Hub on first use and are cached under "
                 f"{checkpoints.cache_dir()}; this machine could not fetch them")
    return text.splitlines()[0] if len(text) > 600 else text


@dataclass(frozen=True)
class ModelIdentity:
    """What an index or a cache needs to know about the model that made an embedding."""
    name: str
    pretrained: str | None
    embed_dim: int
    image_size: int
    preprocess: tuple  # (mean, std, interpolation, resize_mode) as JSON-friendly values

    def as_dict(self) -> dict:
        return {"name": self.name, "pretrained": self.pretrained, "embed_dim": self.embed_dim,
                "image_size": self.image_size, "preprocess": list(self.preprocess)}

    def describe(self) -> str:
        return describe(self.name, self.pretrained)


class ClipModel:
    """One loaded open_clip model with its preprocessing, tokenizer and text-embedding cache.

    `instance` is unique per load in this process: caches of image embeddings key on it, and each
    instance keeps its own text and token caches, so two models (two with the same name or the same
    embedding size, or the same name reloaded with other weights) never share an entry. `identity`
    (name, tag, size, preprocessing) cannot tell such models apart; `weights_digest` can."""

    def __init__(self, name: str, pretrained: str | None, model: torch.nn.Module, preprocess: Callable,
                 tokenizer: Callable, device: torch.device, precision: str):
        self.name = name
        self.pretrained = pretrained
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.precision = precision
        self.embed_dim = int(_embed_dim(model))
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.logit_scale = float(model.logit_scale.detach().float().exp().reshape(-1)[0])
        bias = getattr(model, "logit_bias", None)
        self.logit_bias = None if bias is None else float(bias.detach().float().reshape(-1)[0])
        self.uses_text_cut = _supports_text_cut(model)
        self.instance = next(_instances)
        self._weights_digest: str | None = None
        self._lock = threading.RLock()         # held only by forward passes (and `inference`)
        self._token_lock = threading.Lock()    # the tokenizer's own: tokenising never holds the model
        self._text_cache = LRU(TEXT_CACHE_SIZE, TEXT_CACHE_BYTES)
        # text -> its token ids before any cut (see token_counts)
        self._token_cache = LRU(TEXT_CACHE_SIZE, TOKEN_CACHE_BYTES)
        self.context_length = _context_length(tokenizer, model)
        # What actually ran through each tower (tests and benchmarks read these to prove re-use).
        self.text_encodes = 0
        self.image_encodes = 0

    @property
    def identifier(self) -> str:
        return describe(self.name, self.pretrained)

    @property
    def scoring(self):
        """How this model's cosines become probabilities (softmax or sigmoid); see probability.py."""
        from .probability import scoring_of
        return scoring_of(self)

    @property
    def identity(self) -> ModelIdentity:
        cfg = getattr(self.model.visual, "preprocess_cfg", {}) or {}
        preprocess = (list(cfg.get("mean", ())), list(cfg.get("std", ())),
                      cfg.get("interpolation"), cfg.get("resize_mode"))
        return ModelIdentity(self.name, self.pretrained, self.embed_dim, self.image_size, tuple(preprocess))

    @property
    def weights_digest(self) -> str:
        """A fingerprint of the loaded weights (SHA-256, hex): every tensor of the state dict by name and
        shape, with up to WEIGHT_SAMPLES evenly spaced values of each, as float32. The same weights give
        the same digest whatever the device or autocast precision; other weights (a fine-tune, another
        random init, a checkpoint replaced under the same name) give another, unless they differ only
        between the sampled values. Computed once per load, when first asked (no full pass over the
        weights: about 0.4 s for ViT-B-32 on a CPU)."""
        if self._weights_digest is None:
            self._weights_digest = _weights_digest(self.model)
        return self._weights_digest

    @contextmanager
    def inference(self):
        """Run the open_clip module directly (e.g. patch maps) under this model's lock and precision."""
        with self._lock, torch.inference_mode(), self._autocast():
            yield

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # ---- images -------------------------------------------------------------------------------
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Encode a batch of preprocessed images [N, 3, H, W] (see images.prepare) in one forward pass."""
        with self._lock, torch.inference_mode(), self._autocast():
            features = self.model.encode_image(pixels.to(self.device, non_blocking=True))
            self.image_encodes += len(pixels)
            return F.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)

    # ---- texts --------------------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Encode texts -> [N, D]; cached by text, so only unseen texts reach the model. Cache
        look-ups and tokenising run outside the model's lock; only each batch's forward pass holds
        it, so another request's texts or images wait at most one batch."""
        out = np.zeros((len(texts), self.embed_dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            hit = self._text_cache.get(text)
            if hit is None:
                missing.setdefault(text, []).append(i)
            else:
                out[i] = hit
        if missing:
            unique = list(missing)
            encoded = self._encode_uncached(unique, batch_size)
            for text, row in zip(unique, encoded):
                self._text_cache.put(text, row)
                out[missing[text]] = row
        return out

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Per text, its true length in tokens before the context cut (start and end tokens
        included): above `context_length`, the model never reads its end. Each text is tokenised once
        per model; encode_texts re-uses the same ids (open_clip's own tokenizer)."""
        return [len(self._token_ids(text)) for text in texts]

    def _token_ids(self, text: str) -> tuple:
        hit = self._token_cache.get(text)
        if hit is None:
            with self._token_lock:  # one text at a time: other requests' texts interleave
                hit = tuple(_full_token_ids(self.tokenizer, text, self.context_length))
            self._token_cache.put(text, hit)
        return hit

    def _tokenize(self, texts: list[str], chunk: int = 256) -> torch.Tensor:
        """The [N, context] token tensor the tokenizer would give. For open_clip's SimpleTokenizer it
        is built from the cached ids, exactly as SimpleTokenizer.__call__ cuts them (the last kept token
        becomes end-of-text); other tokenizers (Hugging Face ones: SigLIP, ...) are called directly,
        `chunk` texts at a time under the tokenizer's lock (never the model's)."""
        if not _is_simple_tokenizer(self.tokenizer):
            parts = []
            for start in range(0, len(texts), chunk):
                with self._token_lock:
                    parts.append(self.tokenizer(texts[start:start + chunk]))
            return torch.cat(parts) if parts else self.tokenizer([])
        eot = self.tokenizer.eot_token_id
        result = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = list(self._token_ids(text))
            if len(ids) > self.context_length:
                ids = ids[:self.context_length]
                ids[-1] = eot
            result[i, :len(ids)] = torch.tensor(ids)
        return result

    def _encode_uncached(self, texts: list[str], batch_size: int) -> np.ndarray:
        tokens = self._tokenize(texts)
        result = np.zeros((len(texts), self.embed_dim), dtype=np.float32)
        if self.uses_text_cut:
            # Batch prompts of similar length together so each batch is cut to a short context.
            order = np.argsort(_token_lengths(tokens), kind="stable")
        else:
            order = np.arange(len(texts))
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = tokens[torch.as_tensor(idx)]
            with self._lock, torch.inference_mode(), self._autocast(
            ):  # the forward pass alone holds the model
                batch = batch.to(self.device)
                if self.uses_text_cut:
                    features = _encode_tokens_cut(self.model, batch)
                else:
                    features = self.model.encode_text(batch)
                result[idx] = F.normalize(features.float(), dim=-1).cpu().numpy()
                self.text_encodes += len(idx)
        return result


def _weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    with torch.inference_mode():
        for name, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
            if flat.numel() == 0:
                continue
            count = min(flat.numel(), WEIGHT_SAMPLES)  # integer positions: the same on every device
            at = torch.arange(count, dtype=torch.long) * (flat.numel() - 1) // max(count - 1, 1)
            digest.update(flat[at.to(flat.device)].float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _embed_dim(model: torch.nn.Module) -> int:
    visual = model.visual
    for attr in ("output_dim", "embed_dim"):
        value = getattr(visual, attr, None)
        if isinstance(value, int):
            return value
    proj = getattr(visual, "proj", None)
    if isinstance(proj, torch.Tensor):
        return proj.shape[1]
    with torch.inference_mode():
        size = getattr(visual, "image_size", 224)
        size = size if isinstance(size, (tuple, list)) else (size, size)
        return model.encode_image(torch.zeros(1, 3, *size)).shape[-1]


def _context_length(tokenizer, model) -> int:
    """The number of tokens the text tower reads: the tokenizer's, else the model's, else CLIP's 77."""
    for value in (getattr(tokenizer, "context_length", None), getattr(model, "context_length", None)):
        if isinstance(value, int) and value > 0:
            return value
    return 77


def _is_simple_tokenizer(tokenizer) -> bool:
    from open_clip.tokenizer import SimpleTokenizer

    return isinstance(tokenizer, SimpleTokenizer) and getattr(tokenizer, "reduction_fn", None) is None


def _full_token_ids(tokenizer, text: str, context_length: int) -> list[int]:
    """The ids of `text` with no context cut, start and end tokens included.

    open_clip's SimpleTokenizer: <start> + BPE + <end>, as its __call__ builds them before cutting.
    Hugging Face tokenizers (open_clip's HFTokenizer, SigLipTokenizer): the wrapped tokenizer with
    its special tokens and no truncation, after the wrapper's text cleaning. Anything else: the
    tokenizer itself at a long context (its padding, id 0, not counted), else at its own context
    (a cut text then counts as the full context: the cut is seen, its size is not)."""
    if _is_simple_tokenizer(tokenizer):
        return [tokenizer.sot_token_id] + tokenizer.encode(text) + [tokenizer.eot_token_id]
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and callable(inner):
        clean = getattr(tokenizer, "clean_fn", None) or (lambda t: t)
        try:
            ids = list(inner(clean(text), truncation=False, add_special_tokens=True)["input_ids"])
            return ids + [0] * (getattr(tokenizer, "tokenizer_mode", "") == "clips")  # its class token
        except Exception:  # noqa: BLE001 - an unusual tokenizer: fall back below
            pass
    try:
        row = tokenizer([text], context_length=4 * context_length)[0]
    except TypeError:
        row = tokenizer([text])[0]
    return row[: int(_token_lengths(row[None].cpu())[0])].tolist()


def _supports_text_cut(model: torch.nn.Module) -> bool:
    """True for text towers whose output at the pooled token cannot see tokens after it:
    open_clip's CLIP class with a causal mask and end-of-text (argmax / eos) pooling."""
    import open_clip

    return (isinstance(model, open_clip.CLIP)
            and getattr(model, "attn_mask", None) is not None
            and getattr(model, "text_pool_type", None) in ("argmax", "eos")
            and getattr(model, "positional_embedding", None) is not None)


def _token_lengths(tokens: torch.Tensor) -> np.ndarray:
    """Index of the last non-padding token + 1, per row (padding is token 0)."""
    nonzero = (tokens != 0).int()
    positions = torch.arange(tokens.shape[1]).expand_as(tokens)
    return ((positions + 1) * nonzero).max(dim=1).values.numpy()


PACK_WIDTH_LIMIT = 64  # packed rows stay this short: the per-row, per-head mask grows with its square


def _pool_positions(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Per prompt, the position its embedding is read at, as open_clip's text_global_pool reads it."""
    if model.text_pool_type == "argmax":
        return tokens.argmax(dim=-1)
    return (tokens == getattr(model, "text_eos_id", None)).int().argmax(dim=-1)


def _pack_rows(lengths: Sequence[int], limit: int = PACK_WIDTH_LIMIT) -> tuple[list[tuple], int] | None:
    """Prompts two to a row (longest with shortest, while the pair fits) at the row width that runs
    the fewest positions, as (rows of prompt indices, width); None when one prompt per row, cut to the
    longest, runs as few. 80 templates of 7..13 tokens: 40 rows of 20 instead of 80 of 13."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    longest = lengths[order[-1]]
    best, best_cost = None, len(order) * longest
    for width in range(longest + 1, min(2 * longest, limit) + 1):
        if width * ((len(order) + 1) // 2) >= best_cost:
            break  # even perfect pairing at this width or wider cannot win
        rows, low, high = [], 0, len(order) - 1
        while low <= high:
            if low < high and lengths[order[low]] + lengths[order[high]] <= width:
                rows.append((order[high], order[low]))
                low += 1
            else:
                rows.append((order[high],))
            high -= 1
        if len(rows) * width < best_cost:
            best, best_cost = (rows, width), len(rows) * width
    return best


def _packed_inputs(tokens: np.ndarray, lengths: np.ndarray, pool_at: np.ndarray, rows: list[tuple],
                   width: int, heads: int):
    """Token ids, positions, attention mask and read-out places of prompts packed into rows: each
    prompt keeps its own positions (0, 1, ...) and attends causally within itself only, so its
    embedding is the one it has alone. Padding attends to itself (no empty softmax)."""
    ids = np.zeros((len(rows), width), dtype=np.int64)
    positions = np.zeros((len(rows), width), dtype=np.int64)
    starts = np.tile(np.arange(width), (len(rows), 1))
    row_of, col_of = np.zeros(len(tokens), dtype=np.int64), np.zeros(len(tokens), dtype=np.int64)
    for r, row in enumerate(rows):
        offset = 0
        for k in row:
            end = offset + lengths[k]
            ids[r, offset:end] = tokens[k, :lengths[k]]
            positions[r, offset:end] = np.arange(lengths[k])
            starts[r, offset:end] = offset
            row_of[k], col_of[k] = r, offset + pool_at[k]
            offset = end
    index = torch.arange(width)
    starts = torch.from_numpy(starts)
    allowed = (index[None, None, :] <= index[None, :, None]) & (index[None, None, :] >= starts[:, :, None])
    mask = torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf")).repeat_interleave(heads, dim=0)
    return (torch.from_numpy(ids), torch.from_numpy(positions), mask,
            (torch.from_numpy(row_of), torch.from_numpy(col_of)))


def _packable(model: torch.nn.Module) -> bool:
    """Every block is open_clip's standard one (torch MultiheadAttention, which takes a mask per row)."""
    return all(isinstance(getattr(block, "attn", None), torch.nn.MultiheadAttention)
               for block in model.transformer.resblocks)


def _encode_tokens_cut(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip CLIP.encode_text, running only the positions the prompts need.

    With a causal mask, position i attends only to positions <= i, and the embedding is read at
    the end-of-text token; the padding after it never influences the result, so dropping it is exact.
    The batch is cut to its longest prompt, or, where fewer positions run that way, prompts share
    rows two at a time (`_pack_rows`), each attending only to itself: exact as well.
    """
    host = tokens.cpu()
    pool_at = _pool_positions(model, host).numpy()
    lengths = np.maximum(_token_lengths(host), pool_at + 1)
    packing = _pack_rows(lengths.tolist()) if _packable(model) else None
    if packing is None:
        length = max(int(lengths.max()), 1)
        ids, positions = tokens[:, :length], torch.arange(length, device=tokens.device)
        mask, read_at = model.attn_mask[:length, :length], (torch.arange(len(tokens)),
                                                            torch.from_numpy(pool_at))
    else:
        heads = model.transformer.resblocks[0].attn.num_heads
        ids, positions, mask, read_at = _packed_inputs(host.numpy(), lengths, pool_at, *packing, heads)
        ids, positions, mask = ids.to(tokens.device), positions.to(tokens.device), mask.to(tokens.device)
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(ids).to(cast_dtype)
    x = x + model.positional_embedding[positions].to(cast_dtype)
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)[tuple(i.to(x.device) for i in read_at)]
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection,
                                                   torch.nn.Linear) else x @ model.text_projection
    return x


def _out_of_memory(exc: BaseException) -> bool:
    cause = exc.__cause__
    return isinstance(cause, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def load_model(name: str, pretrained: str | None = None, device: str = "auto",
               precision: str = "auto") -> ClipModel:
    """Load any open_clip identifier: a built-in name with a pretrained tag or checkpoint file,
    `hf-hub:org/repo`, or `local-dir:/path`. Raises ModelLoadError with a plain reason."""
    import open_clip

    name = name.strip()
    if name.startswith(LOCAL_DIR):
        name = LOCAL_DIR + str(Path(name[len(LOCAL_DIR):]).expanduser().resolve())
    if name.startswith((LOCAL_DIR, HF_HUB)):
        pretrained = None  # open_clip ignores it for these schemas; don't pretend otherwise
    pretrained = pretrained or None
    check_identifier(name, pretrained)
    torch_device = pick_device(device)
    chosen_precision = pick_precision(torch_device, precision)
    try:
        route = checkpoints.plan(name, pretrained)  # in seconds: never wait on the Hub client's retries
    except checkpoints.Unavailable as exc:
        raise ModelLoadError(str(exc), exc.advice) from None
    checkpoints.hub_logs_once()
    # No weights at all (a built-in name without a tag: benchmarks and tests): the random init is seeded,
    # so every load is the same model and its embeddings can be stored and resumed across runs.
    random_init = pretrained is None and not name.startswith((LOCAL_DIR, HF_HUB))
    try:
        seeded = torch.random.fork_rng(devices=[], enabled=random_init)
        with checkpoints.hub_offline(route == "cached"), seeded:
            if random_init:
                torch.manual_seed(RANDOM_INIT_SEED)
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained,
                                                                         device=torch_device)
            tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:  # open_clip raises many kinds; the user needs one clear sentence
        raise ModelLoadError(
            f"could not load {describe(name, pretrained)}: {_explain_load_failure(exc)}") from exc
    model.eval()
    return ClipModel(name, pretrained, model, preprocess, tokenizer, torch_device, chosen_precision)


@contextmanager
def parked(model: ClipModel | None):
    """While the block runs, a model on a CUDA device has its weights on the CPU (to make room for
    another model), under its lock, so no forward pass runs meanwhile; after, they are back on its
    device: the same object, the same weights. On any other device (or with None) nothing moves."""
    if model is None or model.device.type != "cuda":
        yield model
        return
    with model._lock:
        model.model.to("cpu")
        gc.collect()
        torch.cuda.empty_cache()
        try:
            yield model
        finally:
            model.model.to(model.device)


class ModelSlot:
    """Holds the one resident model of the process. A new model replaces the old one only once it
    has loaded: a load that fails, for whatever reason, leaves the working model in place."""

    def __init__(self):
        self.model: ClipModel | None = None
        self.error: str | None = None
        self.advice: checkpoints.Advice | None = None  # with `error`, when the weights could not be had
        self._lock = threading.Lock()

    def load(self, name: str, pretrained: str | None = None, device: str = "auto",
             precision: str = "auto", *, public: bool = False) -> ClipModel | None:
        """Load a model into the slot; on failure the slot records the error and returns None.
        `public` (hosted mode): the recorded error names the model but not why it failed, which
        could reveal server paths; the reason goes to the server log."""
        with self._lock:
            try:
                check_identifier(name.strip(), pretrained if not name.startswith(
                    (LOCAL_DIR, HF_HUB)) else None)
                try:
                    fresh = load_model(name, pretrained, device, precision)
                except ModelLoadError as exc:
                    if self.model is None or self.model.device.type != "cuda" or not _out_of_memory(exc):
                        raise
                    # Both models do not fit on the GPU: free the old one, and put it back if the new fails.
                    old = (self.model.name, self.model.pretrained)
                    self._free()
                    try:
                        fresh = load_model(name, pretrained, device, precision)
                    except ModelLoadError:
                        self.model = load_model(*old, device, precision)
                        raise
            except ModelLoadError as exc:
                log.warning("model load failed: %s", exc)
                self.advice = None if public else exc.advice
                self.error = (f"could not load {describe(name, pretrained)}" if public
                              else exc.advice.reason if exc.advice else str(exc))
                return None
            self._swap(fresh)
            return fresh

    def _swap(self, fresh: ClipModel) -> None:
        """Put the loaded model in the slot in one assignment: a call reading `model` meanwhile gets
        the old one or the new one, never None. The old one is freed once no call still holds it."""
        old, self.model = self.model, fresh
        self.error, self.advice = None, None
        if old is not None:
            device = old.device
            del old
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

    def _free(self) -> None:
        if self.model is None:
            return
        device = self.model.device
        self.model = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def loaded(self) -> str | None:
        """What is loaded, in one line (None: nothing)."""
        m = self.model
        if m is None:
            return None
        return f"Loaded {m.identifier} on {m.device.type} ({m.precision}), {m.embed_dim}-d embeddings."

    def status(self) -> str:
        """One line for people: what is loaded, and what last failed to load."""
        loaded = self.loaded()
        if self.error and loaded:
            return f"{self.error}. Still using the model loaded before: {loaded}"
        if self.error:
            return f"No model loaded: {self.error}."
        return loaded or "No model loaded."
