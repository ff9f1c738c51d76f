"""Teach by example on a hosted demo, called through the raw HTTP API by two strangers: each keeps
its own taught classifier; the other can neither apply nor download it, nor sort the first one's
index, and the first one's download is written in its own workspace."""
from __future__ import annotations

import io
import json
import zipfile

from tests.browser.test_hosted_api import SINGLE, Api, png_bytes, sessions_dir
from tests.shapes import CLASSES


def _examples(workdir, name: str) -> object:
    archive = workdir / name
    with zipfile.ZipFile(archive, "w") as z:
        for i, (color, shape) in enumerate(CLASSES[:3], start=1):
            for k in range(4):
                z.writestr(f"kind_{i}/{k}.png", png_bytes(color, shape, 10 * i + k))
    return archive


def test_two_strangers_each_teach_their_own_classifier(hosted_app):
    a, b = Api(hosted_app.url), Api(hosted_app.url)
    event, out = a.call("fewshot", a.upload(_examples(hosted_app.workdir, "a-teach.zip")), SINGLE, ["gda"],
                        "All")
    assert event == "complete", out
    summary, table = out[0], out[1]
    assert "explorer-error" not in summary and "gda" in table.lower() and "zero-shot" in table.lower()
    # B never ran Teach: B's calls for "gda" are refused (by gradio, since B's method list is empty, or by
    # the handler), and nothing of A's comes back.
    for api_name, data in (("fewshot_download", ["gda"]),
                           ("fewshot_apply",
                            ["gda", b.upload(_examples(hosted_app.workdir, "b.zip")), None, True, 0.5])):
        event, out = b.call(api_name, *data)
        assert event == "error" or "Teach" in json.dumps(out), (api_name, out)
        assert "a-teach" not in json.dumps(out)
    # A downloads its own: the zip lies in A's session workspace, and holds the classifier pair.
    event, out = a.call("fewshot_download", "gda")
    assert event == "complete", out
    served = out[0]["value"]            # a gr.update of the File component
    got = a.http.get(served["url"])
    assert got.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(got.content)).namelist()
    assert sorted(names) == ["classifier-gda.json", "classifier-gda.safetensors"]
    in_workspace = list(sessions_dir(hosted_app).glob("ws-*/**/classifier-gda.zip"))  # not gradio's copy
    assert len(in_workspace) == 1 and "classifiers" in in_workspace[0].parts
    # A can sort new images with it; B still cannot.
    event, out = a.call("fewshot_apply", "gda", a.upload(_examples(hosted_app.workdir, "a-new.zip")), None,
                        True, 0.5)
    assert event == "complete" and "explorer-error" not in out[0], out
    event, out = b.call("fewshot_download", "gda")
    assert event == "error" or "Teach" in json.dumps(out)
