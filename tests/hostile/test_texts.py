"""Text a stranger types: server paths in every text box of every named endpoint, and text sized to
hold the model (100,000 labels, one 2 MB label).

Typed text is text: whatever a visitor types that happens to name a file on the server, nothing is
read, and the answer is the same whether that file exists or not."""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.hostile.attack import (
    LABELS,
    SINGLE,
    UPLOAD,
    Answer,
    Api,
    classify,
    client,
    quick_classify_seconds,
    shape_png,
    timed,
    top_labels,
    zipped,
)

SECRET = "xyzzy-" + uuid.uuid4().hex  # a sentence only the server's file holds
PASSWD = "root:x:0:0"                 # what /etc/passwd starts with
CUSTOM = "Custom (edit below)"
PROMPT_TABLE = {"headers": ["template"], "data": [["a photo of a {}."]], "metadata": None}
# What each named endpoint is sent besides the text under test: the calls a page would make, so that the
# text is read (prompt lab 'use' set to descriptions for the descriptions box, and so on).
CONTEXT = {
    # the test-time switches sent off: a switched answer carries its own timings (cost ratios)
    "/classify": {"label_text": LABELS, "choice": SINGLE, "custom_text": "a photo of a {}.", "k": 3,
                  "views": 0, "combine": "ZERO vote (the paper's)", "tda": False},
    "/evaluate_prompts": {"table": PROMPT_TABLE, "labels": "red circle, blue square", "use": "Templates",
                          "weighting": "Equal average", "single_row": 1, "compare_on": False,
                          "zpe_select": "All prompts", "views": 0, "combine": "ZERO vote (the paper's)",
                          "tda": False},
    "/build_index": {"choice": UPLOAD, "typed": ""},
    "/search": {"text": "a red circle", "weight": 0.5, "k": 4, "limit": -1.0},
    "/similarity": {"text": "a red circle", "n": 4},
    "/gap": {"source": "Upload images or a zip", "text_source": "Labels + templates", "labels": LABELS,
             "templates": SINGLE, "method": "PCA (instant)"},
    "/patch_map": {"method_name": "tokens", "alpha": 0.5},
    "/load_model": {},
    # the Map tab: a PCA map (no UMAP job per call) of the session's index, its labels read by zero-shot
    "/map": {"method": "pca", "by": "zeroshot", "labels": LABELS, "templates": SINGLE},
    "/map_colours": {"by": "zeroshot", "labels": LABELS, "templates": SINGLE},
    "/map_lists": {"templates": SINGLE},
    # the Probes tab on the labelled zip: each kind reads only its own boxes (READS picks the kind)
    "/probe": {"kind": "Counting", "object_name": "red circle", "attributes": "red, blue",
               "objects": "circle, square", "wordnet": False, "templates": SINGLE},
    # Compare models: the two offered models (the dropdown's default) on the labelled zip; the index
    # comparison on the two indexes that comparison made (prepared: index_a, index_b)
    "/compare": {"index": "(none)", "templates": SINGLE},
    "/compare_indexes": {"k": 4},
}
# Per text box, what else makes the app read it.
READS = {
    ("/classify", "custom_text"): {"choice": CUSTOM},
    ("/evaluate_prompts", "desc_text"): {"use": "Descriptions"},
    ("/build_index", "typed"): {"choice": "A folder on this computer"},
    ("/gap", "folder"): {"source": "Folder on this machine"},
    ("/map", "query"): {"by": "query"},
    ("/map_colours", "query"): {"by": "query"},
    ("/map", "vocabulary"): {"by": "cluster"},          # the typed words name the clusters
    ("/map_colours", "vocabulary"): {"by": "cluster"},
    ("/probe", "attributes"): {"kind": "Attributes x objects"},
    ("/probe", "objects"): {"kind": "Attributes x objects"},
    ("/probe", "binding"): {"kind": "Binding"},
    ("/probe", "synonyms"): {"kind": "Synonym swap"},
    ("/probe", "classes"): {"kind": "Label geometry (Loki)"},
    ("/probe", "extra"): {"kind": "Label geometry (Loki)"},
    ("/probe", "tree"): {"kind": "Label geometry (Loki)"},
    ("/compare", "labels"): {"uploads": lambda prepared: prepared["paths"]},   # unlabelled: labels are read
}
TEXT_COMPONENTS = ("Textbox", "Textarea")
SERVER_MODELS = ("noisy_model_dir",)   # a second offered model, so that /compare runs (tests/conftest.py)


