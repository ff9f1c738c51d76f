"""The attacker's toolkit: start `app.py --hosted` as an operator would, talk to it as a stranger would
(raw HTTP on gradio's routes, or gradio_client), make the hostile files, and watch the server's memory
and files from outside (/proc and its temporary folders).

Nothing here imports the app: what the tests assert is what a visitor and an operator can observe.
"""
from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
# The app attacked: this checkout, or another copy of it (HOSTILE_APP_ROOT, e.g. `git archive` of a commit).
APP_ROOT = Path(os.environ.get("HOSTILE_APP_ROOT") or ROOT).resolve()
MODEL_DIR = APP_ROOT / "tests" / "assets" / "shapes_clip"
MODEL = f"local-dir:{MODEL_DIR}"
MiB = 2**20
SINGLE = "Single: a photo of a {}."
UPLOAD = "Upload images, a folder or a zip"
LABELS = "red circle, blue square, green triangle"
# The test-time switches of /classify and /evaluate_prompts (views, combine, tda), off: their last inputs.
SWITCHES_OFF = (0, "ZERO vote (the paper's)", False)
# What every hostile server runs with unless a test says otherwise: small quotas, so that filling them
# is quick; everything else is the hosted defaults an operator gets.
PACE = 0.3  # seconds between an ordinary visitor's calls (see Api.pace)
# Small quotas; a short grace before gradio's cached uploads may be trimmed when the shared quota is
# short (30 s by default), so the lock-out test need not wait long.
SMALL = {
    "EXPLORER_SESSION_QUOTA_MB": "50", "EXPLORER_HOSTED_QUOTA_MB": "120", "EXPLORER_CACHE_GRACE_SECONDS": "2"
}
CACHE_GRACE_SECONDS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the server ----------------------------------------------------------------------------------------

class Server:
    """`python app.py --hosted --model local-dir:<shapes model> --device cpu --port <free>` in a
    subprocess whose temporary files all live under `workdir` (TMPDIR, GRADIO_TEMP_DIR, the cache)."""

    def __init__(self, workdir: Path, **env_extra: str):
        self.workdir = Path(workdir)
        self.tmp, self.gradio_tmp = self.workdir / "tmp", self.workdir / "gradio"
        for folder in (self.tmp, self.gradio_tmp, self.workdir / "cache"):
            folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = self.workdir / f"app-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPLORER_", "GRADIO_"))}
        env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", TMPDIR=str(self.tmp),
                   GRADIO_TEMP_DIR=str(self.gradio_tmp), XDG_CACHE_HOME=str(self.workdir / "cache"),
                   EXPLORER_INDEX_DIR=str(self.workdir / "indexes"), PYTHONUNBUFFERED="1", **SMALL)
        env.update(env_extra)
        self.env = env
        self.command = [
            sys.executable,
            str(APP_ROOT / "app.py"), "--hosted", "--model", MODEL, "--device", "cpu", "--port",
            str(self.port)
        ]
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen(self.command, cwd=APP_ROOT, env=env, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited early ({self.proc.returncode}):\n{self.log_text()}")
            try:
                urllib.request.urlopen(self.url + "config", timeout=3)
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"app.py did not start in time:\n{self.log_text()}")

    def log_text(self, tail: int = 6000) -> str:
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 30) -> int | None:
        """SIGTERM, as a container runtime stops it; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return None
        return self.proc.returncode

    def stop(self) -> None:
        children = tree_pids(self.pid)[1:] if self.alive() else []
        self.terminate(15)
        for pid in children:  # decode workers that outlived their parent
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self._out.close()

    # What the operator can see on disk.
    def sessions_dirs(self) -> list[Path]:
        """The folders that hold visitors' workspaces (clip-explorer-sessions-*, wherever under workdir)."""
        found = {p for p in self.workdir.rglob("clip-explorer-sessions*") if p.is_dir()}
        return sorted(found)

    def session_folders(self) -> list[Path]:
        """One folder per visitor's workspace."""
        return [child for base in self.sessions_dirs() for child in base.iterdir() if child.is_dir()]

    def visitor_files(self) -> list[Path]:
        return [p for base in self.sessions_dirs() for p in base.rglob("*") if p.is_file() or p.is_symlink()]


# --- memory, from /proc --------------------------------------------------------------------------------

