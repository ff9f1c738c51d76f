"""`index --engine ray`: the same index as the local engine (embeddings, failures, search results) from
a Ray Data pipeline on a local Ray instance, and a run killed part-way resumes with only the rest."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from explorer.index.build import build_index
from explorer.index.image_index import open_index
from explorer.index.store import Store
from tests.shapes import CLASSES, caption
from tests.test_index import add_bad_files, make_folder

ROOT = Path(__file__).resolve().parents[1]
SHAPES = f"local-dir:{ROOT / 'tests' / 'assets' / 'shapes_clip'}"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory) -> tuple[Path, list[str], set[str]]:
    folder = tmp_path_factory.mktemp("ray") / "photos"
    good = make_folder(folder, n_per_class=2)
    return folder, good, add_bad_files(folder)


@pytest.fixture(scope="module")
def local_index(shapes_folder, shapes_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray") / "local"
    build_index(shapes_model, shapes_folder[0], path, workers=0, batch_size=8)
    return path


def index_on_ray(folder: Path | str, index: Path, *extra: str, env: dict | None = None) -> dict:
    """`python -m explorer index --engine ray --json` -> its JSON report."""
    command = [
        sys.executable, "-m", "explorer", "index",
        str(folder), "--index",
        str(index), "--engine", "ray", "--batch-size", "8", "--model", SHAPES, "--device", "cpu", "--json",
        *extra
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=ROOT, env=env or ENV,
                          start_new_session=True)
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: some files failed, as they should
    return json.loads(done.stdout)


def assert_same_index(ours: Path, local: Path, paths: list[str], model) -> None:
    a, b = open_index(ours), open_index(local)
    cosines = [float(a.embedding_of(rel) @ b.embedding_of(rel)) for rel in paths]
    assert min(cosines) > 0.9999, min(cosines)
    texts = model.encode_texts([caption(*c) for c in CLASSES[:6]])
    images = np.stack([b.embedding_of(rel) for rel in paths[::7]])
    for queries in (texts, images):
        assert [[hit.path for hit in hits] for hits in a.search(queries, k=10)] == \
            [[hit.path for hit in hits] for hits in b.search(queries, k=10)]


def test_ray_engine_builds_the_same_index_as_the_local_engine(shapes_folder, local_index, shapes_model,
                                                              tmp_path):
    folder, good, bad = shapes_folder
    report = index_on_ray(folder, tmp_path / "ray")
    assert (report["added"], report["total"]) == (len(good), len(good))
    placed = [note for note in report["notes"] if note.startswith("on Ray: ")]  # where the model ran
    assert len(placed) == 1 and "model actor(s) with" in placed[0] and placed[0].endswith("on cpu")
    local_failures = {f.path: f.reason for f in open_index(local_index).failures()}
    assert {f["path"]: f["error"]
            for f in report["failures"]} == local_failures and set(local_failures) == bad
    assert_same_index(tmp_path / "ray", local_index, good, shapes_model)
    again = index_on_ray(folder, tmp_path / "ray")  # nothing changed: only the failed files are tried again
    assert (again["added"], again["unchanged"], again["todo"]) == (0, len(good), len(bad))


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from explorer.index.build import build_index
    from explorer.embed.model import load_model

    def die_after_some(done, total):
        if done >= int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind: as a crash or `kill -9`

    model = load_model(sys.argv[4], device="cpu")
    build_index(model, sys.argv[1], sys.argv[2], batch_size=4, engine="ray", progress=die_after_some)
""")


def test_a_killed_ray_run_resumes_with_only_the_rest(shapes_folder, local_index, shapes_model, tmp_path):
    folder, good, bad = shapes_folder
    index = tmp_path / "ray"
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN,
         str(folder), str(index), "12", SHAPES], cwd=ROOT, env=ENV, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = run.communicate(timeout=240)
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)  # the local Ray instance it started, if anything is left
        except ProcessLookupError:
            pass
    assert run.returncode == -signal.SIGKILL, err.decode()[-3000:]
    with closing(Store(index)) as store:
        states = store.states()
    kept = {rel for rel, state in states.items() if state.error is None}
    assert 12 <= len(kept) < len(good)  # committed batches survived the kill; the run was cut short
    report = index_on_ray(folder, index)
    assert report["unchanged"] == len(kept) and report["added"] == len(good) - len(kept)
    assert report["total"] == len(good) and {f["path"] for f in report["failures"]} == bad
    assert_same_index(index, local_index, good, shapes_model)


def test_ray_flags_need_the_ray_engine_and_are_checked_before_the_model_loads(tmp_path):
    command = [sys.executable, "-m", "explorer", "index", str(tmp_path), "--index", str(tmp_path / "i"),
               "--ray-actors", "2", "--model", "no-such-model"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV)
    assert done.returncode == 2 and "--ray-actors needs --engine ray" in done.stderr


def test_without_ray_installed_the_message_says_what_to_install(monkeypatch):
    from explorer.index import build_ray as index_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(index_ray.RayUnavailableError, match="requirements-ray.txt"):
        index_ray.import_ray()


