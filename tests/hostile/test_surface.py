"""What the demo shows a stranger, and the files a stranger may hand it as a taught classifier.

- /config, the page, the API listing and the model status line name no server path (the repository,
  the model's folder, the temporary folders), and the API lists only the documented named endpoints.
- A classifier zip (the Teach tab's download: NAME.json + NAME.safetensors) that is a JSON bomb,
  1,000 classes, or damaged (wrong dimensions, missing arrays) gets a clear answer, fast, in little memory.
"""
from __future__ import annotations

import io
import json
import re
import zipfile

import httpx
import numpy as np
import pytest

from tests.browser.test_api_client import ENDPOINTS
from tests.hostile.attack import (
    APP_ROOT,
    MODEL_DIR,
    SINGLE,
    Api,
    PeakWatch,
    classifier_zip,
    classify,
    client,
    deep_json_zip,
    json_bomb_zip,
    shape_png,
    top_labels,
    zipped,
)

MAX_GROWTH_MB = 400
MAX_SECONDS = 10


def server_paths(server) -> dict[str, list[str]]:
    return {"repository": [str(APP_ROOT)], "model folder": [str(MODEL_DIR)],
            "temporary folders": [str(server.workdir), str(server.tmp), str(server.gradio_tmp)]}


@pytest.fixture(scope="module")
def shown(server, tmp_path_factory) -> dict[str, str]:
    """What a stranger can read without sending anything: /config, the page, the API listing."""
    pages = {"/config": httpx.get(server.url + "config").text, "/": httpx.get(server.url).text,
             "/gradio_api/info": httpx.get(server.url + "gradio_api/info").text}
    listing = client(server.url, tmp_path_factory.mktemp("view")).view_api(return_format="dict",
                                                                           print_info=False)
    pages["view_api"] = json.dumps(listing)
    return pages


@pytest.mark.parametrize("kind", ["repository", "model folder", "temporary folders"])
def test_config_page_and_api_listing_show_no_server_path(server, shown, kind):
    found = [(where, path, _around(text, path)) for where, text in shown.items()
             for path in server_paths(server)[kind] if path in text or json.dumps(path)[1:-1] in text]
    assert found == [], f"server paths ({kind}) shown to visitors: {found[:4]}"


def _around(text: str, path: str) -> str:
    at = text.find(path)
    return text[max(0, at - 120): at + len(path) + 40] if at >= 0 else ""


def test_the_model_status_line_shows_no_server_path(server, tmp_path):
    """The model panel's answer (its status line) after reloading the offered model."""
    info = client(server.url, tmp_path).view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = info["/load_model"]["parameters"]
    offered = params[0].get("parameter_default")
    answer = Api(server.url).call("load_model", *([offered] + [""] * (len(params) - 1)))
    paths = [p for ps in server_paths(server).values() for p in ps if p in answer.text]
    assert answer.event == "complete" and paths == [], (answer.text[:500], paths)


def test_the_api_lists_only_the_named_endpoints(server, tmp_path):
    listed = client(server.url, tmp_path).view_api(return_format="dict", print_info=False)
    named, unnamed = set(listed["named_endpoints"]), listed.get("unnamed_endpoints") or {}
    generated = sorted(n for n in named if re.match(r"^/(lambda|handler|on_)", n) or re.search(r"_\d+$", n))
    assert generated == [], f"helpers listed in the API: {generated}"
    assert unnamed == {}
    assert named <= set(ENDPOINTS), f"not documented: {sorted(named - set(ENDPOINTS))}"
    assert {"/classify", "/search", "/build_index", "/evaluate_prompts"} <= named


# --- classifier files --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def taught(server) -> dict:
    """A real classifier, taught and downloaded through the API: its metadata and arrays, to damage."""
    api = Api(server.url)
    info = client(server.url, server.workdir / "dl").view_api(return_format="dict", print_info=False)
    params = [p["parameter_name"] for p in info["named_endpoints"]["/fewshot"]["parameters"]]
    examples = zipped({
        f"{color} {shape}/{k}.png": shape_png(color, shape, seed=10 * i + k)
        for i, (color, shape) in enumerate([("red", "circle"), ("blue", "square"), ("green", "triangle")])
        for k in range(4)
    })
    values = {"uploads": api.upload(("teach.zip", examples)), "templates": SINGLE, "methods": ["prototype"],
              "shots": "All", "folder": ""}
    answer = api.call("fewshot", *[values.get(p) for p in params])
    assert answer.event == "complete", answer.text[:500]
    got = api.call("fewshot_download", "prototype")
    assert got.event == "complete", got.text[:500]
    served = got.data[0]["value"]
    content = api.http.get(served["url"]).content
    from safetensors.numpy import load

    with zipfile.ZipFile(io.BytesIO(content)) as z:
        names = z.namelist()
        meta = json.loads(z.read(next(n for n in names if n.endswith(".json"))))
        arrays = load(z.read(next(n for n in names if n.endswith(".safetensors"))))
    api.close()
    return {"meta": meta, "arrays": arrays, "zip": content}