@pytest.fixture(scope="module")
def secret_files(server):
    """A real JSON file of the {class: [sentences]} kind, where the server can read it, and a path
    beside it that does not exist."""
    folder = server.workdir / "operator-files"
    folder.mkdir(exist_ok=True)
    secret = folder / "descriptions.json"
    secret.write_text(
        json.dumps({"a": [SECRET], "red circle": [SECRET + " red"], "blue square": [SECRET + " blue"]}))
    (folder / "photos").mkdir(exist_ok=True)
    (folder / "photos" / "secret-photo.png").write_bytes(shape_png("red", "circle"))
    return {"exists": str(secret), "missing": str(folder / "no-such-file.json"), "passwd": "/etc/passwd",
            "folder": str(folder / "photos"), "missing_folder": str(folder / "no-such-folder")}


@pytest.fixture(scope="module")
def api_info(server, tmp_path_factory):
    return client(server.url, tmp_path_factory.mktemp("dl")).view_api(return_format="dict", print_info=False)


def text_boxes(api_info) -> list[tuple[str, str]]:
    """(endpoint, parameter) of every text box of every named endpoint, as the API itself lists them."""
    return [(name, p["parameter_name"]) for name, e in api_info["named_endpoints"].items()
            for p in e["parameters"] if p["component"] in TEXT_COMPONENTS]


def arguments(api_info, endpoint: str, values: dict) -> list:
    """The endpoint's positional data: `values` by parameter name, else the parameter's default."""
    out = []
    for p in api_info["named_endpoints"][endpoint]["parameters"]:
        name = p["parameter_name"]
        out.append(values[name] if name in values else p.get("parameter_default"))
    return out


def normalised(answer_text: str, typed: str) -> str:
    """An answer with the typed text, served file names and timings taken out."""
    text = answer_text.replace(json.dumps(typed)[1:-1], "<TYPED>").replace(typed, "<TYPED>")
    text = re.sub(r'"(path|url|orig_name)": "[^"]*"', r'"\1": "<FILE>"', text)
    text = re.sub(r"/gradio_api/file=[^\"'\s)]*", "<FILE>", text)
    text = re.sub(r"\d+(\.\d+)?\s?(ms|s|seconds)\b", "<TIME>", text)
    return text


@pytest.fixture(scope="module")
def prepared(server, api_info, tmp_path_factory):
    """Session A (raw HTTP) with photos uploaded, a labelled zip, an index built, a map made and two models
    compared, so that every endpoint gets as far as reading its text."""
    api = Api(server.url)
    photos = api.upload(("red.png", shape_png("red", "circle", seed=1)),
                        ("blue.png", shape_png("blue", "square", seed=2)))
    labelled = zipped({
        f"{cls}/{i}.png": shape_png(*_shape(cls), seed=i)
        for cls in ("red circle", "blue square")
        for i in range(3)
    })
    labelled_zip = api.upload(("labelled.zip", labelled))
    built = api.call("build_index", UPLOAD, "", api.upload(("photos.zip", labelled)), None)
    assert built.event == "complete", built.text[:500]
    made = api.call("similarity", photos, "a red circle", "(none)", 4, "Cosine", None)
    assert made.event == "complete", made.text[:500]
    pair = _compared_indexes(api, api_info, labelled_zip)
    return api, {"paths": photos, "files": photos, "uploads": labelled_zip, "name": "red.png", **pair}


def _compared_indexes(api: Api, api_info: dict, labelled_zip: list) -> dict:
    """Compare the two offered models on the labelled zip, then the two indexes of that folder it made
    (index_a, index_b of /compare_indexes), found among the session's as the page's Refresh lists them."""
    compared = api.call("compare", *arguments(api_info, "/compare", {"uploads": labelled_zip}))
    assert compared.event == "complete" and "cmp-summary-table" in compared.first, compared.text[:500]
    update = api.private(["cmp-index-a", "cmp-index-b"], ["(none)", "(none)"])[0]
    folders = [value for _, value in update["choices"] if value != "(none)"]
    for i, a in enumerate(folders):
        for b in folders[i + 1:]:
            got = api.call("compare_indexes", *arguments(api_info, "/compare_indexes", dict(
                index_a=a, index_b=b, queries="a red circle", k=4)))
            if got.event == "complete" and "explorer-error" not in got.text:
                return {"index_a": a, "index_b": b}
    raise AssertionError(f"no two indexes of one folder among {folders}")