def test_a_folder_given_as_a_uri_is_listed_and_read_through_pyarrow(shapes_folder, local_index, shapes_model,
                                                                     tmp_path):
    folder, good, bad = shapes_folder
    uri = f"file://{folder}/"  # pyarrow's LocalFileSystem: the code path s3://, gs://... take
    report = index_on_ray(uri, tmp_path / "ray")
    assert (report["added"], {f["path"] for f in report["failures"]}) == (len(good), bad)
    assert_same_index(tmp_path / "ray", local_index, good, shapes_model)
    index = open_index(tmp_path / "ray")
    assert str(index.root) == f"file://{folder}"
    hit = index.search(shapes_model.encode_texts(["a red circle"]), k=1)[0][0]
    assert hit.absolute == f"file://{folder}/{hit.path}"


def test_a_uri_folder_needs_the_ray_engine_and_lists_like_a_local_one(shapes_folder, shapes_model, tmp_path):
    from explorer.inputs import remote

    folder, good, bad = shapes_folder
    with pytest.raises(ValueError, match="--engine ray"):
        build_index(shapes_model, f"file://{folder}", tmp_path / "i")
    (folder / ".hidden").mkdir(exist_ok=True)
    (folder / ".hidden" / "x.png").write_bytes(b"never listed")
    try:
        listed = [rel for rel, size, mtime in remote.list_files(f"file://{folder}")]
    finally:
        (folder / ".hidden" / "x.png").unlink()
        (folder / ".hidden").rmdir()
    assert listed == sorted(good + sorted(bad))  # no notes.txt, nothing hidden
    with pytest.raises(ValueError, match="folder not found"):
        remote.list_files(f"file://{tmp_path}/nowhere")


class FakeCluster:
    """What _placement asks of Ray: the cluster's resources and its nodes."""

    def __init__(self, nodes: int, cpus_per_node: int, gpus: int = 0):
        self.nodes_, self.cpus, self.gpus = nodes, cpus_per_node, gpus

    def cluster_resources(self) -> dict:
        return {"CPU": float(self.nodes_ * self.cpus), **({"GPU": float(self.gpus)} if self.gpus else {})}

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": {"CPU": float(self.cpus)}} for _ in range(self.nodes_)]


@pytest.mark.parametrize(
    "cluster, options, expected",
    [
        (FakeCluster(1, 2), {},
         (1, 1, 0, "cpu")),  # this machine: the model on one CPU, decoding on the other
        (FakeCluster(4, 32), {}, (4, 31, 0, "cpu")),  # one actor per node, all CPUs but one
        (FakeCluster(2, 16, gpus=8), {}, (8, 1, 1, "cuda")),  # one actor per GPU
        (FakeCluster(4, 32), {"actors": 8, "actor_cpus": 12}, (8, 12, 0, "cpu")),
    ])
def test_model_actors_are_placed_by_the_clusters_resources(cluster, options, expected):
    from explorer.index.build_ray import RayOptions, _placement

    assert _placement(cluster, RayOptions(**options)) == expected


def test_actors_that_would_leave_no_cpu_for_decoding_are_refused_not_left_hanging():
    from explorer.index.build_ray import RayOptions, RayRunError, _placement

    with pytest.raises(RayRunError, match="none for decoding"):
        _placement(FakeCluster(1, 2), RayOptions(actor_cpus=2))


def test_a_run_joins_an_existing_cluster_at_its_address(shapes_folder, local_index, shapes_model, tmp_path):
    import socket

    folder, good, bad = shapes_folder
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray = [str(Path(sys.executable).parent / "ray")]
    started = subprocess.run(ray + ["start", "--head", "--port", str(port), "--num-cpus", "2",
                                    "--include-dashboard=false", "--disable-usage-stats"],
                             capture_output=True, text=True, timeout=120, env=ENV)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        # `ray start` turns token authentication on; a driver given an address must ask for it
        report = index_on_ray(folder, tmp_path / "ray", "--ray-address", f"127.0.0.1:{port}",
                              env={**ENV, "RAY_AUTH_MODE": "token"})
    finally:
        subprocess.run(ray + ["stop", "--force"], capture_output=True, timeout=120, env=ENV)
    assert report["added"] == len(good) and {f["path"] for f in report["failures"]} == bad
    assert_same_index(tmp_path / "ray", local_index, good, shapes_model)


def test_an_address_with_no_cluster_behind_it_is_a_clear_error(tmp_path):
    from explorer.index import build_ray as index_ray

    with pytest.raises(index_ray.RayUnavailableError, match="Ray cluster at 127.0.0.1:1: nothing answers"):
        index_ray.connect("127.0.0.1:1")  # in seconds: Ray itself would retry for minutes


def test_a_worker_whose_model_differs_stops_the_run_with_one_clear_line(shapes_folder, shapes_model, tmp_path,
                                                                        monkeypatch):
    import dataclasses

    from explorer.index import build_ray as index_ray

    real = index_ray.ModelSpec.of  # as if a node's file at the same path held other weights
    monkeypatch.setattr(
        index_ray.ModelSpec, "of",
        classmethod(lambda cls, model: dataclasses.replace(real(model), identity=
                                                           {**real(model).identity, "embed_dim": 7})))
    with pytest.raises(index_ray.RayRunError) as caught:
        build_index(shapes_model, shapes_folder[0], tmp_path / "ray", batch_size=8, engine="ray")
    message = str(caught.value)
    assert message.startswith("the Ray run stopped: RuntimeError: a Ray worker loaded")
    assert "every node must have the same weights" in message and "Traceback" not in message
    assert "\n" not in message
