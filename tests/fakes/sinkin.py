"""A fake SinkIn that behaves as its document says, on the loopback server.

- POST /api/inference and /api/models take multipart forms with `access_token`. Failures come
  back as HTTP 200 with {"error_code": 1, "message": ...}, as SinkIn answers them: a wrong
  token, an unknown model or LoRA, a value outside the documented ranges.
- /api/inference answers {"error_code": 0, "images": [URLs on this server], "credit_cost",
  "inf_id"}; image i's colour is derived from seed + i and its size from width/height.
- GET /images/<seed>_<width>x<height>.png serves a picture after `image_delay` seconds.
- /api/models answers `catalog` (documented fields plus the extra ones public clients see).
- GET /covers/<name> serves cover pictures (`COVERS`): a good one, a huge one, one that is not an
  image, one that says image but is garbage, a redirect to `cover_redirect`, and a slow one
  (after `cover_delay` seconds). `with_covers()` points the catalog's cover_img fields at them.
- `script` holds canned answers (errors, garbage, delays) served before normal ones.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser

from PIL import Image, PngImagePlugin
from support.loopback import Answer, Loopback, Request, json_answer

KEY = "sinkin-test-token-0123456789"
SCHEDULERS = {"DPMSolverMultistep", "K_EULER_ANCESTRAL", "DDIM", "K_EULER", "PNDM", "KLMS"}
CATALOG = {
    "error_code": 0,
    "models": [
        {"id": "r2La2w2", "title": "Realistic Vision V6.0", "cover_img": "https://x/c.jpg", "link": "https://x/m"},
        {"id": "yBG2r9O", "name": "majicMIX realistic", "tags": ["photo"], "civitai_model_id": 43331},
        {"id": "4zdwGOB", "title": "DreamShaper"},
        {"id": "newModel1", "title": "A Model Added Today"},
    ],
    "loras": [
        {"id": "lora01", "title": "Detail Tweaker", "cover_img": "https://x/l.jpg"},
        {"id": "lora02", "name": "Film Grain"},
    ],
}


@dataclass
class Upload:
    filename: str
    content_type: str
    data: bytes


def form_fields(request: Request) -> dict[str, str | Upload]:
    """The fields of a multipart/form-data body; ValueError if it is not one or repeats a name."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ValueError(f"not multipart/form-data: {content_type!r}")
    message = BytesParser(policy=policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
    fields: dict[str, str | Upload] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name in fields:
            raise ValueError(f"field {name!r} sent twice")
        data = part.get_payload(decode=True)
        filename = part.get_filename()
        fields[name] = Upload(filename, part.get_content_type(), data) if filename else data.decode("utf-8")
    return fields


def colour_of(seed: int) -> tuple[int, int, int]:
    return (seed * 67) % 256, (seed * 131) % 256, (seed * 197) % 256  # far apart for nearby seeds


def picture(width: int, height: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour_of(seed)).save(buffer, "PNG")
    return buffer.getvalue()


COVER_SIZE = (600, 400)
COVERS = {  # catalog id -> the name of the cover the fake serves for it
    "r2La2w2": "good.png", "yBG2r9O": "huge.png", "4zdwGOB": "page.html", "newModel1": "garbage.png",
    "lora01": "redirect.png", "lora02": "slow.png",
}


def cover_picture() -> bytes:
    """A cover with a comment and metadata a thumbnail must not keep."""
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<script>alert(1)</script>")
    Image.new("RGB", COVER_SIZE, (200, 40, 90)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def failure(message: str) -> Answer:
    return json_answer(200, {"error_code": 1, "message": message})


class FakeSinkIn(Loopback):
    def __init__(self, key: str = KEY, image_delay: float = 0.0):
        self.key = key
        self.image_delay = image_delay
        self.catalog = CATALOG
        self.script: list[Answer] = []
        self.inferences = 0
        self.cover_delay = 3.0
        self.cover_redirect = "http://10.0.0.1/cover.png"
        self.cover_arrivals: list[float] = []   # when each cover request came (monotonic)
        super().__init__(self.answer)

    def with_covers(self) -> FakeSinkIn:
        """The catalog with each entry's cover_img on this server (COVERS)."""
        self.catalog = {**CATALOG, **{kind: [{**item, "cover_img": f"{self.url}/covers/{COVERS[item['id']]}"}
                                             for item in CATALOG[kind]] for kind in ("models", "loras")}}
        return self

    def cover_requests(self) -> list[str]:
        return [r.path for r in self.requests if r.path.startswith("/covers/")]

    def cover(self, name: str) -> Answer:
        self.cover_arrivals.append(time.monotonic())
        name = name.split("?")[0]  # a query tells covers apart, the picture is the same
        if name == "good.png":
            return Answer(200, cover_picture(), {"content-type": "image/png"})
        if name == "huge.png":
            return Answer(200, b"\x89PNG" + b"\0" * (3 * 1024 * 1024), {"content-type": "image/png"})
        if name == "page.html":
            return Answer(200, b"<html><body>a page</body></html>", {"content-type": "text/html"})
        if name == "garbage.png":
            return Answer(200, b"GIF89a not really", {"content-type": "image/png"})
        if name == "redirect.png":
            return Answer(302, b"", {"location": self.cover_redirect})
        if name == "slow.png":
            return Answer(200, cover_picture(), {"content-type": "image/png"}, delay=self.cover_delay)
        return Answer(404, b"<html><body>Not Found</body></html>", {"content-type": "text/html"})

    def forms(self, path: str = "/api/inference") -> list[dict]:
        return [form_fields(r) for r in self.requests if r.method == "POST" and r.path == path]

    def answer(self, request: Request) -> Answer:
        if self.script:
            return self.script.pop(0)
        if request.method == "GET" and request.path.startswith("/covers/"):
            return self.cover(request.path.removeprefix("/covers/"))
        found = re.fullmatch(r"/images/(\d+)_(\d+)x(\d+)\.png", request.path)
        if request.method == "GET" and found:
            seed, width, height = (int(g) for g in found.groups())
            return Answer(200, picture(width, height, seed), {"content-type": "image/png"},
                          delay=self.image_delay)
        if request.method != "POST" or request.path not in ("/api/inference", "/api/models"):
            return Answer(404, b"<html><body>Not Found</body></html>", {"content-type": "text/html"})
        try:
            fields = form_fields(request)
        except ValueError as exc:
            return failure(str(exc))
        if fields.get("access_token") != self.key:
            return failure("Invalid access token")
        if request.path == "/api/models":
            return json_answer(200, self.catalog)
        problem = self._problem(fields)
        if problem:
            return failure(problem)
        self.inferences += 1
        seed, width, height = int(fields.get("seed", 1)), int(fields.get("width", 512)), int(fields.get("height", 768))
        count = int(fields.get("num_images", 4))
        urls = [f"{self.url}/images/{seed + i}_{width}x{height}.png" for i in range(count)]
        return json_answer(200, {"error_code": 0, "images": urls, "credit_cost": 0.5 * count,
                      "inf_id": f"inf{self.inferences:04d}"})

    def _problem(self, fields: dict) -> str | None:
        ids = {m["id"] for m in self.catalog["models"]}
        if fields.get("model_id") not in ids:
            return f"Model {fields.get('model_id')} not found"
        if not str(fields.get("prompt", "")).strip():
            return "prompt is required"
        if "lora" in fields and fields["lora"] not in {lora["id"] for lora in self.catalog["loras"]}:
            return f"LoRA {fields['lora']} not found"
        for name in ("lcm", "use_default_neg"):
            if name in fields and fields[name] not in ("true", "false"):
                return f"{name} must be true or false"
        for name in ("width", "height"):
            value = int(fields.get(name, 512))
            if not 128 <= value <= 896 or value % 8:
                return f"{name} must be a multiple of 8 from 128 to 896"
        if not 1 <= int(fields.get("steps", 30)) <= 50:
            return "steps must be from 1 to 50"
        if not 1 <= float(fields.get("scale", 7.5)) <= 20:
            return "scale must be from 1 to 20"
        if fields.get("scheduler", "DPMSolverMultistep") not in SCHEDULERS:
            return "unknown scheduler"
        if fields.get("controlnet", "canny") not in ("canny", "depth", "openpose"):
            return "unknown controlnet"
        if ("controlnet" in fields or "image_strength" in fields) and not isinstance(
                fields.get("init_image_file"), Upload):
            return "init_image_file is required for img2img"
        return None