def _shape(cls: str):
    color, shape = cls.split()
    return color, shape


def test_server_paths_typed_in_every_text_box_read_nothing(server, api_info, prepared, secret_files):
    """Each text box gets the same path typed three times: once to settle the session's state, once
    while the file (or folder) exists, once after it was moved away; the last two answers must be the
    same. /etc/passwd too, where only a leak can be seen."""
    api, uploads = prepared
    boxes = text_boxes(api_info)
    assert ("/evaluate_prompts", "desc_text") in boxes and ("/classify", "label_text") in boxes, boxes
    assert ("/compare", "labels") in boxes and ("/compare_indexes", "queries") in boxes, boxes
    differing, leaked = [], []

    def ask(endpoint, values, param, typed):
        answer = api.call(endpoint, *arguments(api_info, endpoint, dict(values, **{param: typed})))
        if SECRET in answer.raw or PASSWD in answer.raw or "secret-photo" in answer.raw:
            leaked.append((endpoint, param, typed, answer.raw[:300]))
        return normalised(answer.text, typed)

    for endpoint, param in boxes:
        values = dict(CONTEXT.get(endpoint, {}), **uploads)
        values.update({key: value(uploads) if callable(value) else value
                       for key, value in READS.get((endpoint, param), {}).items()})
        ask(endpoint, values, param, secret_files["passwd"])
        for kind in ("exists", "folder"):
            typed = Path(secret_files[kind])
            ask(endpoint, values, param, str(typed))
            there = ask(endpoint, values, param, str(typed))
            away = typed.with_name(typed.name + ".away")
            typed.rename(away)
            try:
                gone = ask(endpoint, values, param, str(typed))
            finally:
                away.rename(typed)
            if there != gone:
                differing.append((endpoint, param, kind, there[:400], gone[:400]))
    assert leaked == [], f"a server file's contents reached a visitor: {leaked}"
    assert differing == [], "the answer tells whether a server path exists:\n" + "\n".join(map(
        str, differing))


def test_descriptions_box_from_a_second_session_through_gradio_client(server, secret_files, tmp_path_factory):
    """Session B, through gradio_client as README shows: the prompt lab's descriptions box with a path."""
    from gradio_client import handle_file

    folder = tmp_path_factory.mktemp("client-b")
    labelled = folder / "labelled.zip"
    labelled.write_bytes(zipped({f"{cls}/{i}.png": shape_png(*_shape(cls), seed=i)
                                 for cls in ("red circle", "blue square") for i in range(3)}))
    b = client(server.url, folder / "dl")
    outs = {}
    for kind in ("exists", "missing", "passwd"):
        typed = secret_files[kind]
        try:
            got = b.predict(table=PROMPT_TABLE, uploads=[handle_file(str(labelled))],
                            labels="red circle, blue square", desc_text=typed, use="Descriptions",
                            api_name="/evaluate_prompts")
            text = json.dumps(got)
        except Exception as exc:  # an error event: gradio_client raises it
            text = f"error: {exc}"
        assert SECRET not in text and PASSWD not in text, (kind, text[:500])
        outs[kind] = normalised(text, typed)
    assert outs["exists"] == outs["missing"] == outs["passwd"], outs


def test_probe_lists_over_the_hosted_limits_are_refused_by_name(prepared, api_info):
    """/probe: 100 attributes x 100 objects are 10,000 prompts (hosted: at most 4,096), refused before any
    is encoded, with the setting named; so is a 300-line synonyms box (hosted: 256 texts)."""
    api, uploads = prepared
    words = ", ".join(f"word{i}" for i in range(100))
    values = dict(CONTEXT["/probe"], **uploads, kind="Attributes x objects", attributes=words, objects=words)
    answer = api.call("probe", *arguments(api_info, "/probe", values))
    assert answer.event == "complete" and "explorer-error" in answer.text, answer.text[:500]
    assert "EXPLORER_MAX_PROMPTS" in answer.text and "10,000" in answer.text, answer.text[:500]
    lines = "\n".join(f"red circle: name {i}" for i in range(300))
    values = dict(CONTEXT["/probe"], **uploads, kind="Synonym swap", synonyms=lines)
    answer = api.call("probe", *arguments(api_info, "/probe", values))
    assert "explorer-error" in answer.text and "EXPLORER_MAX_TEXTS" in answer.text, answer.text[:500]


