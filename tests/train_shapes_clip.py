"""Train the project's tiny CLIP on synthetic coloured shapes (tests/shapes.py).

Every test uses this model instead of real weights. It is an ordinary open_clip CLIP (ViT image
tower with class-token pooling, causal text transformer with argmax/EOT pooling, standard open_clip
BPE tokenizer), saved in open_clip's `local-dir:` layout:

    tests/assets/shapes_clip/open_clip_config.json      {"model_cfg": ..., "preprocess_cfg": ...}
    tests/assets/shapes_clip/open_clip_model.safetensors  (weights stored as fp16)

and loaded with `open_clip.create_model_and_transforms("local-dir:/abs/path/tests/assets/shapes_clip")`.

Run from the repository folder. How the committed weights were made (two stages; ~6 + ~3 min on 2 idle CPU
cores, longer if shared):

    # 1. plain CLIP training (ClipLoss only): 1000 steps, batch 128, lr 1e-3, cosine, warmup 60
    .venv/bin/python -m tests.train_shapes_clip --out /tmp/shapes_plain
    # 2. continue 300 steps at lr 3e-4 with the auxiliary patch loss, so patch-level maps localise
    .venv/bin/python -m tests.train_shapes_clip --init /tmp/shapes_plain --steps 300 --lr 3e-4 \
        --warmup 20 --patch-loss 0.5

Other uses:

    .venv/bin/python -m tests.train_shapes_clip                 # stage 1 only, straight into tests/assets
    .venv/bin/python -m tests.train_shapes_clip --steps 100 --out /tmp/shapes_try
    .venv/bin/python -m tests.train_shapes_clip --eval-only     # just evaluate the saved model
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from tests.shapes import CLASSES, class_name, draw_pair, draw_shape

HERE = Path(__file__).resolve().parent

DEFAULT_OUT = HERE / "assets" / "shapes_clip"

MODEL_CFG = {
    "embed_dim": 128,
    "vision_cfg": {
        "image_size": 32,
        "patch_size": 4,
        "width": 128,
        "layers": 4,
        "head_width": 32,
    },
    "text_cfg": {
        "context_length": 77,
        "vocab_size": 49408,
        "width": 128,
        "heads": 4,
        "layers": 3,
    },
}

PREPROCESS_CFG = {
    "size": [32, 32],
    "mode": "RGB",
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}

# Single-object caption templates, in the spirit of OpenAI's ImageNet prompt templates.
TEMPLATES = [
    "a {}",
    "a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a drawing of a {}.",
    "a picture of the {}.",
    "a small {}.",
    "a big {}.",
    "itap of a {}.",
    "a rendering of a {}.",
    "a cropped photo of a {}.",
    "a good photo of a {}.",
    "a close-up photo of a {}.",
    "a low resolution photo of a {}.",
    "art of the {}.",
    "a {} on a dark background.",
]

# Two-object captions: {a} is the first-named object, {b} the second (either order is used).
PAIR_TEMPLATES = [
    "a {a} and a {b}",
    "a photo of a {a} and a {b}.",
    "a {a} next to a {b}.",
    "a drawing of a {a} and a {b}.",
]
# Captions that say where each object is (always left object first).
PAIR_SIDE_TEMPLATES = [
    "a {a} on the left and a {b} on the right.",
]

EVAL_TEMPLATE = "a photo of a {}."
EVAL_SIZES = (32, 64, 128, 224)
TRAIN_SEED = 0
EVAL_SEED = 12345


# ----------------------------------------------------------------------------------------------
# data

def _pool_chunk(args):
    """Render one chunk of the training pool; runs in a worker process."""
    chunk_idx, n, seed, pair_frac, preprocess, grid = args
    rng = np.random.default_rng([seed, chunk_idx])
    n_cls = len(CLASSES)
    images = np.empty((n, 3, 32, 32), dtype=np.float16)
    # label: single -> (cls, -1); pair -> (left_cls, right_cls)
    labels = np.empty((n, 2), dtype=np.int64)
    # for pairs: which patches (of the model's grid) each object's box covers
    masks = np.zeros((n, 2) + tuple(grid), dtype=bool)
    for i in range(n):
        size = int(rng.integers(32, 129))
        if rng.random() < pair_frac:
            a = int(rng.integers(n_cls))
            b = int(rng.integers(n_cls - 1))
            b = b + (b >= a)
            img, box_a, box_b = draw_pair(CLASSES[a], CLASSES[b], size=size, rng=rng)
            labels[i] = (a, b)
            masks[i, 0] = _box_mask(box_a, size, grid).numpy()
            masks[i, 1] = _box_mask(box_b, size, grid).numpy()
        else:
            a = int(rng.integers(n_cls))
            img = draw_shape(*CLASSES[a], size=size, rng=rng)
            labels[i] = (a, -1)
        images[i] = preprocess(img).numpy().astype(np.float16)
    return images, labels, masks


def build_pool(n: int, preprocess, seed: int, pair_frac: float, grid, workers: int = 2):
    chunk = 2000
    jobs = [(i, min(chunk, n - i * chunk), seed, pair_frac, preprocess, grid)
            for i in range(math.ceil(n / chunk))]
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_pool_chunk, jobs)
    else:
        parts = [_pool_chunk(j) for j in jobs]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    masks = torch.from_numpy(np.concatenate([p[2] for p in parts]))
    return images, labels, masks


class CaptionTable:
    """Pre-tokenized captions for every (class, template) and (left, right, order, template)."""

    def __init__(self, tokenizer):
        n = len(CLASSES)
        names = [class_name(*c) for c in CLASSES]
        self.single = tokenizer([t.format(nm) for nm in names for t in TEMPLATES]).view(
            n, len(TEMPLATES), -1)
        pair_caps = []
        self.n_pair_t = 2 * len(PAIR_TEMPLATES) + len(PAIR_SIDE_TEMPLATES)
        for a in range(n):
            for b in range(n):
                for t in PAIR_TEMPLATES:
                    pair_caps.append(t.format(a=names[a], b=names[b]))
                    pair_caps.append(t.format(a=names[b], b=names[a]))
                for t in PAIR_SIDE_TEMPLATES:
                    pair_caps.append(t.format(a=names[a], b=names[b]))
        self.pair = tokenizer(pair_caps).view(n, n, self.n_pair_t, -1)

    def sample(self, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        B = labels.shape[0]
        out = torch.empty((B, self.single.shape[-1]), dtype=self.single.dtype)
        single = labels[:, 1] < 0
        idx = single.nonzero().squeeze(1)
        t = torch.randint(len(TEMPLATES), (idx.numel(),), generator=gen)
        out[idx] = self.single[labels[idx, 0], t]
        idx = (~single).nonzero().squeeze(1)
        t = torch.randint(self.n_pair_t, (idx.numel(),), generator=gen)
        out[idx] = self.pair[labels[idx, 0], labels[idx, 1], t]
        return out


# ----------------------------------------------------------------------------------------------
# model helpers

def encode_text_trimmed(model, text: torch.Tensor) -> torch.Tensor:
    """model.encode_text, but on tokens cut to the longest caption in the batch.

    With a causal mask and argmax (EOT) pooling the output is identical; it is just much cheaper.
    """
    L = int(text.argmax(dim=-1).max()) + 1
    text = text[:, :L]
    x = model.token_embedding(text)
    x = x + model.positional_embedding[:L]
    x = model.transformer(x, attn_mask=model.attn_mask[:L, :L])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), text.argmax(dim=-1)]
    return x @ model.text_projection


def encode_image_and_patches(model, images: torch.Tensor):
    """(model.encode_image(images), per-patch embeddings [B, N, D]) from one forward pass."""
    v = model.visual
    assert v.attn_pool is None and not v.final_ln_after_pool and v.pool_type == "tok"
    x = v.ln_post(v.transformer(v._embeds(images)))
    return x[:, 0] @ v.proj, x[:, 1:] @ v.proj


def patch_embeddings(model, images: torch.Tensor) -> torch.Tensor:
    """Per-patch embeddings of the last block: ln_post on every token, then @ proj. [B, gh, gw, D]."""
    v = model.visual
    x = v._embeds(images)
    x = v.transformer(x)
    x = v.ln_post(x)[:, 1:]
    if v.proj is not None:
        x = x @ v.proj
    gh, gw = v.grid_size
    return x.reshape(x.shape[0], gh, gw, -1)


def param_groups(model, wd: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name \
                or "embedding" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": wd}]


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * t))


# ----------------------------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def zero_shot_accuracy(model, preprocess, tokenizer, n_per_class: int = 10, sizes=EVAL_SIZES,
                       seed: int = EVAL_SEED, template: str = EVAL_TEMPLATE) -> dict:
    rng = np.random.default_rng(seed)
    text = tokenizer([template.format(class_name(*c)) for c in CLASSES])
    tf = F.normalize(model.encode_text(text), dim=-1)
    result = {}
    correct_all = total_all = 0
    for size in sizes:
        imgs, labels = [], []
        for k, c in enumerate(CLASSES):
            for _ in range(n_per_class):
                imgs.append(preprocess(draw_shape(*c, size=size, rng=rng)))
                labels.append(k)
        imf = F.normalize(model.encode_image(torch.stack(imgs)), dim=-1)
        pred = (imf @ tf.T).argmax(dim=-1)
        correct = int((pred == torch.tensor(labels)).sum())
        result[size] = correct / len(labels)
        correct_all += correct
        total_all += len(labels)
    result["all"] = correct_all / total_all
    return result


def _box_mask(box, size: int, grid: tuple[int, int]) -> torch.Tensor:
    """Patches whose centre lies inside the (inclusive pixel) box of a size x size image."""
    gh, gw = grid
    ys = (torch.arange(gh) + 0.5) * size / gh
    xs = (torch.arange(gw) + 0.5) * size / gw
    x0, y0, x1, y1 = box
    my = (ys >= y0) & (ys <= y1 + 1)
    mx = (xs >= x0) & (xs <= x1 + 1)
    return my[:, None] & mx[None, :]


@torch.no_grad()
def patch_map_fraction(model, preprocess, tokenizer, n: int = 50, size: int = 64,
                       seed: int = EVAL_SEED + 1) -> float:
    """Fraction of pair images where 'a <left object>' matches its own box better than the other."""
    rng = np.random.default_rng(seed)
    hits = 0
    n_cls = len(CLASSES)
    for _ in range(n):
        a = int(rng.integers(n_cls))
        b = int(rng.integers(n_cls - 1))
        b = b + (b >= a)
        img, box_a, box_b = draw_pair(CLASSES[a], CLASSES[b], size=size, rng=rng)
        pe = F.normalize(patch_embeddings(model, preprocess(img)[None]), dim=-1)[0]
        tf = F.normalize(model.encode_text(tokenizer(["a " + class_name(*CLASSES[a])])), dim=-1)[0]
        sim = pe @ tf
        grid = tuple(sim.shape)
        ma, mb = _box_mask(box_a, size, grid), _box_mask(box_b, size, grid)
        if ma.any() and mb.any() and sim[ma].mean() > sim[mb].mean():
            hits += 1
    return hits / n


# ----------------------------------------------------------------------------------------------
# saving

def write_config(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}
    (out / "open_clip_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def save_weights(model, out: Path) -> Path:
    from safetensors.torch import save_file
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
             if k != "attn_mask"}
    path = out / "open_clip_model.safetensors"
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def load(out: Path):
    name = f"local-dir:{out.resolve()}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)


# ----------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--pool", type=int, default=0,
                    help="pre-rendered training images (default: steps*batch/2)")
    ap.add_argument("--pair-frac", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=TRAIN_SEED)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                    help="bf16 autocast for the forward pass (weights and optimizer stay fp32)")
    ap.add_argument("--patch-loss", type=float, default=0.0,
                    help="weight of an auxiliary loss tying box-pooled patch embeddings of two-object "
                         "images to their objects' captions (0: plain CLIP training)")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from the weights of this local-dir model (same config) instead of random")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--eval-only", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out.resolve()

    if not args.eval_only:
        torch.manual_seed(args.seed)
        # Write the config first and build the model from the local dir, so the config is exactly
        # what loading will use. (open_clip warns that no weights exist: random init.)
        init_state = None
        if args.init is not None:
            from safetensors.torch import load_file
            init_state = load_file(str(args.init.resolve() / "open_clip_model.safetensors"))
        for stale in out.glob("*.safetensors"):
            stale.unlink()
        write_config(out)
        name = f"local-dir:{out}"
        model, _, preprocess = open_clip.create_model_and_transforms(name)
        tokenizer = open_clip.get_tokenizer(name)
        if init_state is not None:
            model.load_state_dict({k: v.float() for k, v in init_state.items()})
            print(f"continuing from {args.init}", flush=True)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model: {n_params / 1e6:.2f}M params", flush=True)

        t0 = time.time()
        n_pool = args.pool or max(args.batch * 4, args.steps * args.batch // 2)
        grid = tuple(model.visual.grid_size)
        images, labels, masks = build_pool(n_pool, preprocess, args.seed, args.pair_frac, grid)
        class_tokens = tokenizer(["a " + class_name(*c) for c in CLASSES])
        captions = CaptionTable(tokenizer)
        print(f"pool: {n_pool} images ({(labels[:, 1] >= 0).float().mean():.0%} pairs) "
              f"in {time.time() - t0:.1f}s", flush=True)

        loss_fn = open_clip.ClipLoss()
        opt = torch.optim.AdamW(param_groups(model, args.wd), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
        gen = torch.Generator().manual_seed(args.seed)
        model.train()
        t1 = time.time()
        for step in range(args.steps):
            lr = lr_at(step, args.steps, args.lr, args.warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = torch.randint(n_pool, (args.batch,), generator=gen)
            x = images[idx].float()
            text = captions.sample(labels[idx], gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp):
                if args.patch_loss > 0:
                    imf, patches = encode_image_and_patches(model, x)
                    cls_tf = encode_text_trimmed(model, class_tokens)
                else:
                    imf = model.encode_image(x)
                tf = encode_text_trimmed(model, text)
            imf = F.normalize(imf.float(), dim=-1)
            tf = F.normalize(tf.float(), dim=-1)
            loss = loss_fn(imf, tf, model.logit_scale.exp())
            if args.patch_loss > 0:
                # Auxiliary: on two-object images, the mean patch embedding over each object's box
                # should pick that object's class among the 24 "a <colour> <shape>" captions.
                lab = labels[idx]
                pair = lab[:, 1] >= 0
                if pair.any():
                    m = masks[idx][pair].flatten(2).float()                     # [P, 2, N]
                    pe = F.normalize(patches[pair].float(), dim=-1)             # [P, N, D]
                    region = F.normalize(torch.einsum("psn,pnd->psd", m, pe)
                                         / m.sum(-1, keepdim=True).clamp(min=1), dim=-1)
                    cls_tf = F.normalize(cls_tf.float(), dim=-1)
                    logits = model.logit_scale.exp() * region.flatten(0, 1) @ cls_tf.T
                    aux = F.cross_entropy(logits, lab[pair].flatten())
                    loss = loss + args.patch_loss * aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            if step % 25 == 0 or step == args.steps - 1:
                el = time.time() - t1
                print(f"step {step:4d}/{args.steps} loss {loss.item():.3f} lr {lr:.2e} "
                      f"scale {model.logit_scale.exp().item():.1f} {el:.0f}s "
                      f"({el / (step + 1):.2f}s/step)", flush=True)
        print(f"training: {time.time() - t1:.0f}s; total incl. data {time.time() - t0:.0f}s", flush=True)
        path = save_weights(model, out)
        print(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)

    # Evaluate what was saved, loaded back the way the app and tests load it (fp32, CPU).
    model, preprocess, tokenizer = load(out)
    acc = zero_shot_accuracy(model, preprocess, tokenizer)
    print("zero-shot 24-way accuracy ('a photo of a {}.'): "
          + ", ".join(f"{k}px {v:.1%}" if k != "all" else f"all {v:.1%}" for k, v in acc.items()))
    for size in (64, 224):
        frac = patch_map_fraction(model, preprocess, tokenizer, size=size)
        print(f"patch-map check ({size}px pairs, 'a <left object>' higher on its own box): {frac:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