def _status(pid: int) -> dict[str, int]:
    """/proc/<pid>/status's Vm* fields in KiB ({} when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("Vm") and line.endswith("kB"):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants (the server and any decode workers), parents first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(sorted(children.get(p, [])))
    return out


def rss_mb(pid: int) -> float:
    """The current resident memory of the server's whole process tree, in MiB."""
    return sum(_status(p).get("VmRSS", 0) for p in tree_pids(pid)) / 1024


def peak_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of the server's whole process tree, in MiB: the server's own plus
    each living child's (a decoding worker's peak counts where it happened)."""
    return sum(_status(p).get("VmHWM", 0) for p in tree_pids(pid)) / 1024


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS for `pid` (writing 5 to clear_refs, Linux >= 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def private_kb(pid: int) -> int:
    """Memory only this process holds (Private_Clean + Private_Dirty of smaps_rollup), in KiB: for a
    forked child, what it added beyond the pages it shares with its parent."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return sum(
        int(line.split()[1]) for line in text.splitlines()
        if line.startswith(("Private_Clean:", "Private_Dirty:")))


class PeakWatch:
    """How much the server's process tree grows while the `with` body runs, in MiB.

    Each process's peak is reset at the start (clear_refs), then sampled every few milliseconds, so a
    worker that peaks and is then replaced still counts. Growth = the sum over the processes there at
    the start of (highest VmHWM seen - RSS at the start), plus, for each process started during the
    body (a forked decoding worker shares its parent's pages, which RSS counts again), the highest
    private memory sampled."""

    def __init__(self, pid: int, every: float = 0.02):
        self.pid, self.every = pid, every
        self.base: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.private: dict[int, int] = {}
        self._stop = threading.Event()

    def __enter__(self) -> PeakWatch:
        for p in tree_pids(self.pid):
            reset_peak(p)
            self.base[p] = _status(p).get("VmRSS", 0)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _look(self) -> None:
        for p in tree_pids(self.pid):
            if p in self.base:
                hwm = _status(p).get("VmHWM")
                if hwm is not None:
                    self.peak[p] = max(self.peak.get(p, 0), hwm)
            else:
                self.private[p] = max(self.private.get(p, 0), private_kb(p))

    def _sample(self) -> None:
        while True:
            self._look()
            if self._stop.wait(self.every):
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._look()

    @property
    def growth_mb(self) -> float:
        old = sum(max(0, hwm - self.base[p]) for p, hwm in self.peak.items())
        return (old + sum(self.private.values())) / 1024

    @property
    def new_processes(self) -> int:
        return len(self.private)


# --- talking to it -------------------------------------------------------------------------------------

@dataclass
class Answer:
    event: str            # 'complete', 'error', or 'refused' (the HTTP call itself was refused)
    data: object
    seconds: float
    raw: str = ""

    @property
    def text(self) -> str:
        return json.dumps(self.data) if not isinstance(self.data, str) else self.data

    @property
    def error_message(self) -> str:
        """The message of an error event ('' for gradio's bare {"error": null}, an uncaught exception)."""
        if self.event == "complete":
            return ""
        data = self.data
        if isinstance(data, dict):
            data = data.get("error") or data.get("message") or ""
        return "" if data is None else (data if isinstance(data, str) else json.dumps(data))

    @property
    def first(self) -> str:
        """The first output (the summary HTML of most endpoints) as text."""
        if isinstance(self.data, list) and self.data:
            return self.data[0] if isinstance(self.data[0], str) else json.dumps(self.data[0])
        return self.text