def test_switches_beyond_the_hosted_view_limit_or_out_of_range_are_refused(prepared, api_info):
    """The test-time switches sent raw: 9 images x 64 views (hosted: 512 image views a request) refused
    by name before any is encoded; a view count beyond the box's range, or a way of combining that the
    page does not offer, refused without running."""
    api, uploads = prepared
    base = dict(CONTEXT["/classify"], **uploads)
    nine = api.upload(*[(f"{i}.png", shape_png("red", "circle", seed=i)) for i in range(9)])
    answer = api.call("classify", *arguments(api_info, "/classify", dict(base, paths=nine, views=64)))
    assert "EXPLORER_MAX_VIEW_ENCODES" in answer.text and "576" in answer.text, answer.text[:500]
    for bad in (dict(views=10**9), dict(views=-5), dict(views=4, combine="rm -rf /")):
        answer = api.call("classify", *arguments(api_info, "/classify", dict(base, **bad)))
        assert "zs-top" not in answer.text, (bad, answer.text[:500])
    answer = api.call("evaluate_prompts", *arguments(api_info, "/evaluate_prompts", dict(
        CONTEXT["/evaluate_prompts"], **uploads, views=10**6)))
    assert "pl-top1" not in answer.text, answer.text[:500]


# --- text sized to hold the model ------------------------------------------------------------------------

def _with_neighbour(server, picture: bytes, attack) -> tuple[object, float, list[float]]:
    """Run `attack()` while a second session classifies one image again and again; returns (the attack's
    answer, its seconds, the neighbour's call times during it)."""
    times: list[float] = []
    done = threading.Event()

    def neighbour():
        api = Api(server.url)
        uploaded = api.upload(("n.png", picture))
        while not done.is_set():
            answer = classify(api, uploaded)
            assert answer.event == "complete" and top_labels(answer.first), answer.text[:300]
            times.append(answer.seconds)
        api.close()

    thread = threading.Thread(target=neighbour)
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    try:
        answer = attack()
        seconds = time.monotonic() - started
    finally:
        done.set()
        thread.join(120)
    return answer, seconds, times


@pytest.mark.parametrize("what", ["100k labels", "one 2 MB label"])
def test_huge_label_boxes_are_answered_quickly_and_do_not_hold_others(server, picture, what):
    alone = quick_classify_seconds(server.url, picture)
    text = ", ".join(f"label {i}" for i in range(100_000)) if what == "100k labels" else \
        "red circle, " + "x" * (2 << 20)
    attacker = Api(server.url)
    uploaded = attacker.upload(("a.png", picture))
    answer, seconds, times = _with_neighbour(server, picture,
                                             lambda: classify(attacker, uploaded, labels=text))
    worst = max(times) if times else float("inf")
    print(f"\n{what}: answered in {seconds:.1f} s ({answer.event}); neighbour alone {alone:.2f} s, "
          f"during {len(times)} call(s), worst {worst:.2f} s")
    assert answer.event in ("complete", "error", "refused")
    assert seconds < 20, f"{what}: {seconds:.1f} s"
    assert answer.event != "error" or answer.error_message, "refused without a message ({'error': null})"
    if answer.event == "refused":  # refused as it joined the queue: the message names the limit
        assert "limit" in answer.text and "EXPLORER_" in answer.text, answer.text[:500]
    if answer.event == "complete":
        assert top_labels(
            answer.first) or "explorer-error" in answer.first or "limit" in answer.first, answer.first[:500]
    assert times and worst < 5 * max(alone, 0.2), f"the neighbour waited {worst:.2f} s (alone {alone:.2f} s)"


# --- the Map tab: its index choice and the page's hidden channels (hover, selection) ----------------------

def _map_seq(answer) -> int:
    """The seq of the map an answer of /map drew (its figure's layout.meta), which the page sends back."""
    figure = json.loads(answer.data[0]["plot"])
    return int(figure["layout"]["meta"]["seq"])