def _classify_with(server, picture, data: bytes, name: str = "classifier.zip"):
    api = Api(server.url)
    files = api.upload(("photo.png", picture))
    classifier = api.upload((name, data))
    with PeakWatch(server.pid) as watch:
        answer = classify(api, files, labels="", classifier=classifier)
    api.close()
    return answer, watch.growth_mb


def _message(answer) -> str:
    """The visitor-facing message of a refusal: an explorer-error block, or an error event's text."""
    if answer.event == "complete":
        found = re.search(r'class="explorer-error">(.*?)</div>', answer.first, re.S)
        return found.group(1) if found else ""
    return answer.error_message


def test_the_taught_classifier_itself_works(server, taught, picture):
    answer, _ = _classify_with(server, picture, taught["zip"])
    assert answer.event == "complete" and top_labels(answer.first) == ["red circle"], answer.first[:500]


@pytest.mark.parametrize("damage", ["wrong dimensions", "missing text array", "missing prototypes",
                                    "class count mismatch", "not a safetensors file"])
def test_a_damaged_classifier_gets_a_clear_message(server, taught, picture, damage):
    meta, arrays = dict(taught["meta"]), dict(taught["arrays"])
    if damage == "wrong dimensions":
        arrays = {
            k: np.concatenate([v, v[..., :5]], axis=-1) if v.ndim == 2 else v
            for k, v in arrays.items()
        }
    elif damage == "missing text array":
        arrays.pop("text")
    elif damage == "missing prototypes":
        arrays = {"text": arrays["text"]}
    elif damage == "class count mismatch":
        meta["class_names"] = meta["class_names"] + ["extra"]
    data = classifier_zip(meta, arrays) if damage != "not a safetensors file" else \
        zipped({"taught.json": json.dumps(meta).encode(), "taught.safetensors": b"\x00" * 64})
    answer, growth = _classify_with(server, picture, data)
    message = _message(answer)
    print(f"\n{damage}: {answer.event} in {answer.seconds:.2f} s: {message[:200]}")
    assert answer.event in ("complete", "error") and message.strip(), f"no clear message: {answer.raw[-400:]}"
    assert not top_labels(answer.first), "a damaged classifier classified"
    assert answer.seconds < MAX_SECONDS


@pytest.mark.parametrize("bomb", ["wide JSON (60 MB in 60 KB)", "deep JSON (200k levels)", "1,000 classes"])
def test_hostile_classifier_files_are_answered_fast_in_little_memory(server, taught, picture, bomb):
    meta, arrays = taught["meta"], taught["arrays"]
    if bomb.startswith("wide"):
        data = json_bomb_zip(meta.get("model"))
    elif bomb.startswith("deep"):
        data = deep_json_zip()
    else:
        classes = 1000
        dim = arrays["text"].shape[1]
        rng = np.random.default_rng(0)
        text = rng.standard_normal((classes, dim)).astype(np.float32)
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        big = dict(meta, class_names=[f"class number {i}" for i in range(classes)])
        data = classifier_zip(big, {"text": text, "prototypes": text.copy()})
    answer, growth = _classify_with(server, picture, data)
    print(f"\n{bomb}: {answer.event} in {answer.seconds:.2f} s, +{growth:.0f} MB: "
          f"{(_message(answer) or answer.first)[:200]}")
    assert answer.event != "error" or answer.error_message, "refused without a message ({'error': null})"
    assert answer.seconds < MAX_SECONDS and growth < MAX_GROWTH_MB
    if bomb.startswith(("wide", "deep")):
        assert _message(answer).strip(), answer.text[:500]
    else:
        assert top_labels(answer.first) or _message(answer).strip(), answer.text[:500]