class Api:
    """Raw calls to gradio's /gradio_api/upload and /gradio_api/call/<name> as one session of the
    attacker's choosing (the session hash is whatever the caller sends)."""

    def __init__(self, url: str, session: str | None = None, timeout: float = 180, pace: float | None = None):
        self.url, self.session = url, session or uuid.uuid4().hex[:11]
        self.http = httpx.Client(timeout=timeout)
        # Seconds between the starts of this session's calls: a person clicks no faster than this. 0 for a
        # script's loop (test_lifecycle checks that such a loop is never refused either).
        self.pace, self._last = PACE if pace is None else pace, 0.0

    def upload_raw(self, *files: tuple[str, bytes]) -> httpx.Response:
        return self.http.post(self.url + "gradio_api/upload", files=[("files", f) for f in files])

    def upload(self, *paths: Path | tuple[str, bytes]) -> list[dict]:
        files = [(p.name, p.read_bytes()) if isinstance(p, Path) else p for p in paths]
        got = self.upload_raw(*files)
        got.raise_for_status()
        return [file_data(path, name) for path, (name, _) in zip(got.json(), files)]

    def call(self, api: str, *data) -> Answer:
        if self.pace:
            time.sleep(max(0.0, self._last + self.pace - time.monotonic()))
            self._last = time.monotonic()
        started = time.monotonic()
        sent = self.http.post(self.url + f"gradio_api/call/{api.lstrip('/')}",
                              json={"data": list(data), "session_hash": self.session})
        if sent.status_code != 200:
            return Answer("refused", sent.text, time.monotonic() - started, sent.text)
        event_id = sent.json()["event_id"]
        event, payload, raw = None, None, []
        with self.http.stream("GET", self.url + f"gradio_api/call/{api.lstrip('/')}/{event_id}") as stream:
            for line in stream.iter_lines():
                raw.append(line)
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    text = line.split(":", 1)[1].strip()
                    try:
                        payload = json.loads(text) if text else None
                    except json.JSONDecodeError:
                        payload = text
        return Answer(event or "none", payload, time.monotonic() - started, "\n".join(raw))

    def fn_index(self, api: str) -> tuple[int, list[bool]]:
        """The index the page itself sends for the event named `api`, and which of its inputs are
        session state (the page sends null for those; the API's data leaves them out), from /config."""
        if not hasattr(self, "_fns"):
            config = self.http.get(self.url + "config").json()
            state = {c["id"] for c in config["components"] if c.get("type") == "state"}
            self._fns = {d.get("api_name"): (d["id"], [i in state for i in d["inputs"]])
                         for d in config["dependencies"] if d.get("api_name")}
        return self._fns[api.lstrip("/")]

    def submit_many(self, api: str, datas: list[list]) -> list[Answer]:
        """Several jobs of one endpoint from this one session at once (see `submit`)."""
        return self.submit([(api, data) for data in datas])

    def submit(self, jobs: list[tuple[str, list]]) -> list[Answer]:
        """Several jobs (endpoint, its API data) of this one session at once, the way the page queues
        them (/gradio_api/queue/join, then the session's one /queue/data stream, which carries every
        job's result by event id; the /call/ route cannot do this: concurrent calls of one session
        share a result stream)."""
        joined, answers = {}, {}
        order = []
        for i, (api, data) in enumerate(jobs):
            index, is_state = self.fn_index(api)
            given = iter(data)
            data = [None if state else next(given, None) for state in is_state]
            started = time.monotonic()
            got = self.http.post(self.url + "gradio_api/queue/join",
                                 json={"data": data, "fn_index": index, "session_hash": self.session,
                                       "event_data": None, "trigger_id": None})
            if got.status_code != 200:
                answers[f"refused-{i}"] = Answer("refused", got.text, time.monotonic() - started, got.text)
                order.append(f"refused-{i}")
                continue
            event_id = got.json()["event_id"]
            joined[event_id] = started
            order.append(event_id)
        if joined:
            with self.http.stream("GET",
                                  self.url + f"gradio_api/queue/data?session_hash={self.session}") as stream:
                for line in stream.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    msg = json.loads(line[5:])
                    kind, event_id = msg.get("msg"), msg.get("event_id")
                    if kind == "process_completed" and event_id in joined:
                        output = msg.get("output") or {}
                        ok = msg.get("success", False)
                        answers[event_id] = Answer("complete" if ok else "error",
                                                   output.get("data") if ok else output.get("error"),
                                                   time.monotonic() - joined[event_id], line)
                    elif kind in ("queue_full", "unexpected_error") and event_id in joined:
                        answers[event_id] = Answer("refused", msg, time.monotonic() - joined[event_id], line)
                    elif kind == "close_stream":
                        break
                    if all(e in answers for e in joined):
                        break
        return [answers.get(e, Answer("none", None, 0.0)) for e in order]

    def private(self, elem_ids: list[str], data: list) -> list | None:
        """The page's own (unlisted) event whose inputs and outputs are the components `elem_ids` (a
        Refresh beside a dropdown), sent as the page sends it; its output data (None if it failed)."""
        config = self.http.get(self.url + "config").json()
        by_id = {c.get("props", {}).get("elem_id"): c["id"] for c in config["components"]}
        ids = [by_id[e] for e in elem_ids]
        dep = next(d for d in config["dependencies"] if d["inputs"] == ids and d["outputs"] == ids)
        answer = self.join(dep["id"], data)
        return answer.data if answer.event == "complete" else None

    def join(self, fn_index: int, data: list) -> Answer:
        """Event `fn_index` as the page queues it (/gradio_api/queue/join with `data` as sent, then the
        session's /queue/data stream until it completes): "complete" with its output data, "error" with
        the error, or "refused" when the queue would not take it."""
        joined = self.http.post(self.url + "gradio_api/queue/join",
                                json={"data": data, "fn_index": fn_index, "session_hash": self.session,
                                      "event_data": None, "trigger_id": None})
        if joined.status_code != 200:
            return Answer("refused", joined.text, 0.0, joined.text)
        event_id = joined.json()["event_id"]
        stream_url = self.url + f"gradio_api/queue/data?session_hash={self.session}"
        with self.http.stream("GET", stream_url) as stream:
            for line in stream.iter_lines():
                msg = json.loads(line[5:]) if line.startswith("data:") else {}
                if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                    output = msg.get("output") or {}
                    ok = msg.get("success")
                    return Answer("complete" if ok else "error", output.get("data" if ok else "error"), 0.0,
                                  line)
        return Answer("none", None, 0.0)

    def close(self) -> None:
        self.http.close()


