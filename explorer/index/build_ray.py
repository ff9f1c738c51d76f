"""Indexing on a Ray cluster (`clip-explorer index DIR --index PATH --engine ray [--ray-address ADDR]`).

The driver does what the local engine does before and after the embedding work, with the same code
(build.build_index: the folder lock, the store, the plan of new and changed files, the FAISS
refresh); only the embedding of the planned files runs here, as a Ray Data pipeline:

    plan (driver) -> read + decode + preprocess (CPU tasks, images.prepare: the local engine's
    own step, so the same pixels) -> encode (model actors, a GPU each when the cluster has GPUs)
    -> back to the driver, which commits each batch to index.db as it arrives

Each committed batch is final, so a run killed at any point (driver, worker or node) loses only
the batches in flight, and building again embeds only the rest, exactly like the local engine.
Files that fail come back as rows with their reason and are recorded as failures.

Without an address a local Ray instance is started for the run (and stopped after it). With one,
the run joins that cluster; this package is shipped to it (runtime_env py_modules), and its
nodes need the app's dependencies and the model's weights (see docs/scale.md, "Indexing on a Ray
cluster"). Ray is an optional dependency: `pip install -r requirements-ray.txt`.
"""
from __future__ import annotations

import logging
import math
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.embed.images import ImageError, Limits, prepare
from explorer.inputs import remote

# Ray Data fuses a decode task into the model actor when their resource requests are equal; the
# decoding would then run one image at a time inside the actor with the decode CPUs idle. The model
# actor asks for memory for its weights and activations, which keeps them apart (ray issue 54433).
ACTOR_MEMORY = 1 << 30


class RayRunError(RuntimeError):
    """The Ray run could not start or stopped; the message says why (batches committed are kept)."""


class RayUnavailableError(RayRunError):
    """Ray is not installed, or the cluster cannot be reached."""


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray. `address` None starts a local instance; `actors` None: one per GPU in the
    cluster, or one per node without GPUs; `actor_cpus` None: 1 with a GPU, else a node's CPUs
    less one (decoding gets the one left), at least 1."""
    address: str | None = None
    actors: int | None = None
    actor_cpus: int | None = None


def import_ray():
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise RayUnavailableError("the ray engine needs Ray Data: pip install -r requirements-ray.txt "
                                  "(or pip install 'clip-explorer[ray]')") from None
    return ray


def connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start a local instance -> whether this call started Ray
    (and so should shut it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
    try:
        if address:
            _answering(address)
            package = str(Path(__file__).resolve().parents[1])  # the explorer package
            ray.init(address=address, runtime_env={"py_modules": [package]}, **quiet)
        else:
            ray.init(include_dashboard=False, **quiet)
    except Exception as exc:  # ConnectionError, timeouts, bad address forms, a wrong token...
        raise RayUnavailableError(f"could not start or reach {where}: {exc}{_auth_hint(exc)}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller has its own progress
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context.print_on_execution_start = False
    return True


def _answering(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds when nothing listens at a HOST:PORT address (Ray itself retries for minutes);
    other forms ("auto", "local") are left to Ray."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if not match:
        return
    try:
        socket.create_connection((match[1], int(match[2])), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {match[1]}:{match[2]} ({exc.strerror or exc})") from None


def _auth_hint(exc: BaseException) -> str:
    """Ray's own advice is lost in its wrapping: say what a token-protected cluster needs."""
    chain, seen = exc, set()
    while chain is not None and id(chain) not in seen:
        if "AuthToken" in str(chain) or type(chain).__name__ == "AuthenticationError":
            return (" (the cluster wants a token: set RAY_AUTH_MODE=token, with the token in RAY_AUTH_TOKEN "
                    "or ~/.ray/auth_token, or give --ray-address auto on a node of the cluster)")
        seen.add(id(chain))
        chain = chain.__cause__ or chain.__context__
    return ""


@dataclass(frozen=True)
class ModelSpec:
    """What a model actor needs to load the driver's model, and the identity and weights fingerprint
    it must then have."""
    name: str
    pretrained: str | None
    precision: str
    identity: dict
    weights: str

    @classmethod
    def of(cls, model) -> ModelSpec:
        from .image_index import jsonable
        return cls(model.name, model.pretrained, model.precision, jsonable(model.identity.as_dict()),
                   model.weights_digest)


def decode_batch(batch: dict, *, root: str, preprocess, limits: Limits, pixel_shape: tuple) -> dict:
    """A Ray Data task: read and preprocess each file of the batch (images.prepare; a URI folder's
    files are read through pyarrow, remote.Folder) -> the rows with their pixels, or zeros and the
    reason the file failed."""
    rels = list(batch["rel"])
    pixels = np.zeros((len(rels), *pixel_shape), dtype=np.float32)
    errors = []
    folder = remote.Folder(root) if remote.is_uri(root) else None  # once per batch, not per file
    for row, rel in enumerate(rels):
        try:
            source = folder.read(rel, limits) if folder else os.path.join(root, rel)
            pixels[row] = prepare(source, preprocess, limits, name=rel).numpy()
            errors.append("")
        except ImageError as exc:
            errors.append(exc.reason)
    return {"i": batch["i"], "pixels": pixels, "error": np.array(errors, dtype=object)}


