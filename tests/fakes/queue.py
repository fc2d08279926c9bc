"""A fake queue API (submit, then poll), the shape Segmind v2, fal and Replicate share, on the
loopback server.

- POST /v1/queue/<model> with `x-api-key` and a JSON body: 401 for a wrong key, else
  {"request_id", "status": "QUEUED", "status_url", "response_url"}.
- GET <status_url>: QUEUED for `queued_polls` asks, PROCESSING for `processing_polls`, then
  COMPLETED; a prompt containing "explode" ends FAILED with HTTP 422 and an `error`.
- GET <response_url>: {"status": "COMPLETED", "output": [image URLs on this server]}.
- GET /images/<seed>.png: a picture coloured by the seed.
- `job_host` puts the status and response URLs on another server (a hostile answer).
- `script` holds canned answers served before normal ones.
"""

from __future__ import annotations

import io
import itertools
import json

from PIL import Image
from support.loopback import Answer, Loopback, Request, json_answer

KEY = "queue-test-key-0123456789"


def picture(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), ((seed * 67) % 256, (seed * 131) % 256, (seed * 197) % 256)).save(buffer, "PNG")
    return buffer.getvalue()


class FakeQueue(Loopback):
    def __init__(self, key: str = KEY, queued_polls: int = 1, processing_polls: int = 2):
        self.key = key
        self.queued_polls, self.processing_polls = queued_polls, processing_polls
        self.job_host: str | None = None
        self.script: list[Answer] = []
        self.jobs: dict[str, dict] = {}
        self._ids = itertools.count(1)
        super().__init__(self.answer)

    def submits(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]

    def answer(self, request: Request) -> Answer:
        if self.script:
            return self.script.pop(0)
        if request.headers.get("x-api-key") != self.key and not request.path.startswith("/images/"):
            return json_answer(401, {"detail": "invalid key"})
        path = request.path
        if request.method == "POST" and path.startswith("/v1/queue/"):
            return self._submit(json.loads(request.body))
        if path.startswith("/images/"):
            return Answer(200, picture(int(path.removeprefix("/images/").removesuffix(".png"))),
                          {"content-type": "image/png"})
        parts = path.strip("/").split("/")  # v1/requests/<id>[/status]
        job = self.jobs.get(parts[2]) if len(parts) >= 3 else None
        if job is None:
            return json_answer(404, {"detail": "no such request"})
        if parts[-1] == "status":
            return self._status(job)
        return json_answer(200, {"status": "COMPLETED", "output": [
            f"{self.url}/images/{job['seed'] + i}.png" for i in range(job["num_images"])]})

    def _submit(self, body: dict) -> Answer:
        request_id = f"req{next(self._ids)}"
        self.jobs[request_id] = {"polls": 0, "seed": int(body.get("seed", 0)),
                                 "num_images": int(body.get("num_images", 1)), "prompt": str(body.get("prompt"))}
        host = self.job_host or self.url
        return json_answer(200, {"request_id": request_id, "status": "QUEUED",
                                 "status_url": f"{host}/v1/requests/{request_id}/status",
                                 "response_url": f"{host}/v1/requests/{request_id}"})

    def _status(self, job: dict) -> Answer:
        job["polls"] += 1
        if job["polls"] <= self.queued_polls:
            return json_answer(200, {"status": "QUEUED", "queue_position": 1})
        if job["polls"] <= self.queued_polls + self.processing_polls:
            return json_answer(200, {"status": "PROCESSING"})
        if "explode" in job["prompt"]:
            return json_answer(422, {"status": "FAILED", "error": "the model could not render this prompt"})
        return json_answer(200, {"status": "COMPLETED"})
