"""Compare models, attacked as a stranger would (raw HTTP, two sessions): the demo offers three local
models (the shapes model it started with, its noisy variant and its sigmoid variant) and lets one
comparison run two of them (EXPLORER_MAX_COMPARE_MODELS=2 here).

- A model that is not offered (a real model folder on the server, a made-up name) is refused with a
  clear message and nothing is loaded: its files are never read, no index is written.
- More models than the setting allows are refused by name before any of them loads.
- The labels box is bounded like every text box; a server path typed where the page holds no folder box
  (the folder input is session state hosted) is not read; another session's index is refused.
- Session B's Cancel does not stop session A's comparison, and a comparison is a model job: one session
  may have one running or waiting.

What is observed is what a visitor and an operator can see: answers, the server's files (their access
times tell whether a model's folder was read), its log.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.hostile.attack import Answer, Api, shape_png, zipped
from tests.shapes import CLASSES, caption

SINGLE = "Single: a photo of a {}."
SHAPES = "local-dir:shapes_clip"   # the start-up model, as the page names it
MAX_MODELS = 2
LONG_AGO = 1_000_000_000  # an access time in 2001: a file read since has a later one (relatime)
SERVER_ENV = {"EXPLORER_MAX_COMPARE_MODELS": str(MAX_MODELS)}
SERVER_MODELS = ("noisy_model_dir", "sigmoid_model_dir")   # offered besides the start-up shapes model


@pytest.fixture(scope="module")
def noisy(noisy_model_dir) -> str:
    return f"local-dir:{noisy_model_dir.name}"   # how the page names an offered local model: its folder


def labelled_zip(classes: int = 8, per_class: int = 4, seed: int = 0) -> bytes:
    """Class folders of shapes (a_red_circle/0.png, ...): labelled images."""
    return zipped({f"{caption(*c).replace(' ', '_')}/{i}.png": shape_png(*c, size=48, seed=seed * 1000 + i)
                   for c in CLASSES[:classes] for i in range(per_class)})


def compare(api: Api, models: list[str], uploads, index=None, labels: str = "") -> Answer:
    """/compare as an API client calls it hosted: the folder input is session state (not sent)."""
    return api.call("compare", models, uploads, index or "(none)", labels, SINGLE)


def compared(answer: Answer) -> bool:
    return answer.event == "complete" and "cmp-summary-table" in answer.first


def indexes(server) -> set[Path]:
    return set(server.workdir.rglob("index.db"))


def aged(folder: Path) -> dict[Path, float]:
    """Set every file's access time under `folder` long ago; returns them, to compare with later."""
    out = {}
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (LONG_AGO, path.stat().st_mtime))
            out[path] = path.stat().st_atime
    return out


def read_since(times: dict[Path, float]) -> list[str]:
    return [p.name for p, t in times.items() if p.stat().st_atime != t]


@pytest.fixture(scope="module")
def upload(server):
    """Session A with a labelled zip uploaded (8 classes x 4 images)."""
    api = Api(server.url)
    return api, api.upload(("shapes.zip", labelled_zip()))


def test_a_comparison_of_offered_models_runs_and_reads_them(server, upload, noisy, noisy_model_dir):
    """The positive case, and the check that the access-time detector works on this disk."""
    api, files = upload
    times = aged(noisy_model_dir)
    answer = compare(api, [SHAPES, noisy], files)
    assert compared(answer), answer.text[:800]
    assert "2 models on 32 images" in answer.first, answer.first[:800]
    assert noisy_model_dir.name in answer.first, answer.first[:800]
    assert str(noisy_model_dir) not in answer.raw, "a server path reached the visitor"
    if not read_since(times):
        pytest.skip("this disk does not update access times (noatime): the not-loaded checks cannot see")


@pytest.mark.parametrize("named", ["a model folder on the server", "an offered model's path",
                                   "a hub model", "a made-up label"])
def test_a_model_not_offered_is_refused_and_nothing_loads(server, upload, noisy, noisy_model_dir, named):
    api, files = upload
    trap = server.workdir / "operator-files" / "trap_clip"
    if not trap.exists():
        shutil.copytree(noisy_model_dir, trap)
    other = {"a model folder on the server": f"local-dir:{trap}",
             "an offered model's path": f"local-dir:{noisy_model_dir}",
             "a hub model": "ViT-B-32@openai", "a made-up label": "local-dir:trap_clip"}[named]
    times = {**aged(trap), **aged(noisy_model_dir)}
    before = indexes(server)
    answer = compare(api, [SHAPES, other], files)
    message = answer.error_message or answer.first
    assert not compared(answer), answer.text[:500]
    # the handler's words, or (the hosted dropdown takes only its choices) the gate's when it joins the queue
    assert "not offered" in message or "inputs could not be read" in message, message[:500]
    assert read_since(times) == [], f"a model folder was read: {read_since(times)}"
    assert indexes(server) == before, "an index was written for a refused comparison"


def test_more_models_than_the_setting_are_refused_before_any_loads(server, upload, noisy, noisy_model_dir,
                                                                  sigmoid_model_dir):
    api, files = upload
    times = {**aged(noisy_model_dir), **aged(sigmoid_model_dir)}
    before = indexes(server)
    answer = compare(api, [noisy, f"local-dir:{sigmoid_model_dir.name}", SHAPES], files)
    assert not compared(answer), answer.text[:500]
    message = answer.error_message or answer.first
    assert "EXPLORER_MAX_COMPARE_MODELS" in message and f"limit of {MAX_MODELS}" in message, message[:500]
    assert read_since(times) == [] and indexes(server) == before


