"""The ordinary visitors of locustfile.py plus one attacker (issue 22): a stranger who, from one session,
sends decode-cost bombs to classify, to the index build and as the search query image, label boxes of
100,000 labels and of one 2 MB label, and queues 8 jobs at once the way the page queues them.

The attacker's requests are all named "attack: ...", and none counts as a failure (being refused is
the right answer); what is measured is the visitors' latency. Run by tests/hostile/test_load.py; by hand:
    locust -f tests/load/hostile_locustfile.py --headless -u 7 -r 7 -t 45s --host http://127.0.0.1:7860
"""
from __future__ import annotations

import io
import json
import sys
import uuid
import zipfile
from pathlib import Path

from locust import HttpUser, between, task

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for tests.hostile.attack

from tests.hostile.attack import lossless_webp_bomb, palette_png_bomb, rle8_bmp_bomb  # noqa: E402
from tests.load.locustfile import SINGLE, SWITCHES_OFF, Visitor, picture  # noqa: E402,F401  (Visitor: the ordinary users)

UPLOAD = "Upload images, a folder or a zip"
BOMBS = {"bomb.png": palette_png_bomb(), "bomb.bmp": rle8_bmp_bomb(), "slow.bmp": rle8_bmp_bomb(6300),
         "bomb.webp": lossless_webp_bomb()}


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return out.getvalue()


class Attacker(HttpUser):
    """One stranger, always exactly one whatever the user count."""
    fixed_count = 1
    wait_time = between(0.1, 0.5)

    def on_start(self):
        self.session = uuid.uuid4().hex[:11]
        config = self.client.get("/config", name="attack: config").json()
        state = {c["id"] for c in config["components"] if c.get("type") == "state"}
        self.fns = {d.get("api_name"): (d["id"], [i in state for i in d["inputs"]])
                    for d in config["dependencies"] if d.get("api_name")}
        self.photo = self.upload("photo.png", picture("red", 3))
        self.bombs = {name: self.upload(name, data) for name, data in BOMBS.items()}
        self.bomb_zip = self.upload("bombs.zip", _zip({**BOMBS, "photo.png": picture("blue", 4)}))

    def upload(self, name: str, data: bytes) -> list[dict]:
        got = self.client.post("/gradio_api/upload", files=[("files", (name, data))], name="attack: upload")
        try:
            return [{"path": p, "orig_name": name, "meta": {"_type": "gradio.FileData"}} for p in got.json()]
        except (ValueError, TypeError):
            return []

    def call(self, api: str, data: list, what: str) -> None:
        """One call through /gradio_api/call; whatever the answer, it is not a failure."""
        with self.client.post(f"/gradio_api/call/{api}", json={"data": data, "session_hash": self.session},
                              name=f"attack: {what}", catch_response=True) as sent:
            sent.success()
            if sent.status_code != 200:
                return
            event_id = sent.json()["event_id"]
        with self.client.get(f"/gradio_api/call/{api}/{event_id}", name=f"attack: {what} (result)",
                             catch_response=True) as result:
            result.success()

    @task
    def bombs_to_classify(self):
        files = [f for files in self.bombs.values() for f in files] + self.photo
        self.call("classify", [files, "red, green, blue", SINGLE, "", 3, None, *SWITCHES_OFF],
                  "classify bombs")

    @task
    def bombs_to_the_index(self):
        self.call("build_index", [UPLOAD, "", self.bomb_zip, None], "index bombs")

    @task
    def bomb_as_search_query(self):
        for files in self.bombs.values():
            if files:
                self.call("search", ["", files[0], 0.5, 3, -1.0], "search query bomb")

    @task
    def hundred_thousand_labels(self):
        labels = ", ".join(f"label {i}" for i in range(100_000))
        self.call("classify", [self.photo, labels, SINGLE, "", 3, None, *SWITCHES_OFF], "100k labels")

    @task
    def one_huge_label(self):
        self.call("classify", [self.photo, "red, " + "x" * (2 << 20), SINGLE, "", 3, None, *SWITCHES_OFF],
                  "2 MB label")

    @task
    def queue_eight(self):
        """Eight classify jobs joined at once from this session, then their results on its one stream."""
        index, is_state = self.fns["classify"]
        values = iter([self.photo, "red, green, blue", "7 templates (OpenAI subset)", "", 3, None,
                       *SWITCHES_OFF])
        data = [None if s else next(values, None) for s in is_state]
        for _ in range(8):
            with self.client.post(
                    "/gradio_api/queue/join", name="attack: queue 8", json={
                        "data": data, "fn_index": index, "session_hash": self.session, "event_data": None,
                        "trigger_id": None
                    }, catch_response=True) as joined:
                joined.success()
        with self.client.get(f"/gradio_api/queue/data?session_hash={self.session}",
                             name="attack: queue 8 (results)", stream=True, catch_response=True,
                             timeout=120) as stream:
            stream.success()
            for line in stream.iter_lines(decode_unicode=True):
                if line and line.startswith("data:") and json.loads(line[5:]).get("msg") == "close_stream":
                    break
