"""A fake Segmind that behaves as its documents and its SDK say, on the loopback server.

v1 (sync, the documents):
- POST /v1/<slug> with the `x-api-key` header; a wrong key gets 401, an unknown slug 404, GET 405.
- `base64: false` answers the raw image (image/jpeg); `base64: true` answers JSON
  {"image": <b64 string or list>}; every answer carries `x-remaining-credits` (on v2: the answers
  `balance_on` names; with "submit" the job is billed at submit).

v2 (the queue, as segmind-python's v2.py and tests describe it):
- POST /v2/<slug> with the same body: the v1 errors, else {"request_id", "status": "QUEUED",
  "status_url", "response_url", "poll_url"}. `v2_slugs` are the slugs v2 serves (others 404).
- GET /v2/requests/<id>/status: QUEUED for `queued_polls` asks, PROCESSING for
  `processing_polls`, then COMPLETED, when the images are made and billed; a prompt containing
  "explode" ends FAILED under HTTP 422 with an `error`. `expire()` forgets every job (404).
- GET /v2/requests/<id>: {"status", "error", "metrics": {"inference_time"}, "output"} where the
  output is shaped as `v2_output` says: "url", "urls", "base64", "nested" ({"image": url}).
- GET /results/<seed>_<w>x<h>.jpg serves a result picture.
- `rate_limit = (n, seconds)`: at most n generation requests in any window of that many seconds;
  the others get 429 with Retry-After (whole seconds), as a plan's limit does. `rejected` holds
  when each 429 was given.

The picture's colour is derived from the seed and its size from img_width/img_height, so tests
can tell answers apart. `script` holds canned answers served before normal ones.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import re
import time

from PIL import Image
from support.loopback import Answer, Loopback, Request, json_answer

KEY = "sg-test-key-0123456789"
SLUGS = {"sd1.5-realisticvision", "sdxl1.0-txt2img", "sd1.5-img2img", "sdxl1.0-realvis", "custom-model"}


def picture(width: int, height: int, seed: int, fmt: str = "JPEG") -> bytes:
    colour = ((seed * 67) % 256, (seed * 131) % 256, (seed * 197) % 256)  # far apart, even after JPEG
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, fmt)
    return buffer.getvalue()


class FakeSegmind(Loopback):
    def __init__(self, key: str = KEY):
        self.key = key
        self.script: list[Answer] = []
        self.credits = 100.0
        self.generated = 0   # images made (and billed), whether or not the answer got back
        self.v2_slugs = set(SLUGS)
        self.v2_output = "url"
        self.queued_polls, self.processing_polls = 1, 1
        # Which v2 answers carry x-remaining-credits (undocumented): "submit" also bills at submit.
        self.balance_on: set[str] = {"result"}
        self.job_host: str | None = None
        self.jobs: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self.rate_limit: tuple[int, float] | None = None
        self.accepted_at: list[float] = []
        self.rejected: list[float] = []
        super().__init__(self.answer)

    def bodies(self) -> list[dict]:
        return [json.loads(r.body) for r in self.requests if r.method == "POST"]

    def submits(self) -> list[Request]:
        """Generation requests: v1 calls and v2 submits (what can be billed)."""
        return [r for r in self.requests if r.method == "POST"]

    def expire(self) -> None:
        self.jobs.clear()

    def answer(self, request: Request) -> Answer:
        if self.script:
            return self.script.pop(0)
        found = re.fullmatch(r"/results/(\d+)_(\d+)x(\d+)\.jpg", request.path.split("?")[0])
        if request.method == "GET" and found:
            seed, width, height = (int(g) for g in found.groups())
            return Answer(200, picture(width, height, seed), {"content-type": "image/jpeg"})
        if request.headers.get("x-api-key") != self.key:
            return json_answer(401, {"error": "Unauthorized: invalid API key"})
        if request.path.startswith("/v2/requests/"):
            return self._v2_request(request.path.removeprefix("/v2/requests/"))
        if request.method != "POST":
            return Answer(405, b'{"error": "Method Not Allowed"}', {"content-type": "application/json"})
        version, _, slug = request.path.strip("/").partition("/")
        if slug not in SLUGS or (version == "v2" and slug not in self.v2_slugs):
            return json_answer(404, {"error": f"model {slug} not found"})
        try:
            body = json.loads(request.body)
        except ValueError:
            return json_answer(400, {"error": "body is not JSON"})
        if not isinstance(body.get("prompt"), str) and slug != "custom-model":
            return json_answer(400, {"error": "prompt is required"})
        if self.rate_limit is not None:
            refused = self._over_the_limit()
            if refused is not None:
                return refused
        if version == "v2":
            return self._v2_submit(body)
        return self._v1(body)

    def _over_the_limit(self) -> Answer | None:
        count, window = self.rate_limit
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self.accepted_at if t > now - window]
            if len(recent) >= count:
                self.rejected.append(now)
                wait = math.ceil(recent[-count] + window - now)
                return json_answer(429, {"error": "Rate limit exceeded"}, {"retry-after": str(max(1, wait))})
            self.accepted_at.append(now)
        return None

    # ---------------------------------------------------------------- v1

    def _make(self, body: dict) -> tuple[list[bytes], dict, int]:
        """Make (and bill) the images a body asks for."""
        width, height = int(body.get("img_width", 64)), int(body.get("img_height", 64))
        seed, samples = int(body.get("seed", 0)), int(body.get("samples", 1))
        self.credits -= samples
        self.generated += samples
        headers = {"x-remaining-credits": f"{self.credits:g}"}
        return [picture(width, height, seed + i) for i in range(samples)], headers, seed

    def _v1(self, body: dict) -> Answer:
        images, headers, _ = self._make(body)
        if body.get("base64"):
            encoded = [base64.b64encode(img).decode() for img in images]
            payload = {"image": encoded[0] if len(images) == 1 else encoded, "status": "Success"}
            return json_answer(200, payload, headers)
        return Answer(200, images[0], {"content-type": "image/jpeg", **headers})

    # ---------------------------------------------------------------- v2

    def _v2_submit(self, body: dict) -> Answer:
        request_id = f"req-{next(self._ids)}"
        self.jobs[request_id] = job = {"body": body, "polls": 0, "output": None}
        host = self.job_host or self.url
        balance = {}
        if "submit" in self.balance_on:
            job["output"], balance = self._v2_output(body)
            job["headers"] = balance if "result" in self.balance_on else {}
        return json_answer(200, {"request_id": request_id, "status": "QUEUED",
                                 "status_url": f"{host}/v2/requests/{request_id}/status",
                                 "response_url": f"{host}/v2/requests/{request_id}",
                                 "poll_url": f"{host}/v2/requests/{request_id}/status"}, balance)

    def _v2_request(self, rest: str) -> Answer:
        request_id, _, part = rest.partition("/")
        job = self.jobs.get(request_id)
        if job is None:
            return json_answer(404, {"detail": "request not found or expired"})
        if part == "status":
            job["polls"] += 1
            if job["polls"] <= self.queued_polls:
                return json_answer(200, {"status": "QUEUED"})
            if job["polls"] <= self.queued_polls + self.processing_polls:
                return json_answer(200, {"status": "PROCESSING"})
        if "explode" in str(job["body"].get("prompt")):
            return json_answer(422, {"status": "FAILED", "error": "NSFW content detected in the prompt"})
        if job["output"] is None and part == "status":
            job["output"], job["headers"] = self._v2_output(job["body"])
        if part == "status":
            return json_answer(200, {"status": "COMPLETED"})
        if job["output"] is None:
            return json_answer(200, {"status": "PROCESSING"})
        return json_answer(200, {"status": "COMPLETED", "error": None, "metrics": {"inference_time": 1.5},
                                 "output": job["output"]}, job["headers"])

    def _v2_output(self, body: dict):
        images, headers, seed = self._make(body)
        width, height = int(body.get("img_width", 64)), int(body.get("img_height", 64))
        urls = [f"{self.url}/results/{seed + i}_{width}x{height}.jpg" for i in range(len(images))]
        shaped = {"url": urls[0] if len(urls) == 1 else urls, "urls": urls,
                  "base64": [base64.b64encode(img).decode() for img in images],
                  "nested": {"image": urls[0] if len(urls) == 1 else urls}}[self.v2_output]
        return shaped, headers
