"""A fake Segmind that behaves as its documents say, on the loopback server.

- POST /v1/<slug> with the `x-api-key` header; a wrong key gets 401, an unknown slug 404, GET 405.
- `base64: false` answers the raw image (image/jpeg); `base64: true` answers JSON
  {"image": <b64 string or list>}; every answer carries `x-remaining-credits`.
- The picture's colour is derived from the seed and its size from img_width/img_height, so tests
  can tell answers apart.
- `script` holds canned answers (errors, garbage, delays) served before normal ones.
"""

from __future__ import annotations

import base64
import io
import json

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
        super().__init__(self.answer)

    def bodies(self) -> list[dict]:
        return [json.loads(r.body) for r in self.requests if r.method == "POST"]

    def answer(self, request: Request) -> Answer:
        if self.script:
            return self.script.pop(0)
        if request.method != "POST":
            return Answer(405, b'{"error": "Method Not Allowed"}', {"content-type": "application/json"})
        if request.headers.get("x-api-key") != self.key:
            return json_answer(401, {"error": "Unauthorized: invalid API key"})
        slug = request.path.removeprefix("/v1/")
        if slug not in SLUGS:
            return json_answer(404, {"error": f"model {slug} not found"})
        try:
            body = json.loads(request.body)
        except ValueError:
            return json_answer(400, {"error": "body is not JSON"})
        if not isinstance(body.get("prompt"), str) and slug != "custom-model":
            return json_answer(400, {"error": "prompt is required"})
        width, height = int(body.get("img_width", 64)), int(body.get("img_height", 64))
        seed, samples = int(body.get("seed", 0)), int(body.get("samples", 1))
        self.credits -= samples
        self.generated += samples
        headers = {"x-remaining-credits": f"{self.credits:g}"}
        images = [picture(width, height, seed + i) for i in range(samples)]
        if body.get("base64"):
            encoded = [base64.b64encode(img).decode() for img in images]
            payload = {"image": encoded[0] if samples == 1 else encoded, "status": "Success"}
            return json_answer(200, payload, headers)
        return Answer(200, images[0], {"content-type": "image/jpeg", **headers})