def test_the_labels_box_is_bounded(server, noisy):
    """Unlabelled images, so the typed labels are read: past max_texts (256 hosted) the answer says so
    by the setting's name; over max_text_kb (64 KiB) the gate refuses it before the handler runs."""
    api = Api(server.url)
    photos = api.upload(*[(f"{i}.png", shape_png(*CLASSES[i % 4], size=48, seed=i)) for i in range(4)])
    many = "\n".join(f"label {i}" for i in range(300))
    answer = compare(api, [SHAPES, noisy], photos, labels=many)
    assert "EXPLORER_MAX_TEXTS" in (answer.error_message or answer.first), answer.text[:500]
    big = "red circle, " + "x" * (70 << 10)
    answer = compare(api, [SHAPES, noisy], photos, labels=big)
    assert answer.event in ("error", "refused") and "EXPLORER_MAX_TEXT_KB" in answer.text, answer.text[:500]


def _join(api: Api, endpoint: str, data: list, state_value) -> Answer:
    """The endpoint as the page queues it, with `state_value` sent in place of its session states."""
    index, is_state = api.fn_index(endpoint)
    given = iter(data)
    sent = [state_value if state else next(given, None) for state in is_state]
    return api.join(index, sent)


def test_a_server_folder_is_never_read(server, noisy):
    """Hosted there is no folder box: a path sent in its place (the session state the page keeps) or as
    the index is not read, and the answer is the same whether the folder exists or not."""
    secret = server.workdir / "operator-files" / "photos"
    secret.mkdir(parents=True, exist_ok=True)
    for i, shape in enumerate(CLASSES[:4]):
        (secret / f"secret-photo-{i}.png").write_bytes(shape_png(*shape, seed=i))
    api = Api(server.url)
    before = indexes(server)
    answers = []
    for typed in (str(secret), str(secret) + "-gone", "/etc"):
        got = _join(api, "compare", [[SHAPES, noisy], None, "(none)", "", SINGLE], typed)
        answers.append(got.text.replace(typed, "<TYPED>"))
        assert "secret-photo" not in got.raw and not compared(got), got.raw[:500]
        got = compare(api, [SHAPES, noisy], None, index=typed)
        answers.append(got.text.replace(typed, "<TYPED>"))
        assert "secret-photo" not in got.raw and not compared(got), got.raw[:500]
    assert answers[0::2] == [answers[0]] * 3 and answers[1::2] == [answers[1]] * 3, answers
    assert indexes(server) == before


def _own_indexes(api: Api) -> list[str]:
    """The session's indexes, as the page's Refresh beside the index dropdown lists them."""
    update = api.private(["cmp-index"], ["(none)"])[0]
    return [value for _, value in update["choices"] if value != "(none)"]


def test_another_sessions_index_is_refused(server, upload, noisy):
    """B's index (made by B's comparison) given to A, even after A refreshed its own choices: refused in
    the same words as a folder that does not exist; A's own index is taken."""
    a, files = upload
    b = Api(server.url)
    assert compared(compare(b, [SHAPES, noisy], b.upload(("b.zip", labelled_zip(4, 3, seed=7))))), "B"
    theirs, mine = _own_indexes(b), _own_indexes(a)
    assert theirs and mine and not set(theirs) & set(mine), (theirs, mine)
    folders = (theirs[0], theirs[0] + "-gone")
    answers = [compare(a, [SHAPES, noisy], None, index=folder) for folder in folders]
    texts = [got.text.replace(folder, "<F>") for got, folder in zip(answers, folders)]
    assert not any(map(compared, answers)) and texts[0] == texts[1], texts
    assert compared(compare(a, [SHAPES, noisy], None, index=mine[0])), "A's own index"


def test_one_comparison_per_session_and_b_cannot_cancel_a(server, noisy):
    """A queues two comparisons at once: one runs, the other is refused by the session job limit. While
    A's runs, B presses Cancel: A's comparison finishes whole."""
    a, b = Api(server.url), Api(server.url)
    files = a.upload(("many.zip", labelled_zip(8, 12, seed=11)))
    data = [[SHAPES, noisy], files, "(none)", "", SINGLE]
    cancelled_at: list[float] = []
    over = threading.Event()

    def cancel_from_b():  # B presses Cancel again and again while A's comparisons run
        while not over.wait(0.1):
            b.call("cancel_compare")
            cancelled_at.append(time.monotonic())

    thread = threading.Thread(target=cancel_from_b)
    started = time.monotonic()
    thread.start()
    first, second = a.submit([("compare", data), ("compare", data)])
    ended = time.monotonic()
    over.set()
    thread.join(30)
    done = [x for x in (first, second) if compared(x)]
    assert len(done) == 1, (first.text[:300], second.text[:300])
    refused = second if done[0] is first else first
    assert "EXPLORER_SESSION_JOBS" in refused.text, refused.text[:500]
    assert "cmp-cancelled" not in json.dumps(done[0].data), "B's Cancel stopped A's comparison"
    if not cancelled_at or cancelled_at[0] > ended - 0.1:
        pytest.skip(f"A's comparison took {ended - started:.1f} s: over before B's Cancel reached it")
