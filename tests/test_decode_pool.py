"""Decoding that cannot hold others (issue 22): a bounded pool of decode worker processes, each
image within a time and a memory budget; a slow or fatal file fails alone."""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import pytest
from PIL import Image

from explorer.embed import decode_pool, images
from explorer.embed.decode_pool import DecodePool
from explorer.embed.images import Fit, ImageError, Limits, load_image
from explorer.inputs.settings import Settings
from tests.test_decode_cost import MODEL_FIT, encoded, lossless_webp, photo, rle8_bmp

ROOMY = Limits(10**9, 10**9, 10**12)
SLOW = rle8_bmp(6000, 6000)  # a few KB that PIL's pure-Python RLE decoder takes seconds over


@pytest.fixture
def pool():
    made = DecodePool(2, 1.5, 512 << 20)
    images.use_decoder(made.decode)
    yield made
    images.use_decoder(None)
    made.shutdown()


def warm(pool: DecodePool) -> None:
    """Start both workers (imports take a moment) so that timings below are decodes only."""
    threads = [
        threading.Thread(target=load_image, args=(encoded(photo(64, 48), "PNG"), ROOMY)) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pool.pids()) == 2


def test_the_pool_decodes_what_the_process_would(pool, tmp_path):
    data = encoded(photo(1500, 1000).convert("RGBA"), "PNG")
    (tmp_path / "a.png").write_bytes(data)
    for fit in (MODEL_FIT, Fit((256, 256), "cap"), None):
        pooled = load_image(tmp_path / "a.png", ROOMY, fit=fit)
        images.use_decoder(None)
        local = load_image(data, ROOMY, fit=fit)
        images.use_decoder(pool.decode)
        assert pooled.mode == "RGB" and pooled.size == local.size and pooled.tobytes() == local.tobytes()
    assert pool.pids() and os.getpid() not in pool.pids()


def test_a_path_given_as_a_str_subclass_reaches_the_worker_as_a_plain_path(pool, tmp_path):
    """gradio hands uploaded paths over as its NamedString (a str subclass): pickled as such, the worker
    would import gradio (and pandas) to read the job, which its memory limit refuses."""
    import sys
    import types

    module = types.ModuleType("only_in_the_app_process")
    named = type("NamedString", (str,), {"__module__": module.__name__})
    module.NamedString = named
    sys.modules[module.__name__] = module  # picklable here, not importable in the worker
    try:
        (tmp_path / "a.png").write_bytes(encoded(photo(64, 48), "PNG"))
        image = load_image(named(tmp_path / "a.png"), ROOMY, name=named("a.png"), fit=Fit((256, 256), "cap"))
        assert image.size == (64, 48)
    finally:
        del sys.modules[module.__name__]


def test_refusals_come_back_with_their_reasons(pool, tmp_path):
    with pytest.raises(ImageError, match="decoding 4000x4000 lossless WebP needs about"):
        load_image(lossless_webp(4000), Limits(max_decode_bytes=100 << 20), name="bomb.webp")
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "missing.png", ROOMY)
    assert info.value.reason == "file not found" and info.value.path == str(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"%!PS-Adobe-3.0 EPSF-3.0\n", ROOMY, name="x.png")


def test_a_slow_decode_fails_alone_while_another_completes(pool):
    warm(pool)
    slow: dict = {}

    def decode_slow():
        started = time.perf_counter()
        try:
            load_image(SLOW, ROOMY, name="slow.bmp")
        except ImageError as exc:
            slow["reason"] = exc.reason
        slow["seconds"] = time.perf_counter() - started

    thread = threading.Thread(target=decode_slow)
    thread.start()
    time.sleep(0.3)
    started = time.perf_counter()
    image = load_image(encoded(photo(), "JPEG"), ROOMY, fit=MODEL_FIT)
    assert time.perf_counter() - started < 2 and image.mode == "RGB"
    thread.join()
    assert slow[
        "reason"] == "took more than 1.5 s to decode (set with --decode-seconds or EXPLORER_DECODE_SECONDS)"
    assert slow["seconds"] < 1.5 + 2
    assert load_image(encoded(photo(), "PNG"), ROOMY).size == (1024, 768)  # a new worker took its place


