"""Decoding that cannot hold others: a bounded pool of decode worker processes.

Each worker is `python -m explorer.embed.decode_pool` (a plain subprocess, not multiprocessing: spawn and
forkserver re-import the app's main module, which imports torch and gradio). It imports images.py
only, caps its own address space (RLIMIT_AS: its baseline plus the decode budget), sets PIL's own
bomb guard (Image.MAX_IMAGE_PIXELS) to the job's pixel limit inside itself only, and decodes one
image at a time with images.load_image, which checks every limit from the header first.

The app's threads share the pool: each takes a free worker (waiting, if all N are busy, is the only
wait), sends it one job (the file's bytes or path, Limits, Fit, name) and reads back the decoded,
fitted RGB image, or a refusal. No lock is held while a worker decodes. A decode that takes longer
than the time budget has its worker killed (and replaced when next needed): only that image fails,
"took more than 5 s to decode". A worker that dies (out of memory, a crash in a decoder) fails only
its image too. Workers start when first needed and are reused.

Replies are not pickled: a worker handles hostile files, so what it sends back is read as plain
fields (a status byte, sizes, the pixels or a reason) and checked, never executed. Jobs go the
other way, from the app to its own worker, as pickles.

`configure(settings)` starts using a pool when settings.decode_workers > 0 (images.use_decoder);
the CLI and DataLoader workers decode in-process.
"""
from __future__ import annotations

import atexit
import os
import pickle
import resource
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from PIL import Image

from . import images
from .images import Fit, ImageError, Limits, set_with

STARTUP_SECONDS = 60.0      # a worker importing numpy and PIL on a busy machine
MEMORY_SLACK = 96 << 20     # above the decode budget: the reply's copy of the pixels, allocator slack
JOBS_PER_WORKER = 500       # a worker is replaced after this many images (fragmentation, leaks)
_HEADER = struct.Struct(">cQ")   # kind (b"R" ready, b"O" image, b"E" refusal), payload length
_IMAGE = struct.Struct(">II")    # width, height; then RGB bytes


class _Ended(Exception):
    """The worker is gone (or never answered): `how` says why."""

    def __init__(self, how: str):
        super().__init__(how)
        self.how = how