def _channel(api: Api, elem_id: str) -> tuple[int, int, int]:
    """(fn_index, the box's place among its inputs, how many) of the private event fed by the hidden text
    box `elem_id` (map.js writes it)."""
    config = api.http.get(api.url + "config").json()
    [box] = [c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    dep = [d for d in config["dependencies"] if box in d["inputs"] and d.get("targets")
           and [box, "change"] in [list(t) for t in d["targets"]]][0]   # the tab's own (map_words' follows)
    return dep["id"], dep["inputs"].index(box), len(dep["inputs"])


def _send(api: Api, channel: tuple[int, int, int], value: str) -> Answer:
    """The channel's event as the page sends it: null for the session's states, and the text."""
    fn_index, place, count = channel
    data = [value if i == place else None for i in range(count)]
    return api.join(fn_index, data)


def test_the_map_takes_only_the_sessions_own_index_and_points(server, prepared, secret_files):
    """/map refuses another session's index in the same words as a path that names nothing; the hover and
    selection channels read only numbers of the session's own map, bounded, never a path."""
    api, _ = prepared
    mine = api.call("map", None, "pca", "folder", "", SINGLE, 0, None, 8, "kmeans", "", "", None)
    assert mine.event == "complete", mine.text[:500]
    seq = _map_seq(mine)

    other = Api(server.url)
    photo = other.upload(("o.png", shape_png("green", "triangle")))
    other_built = other.call("build_index", UPLOAD, "", photo, None)
    assert other_built.event == "complete", other_built.text[:300]
    theirs = other.call("map", None, "pca", "folder", "", SINGLE, 0, None, 8, "kmeans", "", "", None)
    their_folder = theirs.data[-1]["value"]          # the index choice names its folder to its own session
    other.close()
    answers = {}
    for kind, folder in (("theirs", their_folder), ("missing", their_folder + "-gone"),
                         ("passwd", secret_files["passwd"]), ("secret", secret_files["folder"])):
        got = api.call("map", folder, "pca", "folder", "", SINGLE, 0, None, 8, "kmeans", "", "", None)
        leaked = SECRET in got.raw or PASSWD in got.raw or "o.png" in got.raw
        assert not leaked, (kind, got.raw[:300])
        answers[kind] = normalised(got.text, folder)
    assert "not one of yours" in answers["theirs"] or "refused before it was queued" in answers["theirs"]
    assert len(set(answers.values())) == 1, answers         # the same words, whatever the folder names

    hover, select = _channel(api, "map-hover-id"), _channel(api, "map-selection-ids")
    shown = _send(api, hover, f"{seq}:0")
    assert shown.event == "complete" and "thumb.webp" in json.dumps(shown.data), shown.text[:300]
    for value in (secret_files["passwd"], f"{seq}:../../etc/passwd", f"{seq}:" + "9" * 40, f"{seq + 1}:0",
                  f"{seq}:0,{secret_files['exists']}"):
        got = _send(api, hover, value)
        assert got.event == "complete", (value, got.raw[:300])
        assert SECRET not in got.raw and PASSWD not in got.raw, (value, got.raw[:300])
        assert "thumb.webp" not in json.dumps(got.data), value         # no point: nothing shown
    many = f"{seq}|999999999|" + ",".join(["0"] * 30_000)              # 60 KB of one point, within the limit
    got, seconds = timed(_send, api, select, many)
    assert got.event == "complete" and seconds < 10, got.text[:300]
    points = len(json.loads(mine.data[0]["plot"])["data"][0]["text"])
    assert f"{points} images selected (the first 1 are kept)" in got.text, got.text[:300]   # as the map has
    too_big = _send(api, select, f"{seq}|1|" + "0," * 40_000)          # 80 KB: over max_text_kb (64)
    assert too_big.event == "error" and "MAX_TEXT_KB" in json.dumps(too_big.data), too_big.text[:300]

    # a clicked point in words (SpLiCE): only a number of the session's own map, never a path
    explain = _channel(api, "map-explain-id")
    said = _send(api, explain, f"{seq}:0")
    assert said.event == "complete" and "in words (SpLiCE)" in json.dumps(said.data), said.text[:300]
    for value in (secret_files["passwd"], secret_files["exists"], f"{seq}:../../etc/passwd", f"{seq + 1}:0",
                  f"{seq}:" + "9" * 40, f"{seq}:0,1"):
        got = _send(api, explain, value)
        assert got.event == "complete", (value, got.raw[:300])
        assert SECRET not in got.raw and PASSWD not in got.raw, (value, got.raw[:300])
        assert "SpLiCE" not in got.raw, (value, got.raw[:300])                 # no point: nothing explained
