"""Bytes: every byte a visitor sends is counted, within the session's quota (50 MB here) and the demo's
(120 MB here), and one visitor filling the demo's quota does not lock the next visitor out."""
from __future__ import annotations

import threading
import time

from tests.hostile.attack import (
    CACHE_GRACE_SECONDS,
    SWITCHES_OFF,
    UPLOAD,
    Answer,
    Api,
    MiB,
    build_index,
    classify,
    file_data,
    folder_bytes,
    noise_pngs_zip,
    shape_png,
    top_labels,
    zipped,
)

SESSION_QUOTA = 50 * MiB
# Two jobs of one session at once (the hosted default is one), so that two unpacks can race the quota.
SERVER_ENV = {"EXPLORER_SESSION_JOBS": "2"}


def test_a_raw_60_mb_upload_is_refused(server):
    api = Api(server.url)
    blob = noise_pngs_zip(60, entry_mb=6, seed=60)
    got = api.upload_raw(("big.zip", blob))
    print(f"\n60 MB upload: HTTP {got.status_code} {got.text[:200]}")
    assert got.status_code >= 400, f"a 60 MB upload was taken with a 50 MB session quota: {got.text[:300]}"
    left = [(p, p.stat().st_size) for p in server.workdir.rglob("*")
            if p.is_file() and p.stat().st_size > 50 * MiB]
    assert left == [], f"the refused upload was kept: {left}"


def test_four_concurrent_unpacks_hold_the_session_quota(server):
    """One session queues four jobs at once, each unpacking a ~28 MB zip (the index build, the gap tab,
    Teach by example and the prompt lab all unpack uploads; two zips, each sent to two of them, so that
    gradio's upload cache stays within the demo's quota): at no moment does the session's folder hold
    more than its 50 MB, however many of the four run together."""
    api = Api(server.url)
    two = [api.upload((f"part{i}.zip", noise_pngs_zip(28, seed=i))) for i in range(2)]
    zips = two + two
    jobs = [("build_index", [UPLOAD, "", zips[0], None]),
            ("gap", [
                "Upload images or a zip", zips[1], "", None, "Labels + templates", "red, blue",
                "Single: a photo of a {}.", None, "PCA (instant)"
            ]), ("fewshot", [zips[2], "Single: a photo of a {}.", ["prototype"], "All"]),
            ("evaluate_prompts", [{"headers": ["template"], "data": [["a photo of a {}."]],
                                   "metadata": None}, zips[3], "red, blue", "", None, "Templates",
                                  "Equal average", 1, False, 0.2, 0.5, "All prompts", 0.5, *SWITCHES_OFF])]
    biggest, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            for folder in server.session_folders():
                biggest[0] = max(biggest[0], folder_bytes(folder))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        answers = api.submit(jobs)
    finally:
        done.set()
        watcher.join()
    for folder in server.session_folders():
        biggest[0] = max(biggest[0], folder_bytes(folder))
    print(f"\n4 x 28 MB unpacks from one session at once: its folder peaked at {biggest[0] / MiB:.1f} MiB; " +
          "; ".join(f"{name} {a.event}: {(a.error_message or a.first)[:90]}"
                    for (name, _), a in zip(jobs, answers)))
    assert len(answers) == 4 and all(a.event != "none" for a in answers)
    assert biggest[
        0] <= SESSION_QUOTA, f"the session's folder reached {biggest[0] / MiB:.1f} MiB (quota 50 MiB)"


def test_a_shared_quota_filled_by_one_visitor_does_not_lock_out_the_next(server, picture):
    """The attacker opens sessions (a session is whatever hash the caller sends) and fills them, 40 MB
    and then less and less, until the demo's 120 MB are full to the last MB; then a stranger arrives."""
    filled = []
    for i, size in enumerate((40, 40, 30, 8, 4, 2, 1, 0.5, None)):
        if size is None:  # the last few KB
            size = (120 * MiB - sum(folder_bytes(f) for f in server.session_folders()) - 2048) / MiB
            if size <= 0:
                break
        attacker = Api(server.url)
        sent = attacker.upload_raw((f"fill{i}.zip", noise_pngs_zip(size, seed=100 + i)))
        if sent.status_code != 200:  # gradio's upload route refused it: the attacker fills no more that way
            filled.append(Answer("refused", sent.text, 0.0, sent.text))
            continue
        files = [file_data(path, f"fill{i}.zip") for path in sent.json()]
        filled.append(build_index(attacker, files))
    total = sum(folder_bytes(f) for f in server.session_folders())
    print(f"\nattacker's sessions hold {total / MiB:.0f} MiB, gradio's upload cache "
          f"{folder_bytes(server.gradio_tmp) / MiB:.0f} MiB; " + "; ".join(a.first[:100] for a in filled))
    time.sleep(CACHE_GRACE_SECONDS + 0.5)  # the attacker's raw uploads are past their grace: trimmable
    newcomer = Api(server.url)
    photos = newcomer.upload(
        ("p.zip",
         zipped(
             {"red.png": picture, **{f"more-{i}.png": shape_png("blue", "square", 96, i)
                                     for i in range(6)}})))
    built = build_index(newcomer, photos)
    print(f"newcomer's build: {built.first[:200]}")
    assert built.event == "complete" and "<b>7</b> image(s) searchable" in built.first, built.text[:500]
    answer = classify(newcomer, newcomer.upload(("red.png", picture)))
    assert answer.event == "complete" and top_labels(answer.first) == ["red circle"], answer.text[:500]
    everyone = sum(folder_bytes(f) for f in server.session_folders())
    assert everyone <= 120 * MiB, f"the sessions hold {everyone / MiB:.0f} MiB (shared quota 120 MiB)"