def file_data(path: str, name: str | None = None) -> dict:
    return {"path": path, "orig_name": name or Path(path).name, "meta": {"_type": "gradio.FileData"}}


def client(url: str, downloads: Path):
    """A gradio_client session (one Client, one session)."""
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=str(downloads))


def classify(api: Api, files: list[dict], labels: str = LABELS, classifier=None, k: int = 3) -> Answer:
    return api.call("classify", files, labels, SINGLE, "", k, classifier, *SWITCHES_OFF)


def build_index(api: Api, files: list[dict]) -> Answer:
    return api.call("build_index", UPLOAD, "", files, None)


def search(api: Api, text: str = "a red circle", image: dict | None = None) -> Answer:
    return api.call("search", text, image, 0.5, 4, -1.0)


def map_query(api: Api, image: dict | None, text: str = "") -> Answer:
    """The Map tab's map of the session's last index (PCA: no layout job), coloured by a query."""
    return api.call("map", None, "pca", "query", "", SINGLE, 0, None, 8, "kmeans", text, "", image)


def top_labels(summary: str) -> list[str]:
    """The winning label of each image in a classify summary."""
    return re.findall(r'class="zs-top">([^<]*)<', summary)


def classified_names(summary: str) -> list[str]:
    return re.findall(r'class="zs-name">([^<]*)<', summary)


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    started = time.monotonic()
    out = fn(*args, **kwargs)
    return out, time.monotonic() - started


def quick_classify_seconds(url: str, picture: bytes, runs: int = 3) -> float:
    """The median time of a quick classify of one small image, by a fresh ordinary session."""
    api = Api(url)
    uploaded = api.upload(("probe.png", picture))
    times = []
    for _ in range(runs):
        answer = classify(api, uploaded)
        assert answer.event == "complete" and top_labels(answer.first), answer.text[:500]
        times.append(answer.seconds)
    api.close()
    return sorted(times)[len(times) // 2]


# --- ordinary files ------------------------------------------------------------------------------------

def shape_png(color: str = "red", shape: str = "circle", size: int = 48, seed: int = 0) -> bytes:
    from tests.shapes import draw_shape

    out = io.BytesIO()
    draw_shape(color, shape, size=size, rng=seed).save(out, format="PNG")
    return out.getvalue()


def zipped(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return out.getvalue()


def noise_pngs_zip(total_mb: float, entry_mb: float = 4.0, seed: int = 0) -> bytes:
    """A stored zip of incompressible '.png' entries (random bytes) adding up to `total_mb`: it
    unpacks to as many bytes as it holds, and no entry is larger than an image may be."""
    rng = random.Random(seed)
    entries, left, i = {}, int(total_mb * MiB), 0
    while left > 0:
        n = min(left, int(entry_mb * MiB))
        entries[f"noise-{seed}-{i}.png"] = rng.randbytes(n)
        left, i = left - n, i + 1
    return zipped(entries, zipfile.ZIP_STORED)


# --- decode-cost bombs: small files, huge or slow to decode --------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def palette_png_bomb(side: int = 9459) -> bytes:
    """A 1-bit palette PNG of side x side pixels, all index 0 (~side^2/8 bytes of zeros, deflated):
    just under Pillow's MAX_IMAGE_PIXELS at 9459, so Pillow itself does not refuse it."""
    row = b"\x00" + bytes((side + 7) // 8)          # filter byte + the packed row
    deflate = zlib.compressobj(9)
    body = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 3, 0, 0, 0)
    plte = bytes((200, 30, 30, 30, 60, 220))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"PLTE", plte)
            + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b""))


