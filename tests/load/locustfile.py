"""Locust users for the hosted demo: each is a visitor with its own session who uploads a few photos,
indexes them, then keeps classifying and searching. Every call goes through gradio's HTTP API
(/gradio_api/call/<name>), and a call whose result is an error event counts as a failure.

Run by tests/browser/test_load.py; by hand:
    locust -f tests/load/locustfile.py --headless -u 20 -r 20 -t 60s --host http://127.0.0.1:7860
"""
from __future__ import annotations

import io
import json
import uuid
import zipfile

from locust import HttpUser, between, task
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}
SINGLE = "Single: a photo of a {}."
SWITCHES_OFF = (0, "ZERO vote (the paper's)", False)  # /classify's test-time switches (its last inputs), off


def picture(colour: str, seed: int) -> bytes:
    image = Image.new("RGB", (48, 48), (240, 240, 240))
    offset = seed % 10
    ImageDraw.Draw(image).ellipse((6 + offset, 6, 36 + offset, 36), fill=COLOURS[colour])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class Visitor(HttpUser):
    wait_time = between(0.2, 1.0)

    def on_start(self):
        self.session = uuid.uuid4().hex[:11]
        self.photo = self.upload("photo.png", picture("red", 1))[0]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            for i, colour in enumerate(list(COLOURS) * 2):
                z.writestr(f"{colour}_{i}.png", picture(colour, i))
        zipped = self.upload("photos.zip", archive.getvalue())
        self.call("build_index", ["Upload images, a folder or a zip", "", zipped, None],
                  expect="image(s) searchable")

    def upload(self, name: str, data: bytes) -> list[dict]:
        got = self.client.post("/gradio_api/upload", files=[("files", (name, data))], name="upload")
        return [{"path": p, "orig_name": name, "meta": {"_type": "gradio.FileData"}} for p in got.json()]

    def call(self, api: str, data: list, expect: str) -> None:
        """One API call: join the queue, then read the result stream; an error event or an answer
        without `expect` is a failure."""
        sent = self.client.post(f"/gradio_api/call/{api}", json={"data": data, "session_hash": self.session},
                                name=api)
        if sent.status_code != 200:
            return
        event_id = sent.json()["event_id"]
        with self.client.get(f"/gradio_api/call/{api}/{event_id}", name=f"{api} (result)",
                             catch_response=True) as result:
            text = result.text
            if "event: error" in text:
                result.failure(f"{api}: error event: {text[-300:]}")
            elif "event: complete" not in text:
                result.failure(f"{api}: no result: {text[-300:]}")
            elif expect not in json.dumps(text):
                result.failure(f"{api}: the answer lacks {expect!r}: {text[:300]}")

    @task(2)
    def classify(self):
        self.call("classify", [[self.photo], "red, green, blue", SINGLE, "", 3, None, *SWITCHES_OFF],
                  expect="zs-top")

    @task(2)
    def search(self):
        self.call("search", ["something green", None, 0.5, 3, -1.0], expect="sr-name")
