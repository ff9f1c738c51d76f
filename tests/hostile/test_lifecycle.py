"""The demo's life: stopped by SIGTERM (as a container runtime stops it), restarted after a kill, its
model reloaded while visitors classify, and one visitor queueing many jobs at once."""
from __future__ import annotations

import threading
import time

from tests.hostile.attack import (
    LABELS,
    SWITCHES_OFF,
    Api,
    Server,
    classify,
    client,
    shape_png,
    top_labels,
    zipped,
)
from tests.hostile.conftest import start_server

SEVEN = "7 templates (OpenAI subset)"


def _leave_files(server: Server, picture: bytes, sessions: int = 2) -> None:
    """Two visitors each upload photos and build an index: their workspaces hold files."""
    for i in range(sessions):
        api = Api(server.url)
        built = api.call("build_index", "Upload images, a folder or a zip", "",
                         api.upload((f"v{i}.zip", zipped({f"p{k}.png": picture for k in range(3)}))), None)
        assert built.event == "complete", built.text[:300]
        assert top_labels(classify(api, api.upload(("p.png", picture))).first) == ["red circle"]
        api.close()


def test_sigterm_leaves_no_visitor_file(tmp_path_factory, picture):
    server = start_server(tmp_path_factory, "hostile-sigterm")
    try:
        _leave_files(server, picture)
        assert server.visitor_files(), "the visitors' uploads were not found under the sessions folder"
        code = server.terminate(30)
        left = server.visitor_files()
        print(f"\nSIGTERM: exit code {code}; visitor files left: {len(left)}")
        assert code is not None, "the server did not stop within 30 s of SIGTERM"
        assert left == [], f"visitor files left after SIGTERM: {left[:5]}"
    finally:
        server.stop()


def test_folders_of_a_killed_run_are_swept_at_start(tmp_path_factory, picture):
    """SIGKILL leaves no chance to clean up; the next start (same temporary folder) sweeps them."""
    workdir = tmp_path_factory.mktemp("hostile-killed")
    first = Server(workdir)
    try:
        _leave_files(first, picture, sessions=1)
        left = first.visitor_files()
        assert left
        first.proc.kill()
        first.proc.wait(10)
    finally:
        first.stop()
    second = Server(workdir)
    try:
        time.sleep(1)
        still = [p for p in left if p.exists()]
        assert still == [], f"a killed run's visitor files survived the next start: {still[:5]}"
    finally:
        second.stop()


def test_reloading_the_offered_model_under_20_concurrent_classifies_fails_none(server, picture):
    info = client(server.url, server.workdir / "dl").view_api(return_format="dict", print_info=False)
    params = info["named_endpoints"]["/load_model"]["parameters"]
    offered = params[0].get("parameter_default")
    visitors = [Api(server.url) for _ in range(20)]
    uploads = [v.upload(("p.png", picture)) for v in visitors]
    failures, calls, stop = [], [0], threading.Event()

    def visit(i):
        while not stop.is_set():
            answer = classify(visitors[i], uploads[i])
            calls[0] += 1
            if answer.event != "complete" or top_labels(answer.first) != ["red circle"]:
                failures.append((answer.event, answer.text[:200]))

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    reloads = []
    try:
        time.sleep(1)
        admin = Api(server.url)
        for _ in range(5):
            reloads.append(admin.call("load_model", *([offered] + [""] * (len(params) - 1))))
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    print(f"\nmodel reloaded {len(reloads)} times during {calls[0]} classify calls from 20 sessions: "
          f"{len(failures)} failed; reload said: {reloads[0].first[:150]}")
    assert all(r.event == "complete" for r in reloads), [r.text[:200] for r in reloads]
    assert calls[0] >= 20
    assert failures == [], failures[:5]


def test_one_visitor_queueing_8_jobs_does_not_hold_another(server, picture):
    """The same ordinary job (8 photos, 3 labels, 7 templates) for both: the attacker queues 8 at once
    from one session; the other visitor's one call waits < 3x its time alone, not behind all 8."""
    job_files = [("a.png", picture)] + [(f"{i}.png", shape_png("blue", "square", 64, i)) for i in range(7)]
    other = Api(server.url)
    mine = other.upload(*job_files)
    alone = sorted(other.call("classify", mine, LABELS, SEVEN, "", 3, None, *SWITCHES_OFF).seconds
                   for _ in range(5))[2]
    attacker = Api(server.url)
    theirs = attacker.upload(*job_files)
    times, attack_answers = [], []
    for _ in range(3):  # three floods; the median of the other visitor's waits
        flood = threading.Thread(target=lambda: attack_answers.extend(
            attacker.submit_many("classify", [[theirs, LABELS, SEVEN, "", 3, None, *SWITCHES_OFF]] * 8)))
        flood.start()
        time.sleep(0.15)
        answer = other.call("classify", mine, LABELS, SEVEN, "", 3, None, *SWITCHES_OFF)
        flood.join(300)
        assert answer.event == "complete" and top_labels(answer.first), answer.text[:300]
        times.append(answer.seconds)
    waited = sorted(times)[1]
    done = [a for a in attack_answers if a.event == "complete" and top_labels(a.first)]
    others = [a for a in attack_answers if a not in done]
    print(
        f"\n8 queued jobs (x3): the other visitor's call took {waited:.2f} s (median of {times}; "
        f"alone {alone:.2f} s); "
        f"the attacker's jobs: {len(done)} done, {len(others)} not" +
        (f", e.g. {others[0].event}: {(others[0].error_message or others[0].first)[:150]}" if others else ""
         ) + "; "
        f"slowest {max(a.seconds for a in attack_answers):.2f} s")
    assert all(a.event == "complete" or a.error_message
               for a in attack_answers), "a job refused without a message"
    # As in the neighbour test (test_texts): "alone" has a 0.2 s floor, since a 0.07 s call is mostly HTTP
    # and queue overhead that a noisy 2-CPU machine varies by more than its length.
    assert waited < 3 * max(alone, 0.2), f"{waited:.2f} s, alone {alone:.2f} s"


def test_a_scripts_sequential_calls_are_never_refused(server, picture):
    """A gradio_client-style loop: one call after another from one session, none overlapping; with no
    job running or waiting, no call may be refused as 'too many jobs'."""
    api = Api(server.url, pace=0)
    files = api.upload(("p.png", picture))
    answers = [classify(api, files) for _ in range(10)]
    refused = [a.error_message or a.text[:200] for a in answers if a.event != "complete"]
    print(f"\n10 sequential calls, {sum(a.seconds for a in answers):.2f} s in all: {len(refused)} refused")
    assert refused == [], refused[:3]