def rle8_bmp_bomb(side: int = 9459) -> bytes:
    """An RLE8 BMP of side x side pixels whose every row is one pixel then end-of-line: 4 bytes a row
    (~38 KB at 9459), and Pillow's pure-Python RLE decoder pads each row a byte at a time."""
    rows = b"\x01\x01\x00\x00" * side + b"\x00\x01"   # (1 pixel of index 1, EOL) x side, end of bitmap
    palette = b"".join(
        bytes((b, g, r, 0)) for r, g, b in [(240, 240, 240), (200, 30, 30)] + [(0, 0, 0)] * 254)
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    header = b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset)
    return header + info + palette + rows


def lossless_webp_bomb(side: int = 7000, cache: Path | None = None) -> bytes:
    """A flat-colour lossless WebP of side x side pixels (~2 KB at 7000; 147 MB once decoded to RGB).
    Encoding it takes a few seconds, so it is kept in `cache` when given."""
    if cache is not None and cache.is_file():
        return cache.read_bytes()
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(out, format="WEBP", lossless=True, quality=0, method=0)
    data = out.getvalue()
    if cache is not None:
        cache.write_bytes(data)
    return data


@dataclass
class Bombs:
    """The bombs, each as (file name, bytes)."""
    webp: tuple[str, bytes]
    png: tuple[str, bytes]
    bmp: tuple[str, bytes]
    slow: tuple[str, bytes]    # within the hosted pixel limit (40M) and decode memory, but slow to decode

    def all(self) -> list[tuple[str, bytes]]:
        return [self.webp, self.png, self.bmp]


def make_bombs(folder: Path) -> Bombs:
    return Bombs(("bomb-webp.webp", lossless_webp_bomb(cache=folder / "bomb.webp")),
                 ("bomb-palette.png", palette_png_bomb()), ("bomb-rle8.bmp", rle8_bmp_bomb()),
                 ("bomb-slow-rle8.bmp", rle8_bmp_bomb(6300)))


# --- classifier files (the zip the Teach tab downloads: NAME.json + NAME.safetensors) ------------------

CLASSIFIER_FORMAT = "clip-explorer-classifier/1"


def classifier_zip(meta: dict, arrays: dict, name: str = "taught") -> bytes:
    """A classifier zip with the given metadata and arrays (numpy), exactly as the format stores them."""
    from safetensors.numpy import save

    return zipped({f"{name}.json": json.dumps(meta).encode(), f"{name}.safetensors": save(arrays)})


def json_bomb_zip(identity: dict | None = None, empty_lists: int = 20_000_000) -> bytes:
    """A classifier zip whose .json deflates from ~60 MB to ~60 KB: 'class_names' is 20 million empty
    lists (3 bytes of text each, ~60 bytes each once parsed by json.loads)."""
    head = json.dumps({"format": CLASSIFIER_FORMAT, "method": "zero-shot", "model": identity or {},
                       "logit_scale": 100.0, "params": {}, "prompts": {}})[:-1].encode()
    body = head + b', "class_names": [' + b"[]," * (empty_lists - 1) + b"[]]}"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("bomb.json", body)
        z.writestr("bomb.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return out.getvalue()


def deep_json_zip(depth: int = 200_000) -> bytes:
    """A classifier zip whose .json is nested `depth` deep (a parser's recursion, not bytes)."""
    body = b'{"format": "' + CLASSIFIER_FORMAT.encode(
    ) + b'", "class_names": ' + b"[" * depth + b"]" * depth + b"}"
    return zipped({"deep.json": body, "deep.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "})


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under `folder` (links not followed; files vanishing meanwhile skipped).
    The attacker's own count, not explorer.app.workspace's: a quota must not be checked with the counter it
    is enforced with (a slip there would hide itself)."""
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