def test_a_worker_killed_mid_job_fails_only_its_image_and_is_replaced(pool):
    warm(pool)
    before = set(pool.pids())
    failure: dict = {}

    def decode_slow():
        try:
            load_image(SLOW, ROOMY, name="slow.bmp")
        except ImageError as exc:
            failure["reason"] = exc.reason

    thread = threading.Thread(target=decode_slow)
    thread.start()
    time.sleep(0.5)
    busy = [pid for pid in before if _state(pid) == "R"] or sorted(before)
    os.kill(busy[0], signal.SIGKILL)
    thread.join()
    assert failure[
        "reason"] == "decoding failed: the decode worker ended (it was ended by SIGKILL (out of memory?))"
    assert load_image(encoded(photo(), "PNG"), ROOMY).size == (1024, 768)
    assert busy[0] not in pool.pids()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fp:
            return fp.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def test_the_memory_budget_holds_even_when_the_estimate_is_waved_through():
    small = DecodePool(1, None, 48 << 20)
    try:
        big = encoded(photo(4000, 3000).convert("RGBA"), "PNG")  # ~110 MiB to decode
        with pytest.raises(ImageError, match="out of memory while decoding"):
            small.decode(big, ROOMY, None, "big.png")  # ROOMY: the header check lets it through
        assert small.decode(encoded(photo(), "PNG"), ROOMY, MODEL_FIT, "ok.png").mode == "RGB"
    finally:
        small.shutdown()


def test_many_threads_share_a_bounded_pool(pool):
    data = encoded(photo(), "JPEG")
    results, errors = [], []

    def decode():
        try:
            results.append(load_image(data, ROOMY, fit=MODEL_FIT).size)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=decode) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 8 and len(pool.pids()) <= 2


def test_configure_installs_the_pool_only_with_workers():
    settings = replace(Settings(), decode_workers=1, decode_seconds=5.0, max_decode_mb=64.0)
    try:
        made = decode_pool.configure(settings)
        assert made is not None and images.decoder_in_use() == made.decode and made.seconds == 5.0
        assert load_image(encoded(photo(), "PNG"), settings.limits, fit=MODEL_FIT).mode == "RGB"
        assert len(made.pids()) == 1
        pid = os.fork()
        if pid == 0:  # a forked child (a DataLoader worker) decodes in-process
            os._exit(0 if images.decoder_in_use() is None else 1)
        assert os.waitpid(pid, 0)[1] == 0
        assert decode_pool.configure(Settings()) is None and images.decoder_in_use() is None
        assert made.pids() == []  # the old pool was shut down
    finally:
        decode_pool.shutdown()
    assert images.decoder_in_use() is None


def test_a_malformed_reply_is_refused_not_trusted():
    with pytest.raises(ImageError, match="malformed reply"):
        decode_pool._image_of(b"O", b"\0\0\0\x10\0\0\0\x10" + b"x" * 5, ROOMY, "a.png")
    with pytest.raises(ImageError, match="malformed reply"):
        decode_pool._image_of(b"P", b"", ROOMY, "a.png")
    assert decode_pool._image_of(b"O", b"\0\0\0\x01\0\0\0\x02" + b"abcdef", ROOMY, "a.png").size == (1, 2)
    assert isinstance(Image.new("RGB", (1, 1)), Image.Image)


def test_a_webp_bomb_is_refused_from_its_header_before_pillow_opens_it(tmp_path):
    """Pillow's WebP opener allocates libwebp's canvases at once: in a worker whose address space is
    capped, a bomb used to fail inside Image.open as "could not create decoder object". Its canvas is
    read from the RIFF header first, so the refusal names the limit and the setting, in the pool too."""
    from explorer.embed.images import webp_size

    for kind in ({"lossless": True}, {"quality": 40}, {"lossless": True, "save_all": True,
                                                          "append_images": [Image.new("RGB", (97, 41))]}):
        assert webp_size(encoded(Image.new("RGB", (97, 41), (9, 9, 9)), "WEBP", **kind)[:30]) == (97, 41)
    hosted = Limits(10 << 20, 40_000_000, 160 << 20)
    big, costly = lossless_webp(7000), lossless_webp(5000)  # 49 M pixels; 25 M pixels, canvases > 160 MiB
    made = DecodePool(1, 10, (160 << 20) + decode_pool.MEMORY_SLACK)
    images.use_decoder(made.decode)
    try:
        for data, refusal in ((big,
                               r"49,000,000 pixels exceeds the limit of 40,000,000 pixels .*--max-pixels"),
                              (costly,
                               r"decoding 5000x5000 lossless WebP needs about .* MiB.*--max-decode-mb")):
            (tmp_path / "bomb.webp").write_bytes(data)
            with pytest.raises(ImageError, match=refusal):
                load_image(tmp_path / "bomb.webp", hosted, fit=MODEL_FIT)
            with pytest.raises(ImageError, match=refusal):
                load_image(data, hosted, fit=MODEL_FIT)
    finally:
        images.use_decoder(None)
        made.shutdown()