class Encoder:
    """A Ray Data actor: the model, loaded once per actor, encodes the decoded rows of each batch."""

    def __init__(self, spec: ModelSpec, device: str, threads: int):
        import torch

        from explorer.embed.model import load_model

        from .image_index import jsonable

        torch.set_num_threads(max(1, threads))
        self.model = load_model(spec.name, spec.pretrained, device=device, precision=spec.precision)
        found = jsonable(self.model.identity.as_dict())
        if found != spec.identity or self.model.weights_digest != spec.weights:
            raise RuntimeError(f"a Ray worker loaded {self.model.identifier} as {found}, but the index needs "
                               f"{spec.identity}: every node must have the same weights")

    def __call__(self, batch: dict) -> dict:
        import torch

        ok = np.array([not error for error in batch["error"]], dtype=bool)
        embeddings = np.zeros((len(ok), self.model.embed_dim), dtype=np.float32)
        if ok.any():
            embeddings[ok] = self.model.encode_pixels(
                torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok])))
        return {"i": batch["i"], "embedding": embeddings, "error": batch["error"]}


def _placement(ray, options: RayOptions) -> tuple[int, int, int, str]:
    """-> (actors, CPUs per actor, GPUs per actor, device) for this cluster."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    node_cpus = min((int(n["Resources"].get("CPU", 1)) for n in nodes), default=1)
    actors = options.actors or gpus or max(1, len(nodes))
    cpus = options.actor_cpus or (1 if gpus else max(1, node_cpus - 1))
    total_cpus = int(resources.get("CPU", 0))
    if actors * cpus >= total_cpus:  # the decode tasks could never be scheduled: the run would hang
        raise RayRunError(
            f"{actors} model actor(s) of {cpus} CPU(s) would take all {total_cpus} CPUs of the Ray "
            "cluster and leave none for decoding: lower --ray-actors or --ray-actor-cpus")
    return actors, cpus, 1 if gpus else 0, "cuda" if gpus else "cpu"


def pipeline(ray, model, root: Path | str, todo, batch_size: int, limits: Limits, options: RayOptions,
             placement: dict | None = None):
    """The Ray Dataset that reads, decodes and encodes `todo` (rows of (rel, size, mtime)). A
    `placement` dict given gets the model actors, CPUs and GPUs each, and the device they run on."""
    actors, cpus, gpus, device = _placement(ray, options)
    if placement is not None:
        placement.update(actors=actors, actor_cpus=cpus, actor_gpus=gpus, device=device)
    sample_shape = tuple(model.preprocess(_blank(model.image_size)).shape)
    items = [{"i": i, "rel": rel} for i, (rel, *_) in enumerate(todo)]
    blocks = max(1, math.ceil(len(items) / batch_size))
    return (ray.data.from_items(items, override_num_blocks=blocks)
            .map_batches(decode_batch, batch_size=batch_size, num_cpus=1,
                         fn_kwargs=dict(root=str(root), preprocess=model.preprocess, limits=limits,
                                        pixel_shape=sample_shape))
            .map_batches(Encoder, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
                         num_cpus=cpus, num_gpus=gpus, memory=ACTOR_MEMORY,
                         fn_constructor_kwargs=dict(spec=ModelSpec.of(model), device=device, threads=cpus)))


def _blank(size: int):
    from PIL import Image
    return Image.new("RGB", (size, size))


def embed_on_ray(store, model, root: Path | str, todo, batch_size: int, progress, limits: Limits,
                 should_stop: Callable[[], bool] | None, options: RayOptions,
                 placement: dict | None = None) -> tuple[list[str], int]:
    """build._embed's contract, on Ray: embed `todo`, committing each batch as it comes back,
    until done or `should_stop()` after a commit -> (paths embedded, files of `todo` read).
    `placement` (a dict) gets where the model ran: see pipeline."""
    stop = should_stop or (lambda: False)
    if progress:
        progress(0, len(todo))
    if not todo or stop():
        return [], 0
    ray = import_ray()
    started_here = connect(options.address)
    embedded, done = [], 0
    try:
        batches = pipeline(ray, model, root, todo, batch_size, limits, options, placement).iter_batches(
            batch_size=None, batch_format="numpy")
        for batch in _failing_clearly(ray, batches):
            rows, failed = [], []
            for i, vector, error in zip(batch["i"], batch["embedding"], batch["error"]):
                (failed if error else rows).append((*todo[int(i)], error or vector))
            store.write_batch(rows, failed)
            embedded.extend(row[0] for row in rows)
            done += len(rows) + len(failed)
            if progress:
                progress(done, len(todo))
            if done < len(todo) and stop():
                break
    finally:
        if started_here:
            ray.shutdown()
    return embedded, done


def _failing_clearly(ray, batches):
    """The batches; a failure inside Ray (a worker that could not load the model...) becomes one
    RayRunError naming its cause, after everything committed so far is kept."""
    try:
        yield from batches
    except ray.exceptions.RayError as exc:
        # Ray's message is the worker's whole traceback, coloured; its last line is the error itself.
        lines = [
            line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()
        ]
        raise RayRunError(f"the Ray run stopped: {lines[-1] if lines else type(exc).__name__}") from None