class _Worker:
    """One decode process and its two pipes; used by one thread at a time."""

    def __init__(self, memory_bytes: int):
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "explorer.embed.decode_pool", "--worker", str(memory_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            cwd=package_root, start_new_session=True)
        self.jobs = 0
        kind, _ = self._read_reply(time.monotonic() + STARTUP_SECONDS)
        if kind != b"R":
            raise _Ended("it did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    def run(self, job: tuple, seconds: float | None) -> tuple[bytes, bytes]:
        """Send one job and wait for its reply -> (kind, payload); _Ended when the worker dies, TimeoutError
        after `seconds` (the worker is then no longer usable)."""
        message = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.process.stdin.write(struct.pack(">Q", len(message)) + message)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise _Ended(self._how()) from None
        self.jobs += 1
        return self._read_reply(None if not seconds else time.monotonic() + seconds)

    def _read_reply(self, deadline: float | None) -> tuple[bytes, bytes]:
        kind, length = _HEADER.unpack(self._read(_HEADER.size, deadline))
        return kind, self._read(length, deadline)

    def _read(self, n: int, deadline: float | None) -> bytes:
        fd = self.process.stdout.fileno()
        chunks, left = [], n
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while left:
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and (wait <= 0 or not selector.select(wait)):
                    raise TimeoutError
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    raise _Ended(self._how())
                chunks.append(chunk)
                left -= len(chunk)
        return b"".join(chunks)

    def _how(self) -> str:
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return f"it was ended by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        return f"it exited with status {code}"

    def stop(self, kill: bool = False) -> None:
        """End the process (closing its stdin ends an idle one; `kill` ends a busy one) and reap it."""
        try:
            if kill:
                self.process.kill()
            else:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except (OSError, ValueError):
                pass


class DecodePool:
    """At most `workers` decode processes, each with `seconds` per image (None or 0: no time budget)
    and `memory_bytes` of address space above its own baseline. Thread-safe; `decode` is an
    images.Decoder."""

    def __init__(self, workers: int, seconds: float | None, memory_bytes: int):
        if workers < 1:
            raise ValueError("a decode pool needs at least one worker")
        self.workers, self.seconds, self.memory_bytes = workers, seconds or None, memory_bytes
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()   # guards the two collections below only, never held across a decode
        self._idle: list[_Worker] = []
        self._running: set[_Worker] = set()
        self._closed = False

    def decode(self, source: bytes | str, limits: Limits, fit: Fit | None, name: str) -> Image.Image:
        """The decoded, fitted RGB image of `source` (bytes or a path), as images.load_image gives it
        in-process, or ImageError (the worker's refusal, the time budget, a worker that died)."""
        # Plain types only: a str subclass (gradio hands its paths over as NamedString) would make the
        # worker import its module, gradio and pandas, under its memory limit.
        source = bytes(source) if isinstance(source,
                                             (bytes, bytearray, memoryview)) else str(os.fspath(source))
        name = str(name)
        with self._slots:  # the only wait: for a free worker
            worker = self._take(name)
            try:
                kind, payload = worker.run((source, limits, fit, name), self.seconds)
            except TimeoutError:
                self._drop(worker, kill=True)
                raise ImageError(name, f"took more than {self.seconds:g} s to decode"
                                       f" ({set_with('decode_seconds')})") from None
            except _Ended as exc:
                self._drop(worker, kill=True)
                raise ImageError(name, f"decoding failed: the decode worker ended ({exc.how})") from None
            except BaseException:
                self._drop(worker, kill=True)
                raise
            self._give_back(worker, retire=kind == b"E" and b"out of memory" in payload)
        return _image_of(kind, payload, limits, name)

    def pids(self) -> list[int]:
        """The process ids of the workers started now (idle or busy)."""
        with self._lock:
            return sorted(w.pid for w in self._idle + list(self._running))

    def shutdown(self) -> None:
        """Stop every worker; a later decode starts new ones."""
        with self._lock:
            idle, busy = self._idle, list(self._running)
            self._idle, self._running = [], set()
        for worker in idle:
            worker.stop()
        for worker in busy:
            worker.stop(kill=True)

    def _take(self, name: str) -> _Worker:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            try:
                worker = _Worker(self.memory_bytes)  # started outside the lock: others go on meanwhile
            except (OSError, _Ended, TimeoutError) as exc:
                raise ImageError(name, f"decoding failed: no decode worker could start ({exc})") from None
        with self._lock:
            self._running.add(worker)
        return worker

    def _give_back(self, worker: _Worker, retire: bool = False) -> None:
        with self._lock:
            self._running.discard(worker)
            keep = not retire and worker.jobs < JOBS_PER_WORKER
            if keep:
                self._idle.append(worker)
        if not keep:
            worker.stop()

    def _drop(self, worker: _Worker, kill: bool) -> None:
        with self._lock:
            self._running.discard(worker)
        worker.stop(kill=kill)


def _image_of(kind: bytes, payload: bytes, limits: Limits, name: str) -> Image.Image:
    """A worker's reply as an image, or its refusal as ImageError; anything malformed is refused."""
    if kind == b"E":
        raise ImageError(name, payload.decode("utf-8", "replace")[:2000])
    if kind == b"O" and len(payload) >= _IMAGE.size:
        width, height = _IMAGE.unpack_from(payload)
        if 0 < width * height <= limits.max_pixels and len(payload) == _IMAGE.size + 3 * width * height:
            return Image.frombytes("RGB", (width, height), memoryview(payload)[_IMAGE.size:])
    raise ImageError(name, "decoding failed: the decode worker sent a malformed reply")


_POOL: DecodePool | None = None
_POOL_LOCK = threading.Lock()


def configure(settings) -> DecodePool | None:
    """Decode through a pool of settings.decode_workers processes, each image within
    settings.decode_seconds and settings.max_decode_mb (0 workers: decode in-process, the CLI's way).
    Installs the pool in images (use_decoder) and returns it; a pool configured before is shut down."""
    global _POOL
    workers = int(getattr(settings, "decode_workers", 0) or 0)
    pool = None
    if workers > 0:
        budget = int(settings.max_decode_mb * 2**20) + MEMORY_SLACK
        pool = DecodePool(workers, float(getattr(settings, "decode_seconds", 0) or 0), budget)
    with _POOL_LOCK:
        old, _POOL = _POOL, pool
    images.use_decoder(pool.decode if pool is not None else None)
    if old is not None:
        old.shutdown()
    return pool


def shutdown() -> None:
    """Stop the configured pool's workers and decode in-process from now on."""
    global _POOL
    with _POOL_LOCK:
        old, _POOL = _POOL, None
    if old is not None:
        images.use_decoder(None)
        old.shutdown()


atexit.register(shutdown)


# --- the worker process ------------------------------------------------------------------------------

def _vm_size() -> int:
    with open("/proc/self/status") as fp:
        for line in fp:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit_memory(budget: int) -> None:
    """Cap this process's address space at what it uses now plus `budget` (where the OS allows)."""
    try:
        resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + budget, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass


def _end_with(parent: int) -> None:
    """End this worker when the app is gone, even in the middle of a decode (an idle worker ends at
    once, on its closed stdin). Polled: PR_SET_PDEATHSIG follows the thread that started the worker."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _answer(job: tuple) -> tuple[bytes, bytes]:
    source, limits, fit, name = job
    Image.MAX_IMAGE_PIXELS = limits.max_pixels  # PIL's own guard, in this process only
    try:
        image = images.load_image(source, limits, name=name, fit=fit)
    except ImageError as exc:
        return b"E", exc.reason.encode("utf-8", "replace")
    except MemoryError:
        return b"E", b"out of memory while decoding"
    return b"O", _IMAGE.pack(*image.size) + image.tobytes()


def _worker(budget: int) -> None:
    reply = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # a decoder that prints cannot corrupt the replies
    jobs = os.fdopen(os.dup(0), "rb")
    _limit_memory(budget)
    images.use_decoder(None)
    threading.Thread(target=_end_with, args=(os.getppid(),), daemon=True).start()
    reply.write(_HEADER.pack(b"R", 0))
    while True:
        head = jobs.read(8)
        if len(head) < 8:
            return  # the app closed the pipe: stop
        job = pickle.loads(jobs.read(struct.unpack(">Q", head)[0]))
        kind, payload = _answer(job)
        reply.write(_HEADER.pack(kind, len(payload)) + payload)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m explorer.embed.decode_pool --worker BUDGET_BYTES (started by the app)")
