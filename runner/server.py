"""One ComfyUI server as the runner sees it: its queue-API routes, with timeouts.

Every call raises `Unreachable` when the server cannot be reached or answers 5xx (the batch then
moves the server's jobs elsewhere), `Garbled` (a kind of Unreachable) when it answers 200 with
something that is not ComfyUI's shape, `Refused` when it answers 4xx with a reason (a refused
workflow: ComfyUI's own words, which `reasons.refusal` turns into lines), and `TooLarge` when an
image is larger than the runner downloads.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from . import hosted


class Unreachable(ConnectionError):
    """The server did not answer (refused, reset, timed out) or answered 5xx."""


class Garbled(Unreachable):
    """The server answered, but not with what ComfyUI answers there."""


class TooLarge(Exception):
    """An image larger than the download limit (files.MAX_IMAGE_BYTES)."""


class Refused(Exception):
    """The server answered 4xx; `answer` is its JSON body ({} when it is not JSON)."""

    def __init__(self, status: int, answer: dict):
        super().__init__(f"HTTP {status}")
        self.status, self.answer = status, answer


class Server:
    def __init__(self, url: str, timeout: float = 30.0):
        url = url.strip().rstrip("/")
        self.url = url if "://" in url else f"http://{url}"  # gpu1:8188 means http://gpu1:8188
        self.timeout = timeout

    def __repr__(self) -> str:
        return self.url

    def _open(self, path: str, body: dict | None = None, timeout: float | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            try:
                text = exc.read()
            except (OSError, http.client.HTTPException):
                text = b""
            if exc.code >= 500:
                raise Unreachable(f"{self.url} answered {exc.code}") from None
            try:
                answer = json.loads(text or b"{}")
            except ValueError:
                answer = {"error": {"message": text.decode("utf-8", "replace")[:500]}}
            raise Refused(exc.code, answer if isinstance(answer, dict) else {}) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, reset, timed out, garbled
            raise Unreachable(f"{self.url}: {getattr(exc, 'reason', exc)}") from None

    def _read(self, response, size: int = -1) -> bytes:
        try:
            return response.read(size)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise Unreachable(f"{self.url}: the answer broke off ({exc})") from None

    def call(self, path: str, body: dict | None = None, timeout: float | None = None) -> bytes:
        with self._open(path, body, timeout) as response:
            return self._read(response)

    def json(self, path: str, body: dict | None = None, timeout: float | None = None):
        text = self.call(path, body, timeout)
        try:
            return json.loads(text) if text.strip() else {}
        except ValueError:
            raise Garbled(f"{self.url}{path} answered something that is not JSON") from None

    # The routes the runner uses

    def queue(self, timeout: float | None = None) -> tuple[list[str], list[str]]:
        """The prompt ids running and waiting."""
        answer = self.json("/queue", timeout=timeout)
        if not isinstance(answer, dict):
            raise Garbled(f"{self.url}/queue answered {type(answer).__name__}, not ComfyUI's queue")
        return self._ids(answer, "queue_running"), self._ids(answer, "queue_pending")

    def _ids(self, answer: dict, name: str) -> list[str]:
        rows = answer.get(name, [])
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) > 1 and isinstance(r[1], str)
                                                  for r in rows):
            raise Garbled(f"{self.url}/queue: its {name} rows are not ComfyUI's [number, prompt_id, ...] lists")
        return [row[1] for row in rows]

    def submit(self, prompt: dict, client_id: str, prompt_id: str) -> str:
        """Queue `prompt` under `prompt_id` (ComfyUI 0.3.40+ keeps it; older ones choose their own).
        An empty `extra_pnginfo` goes along, as the editor sends one: Save Image then writes what the
        nodes add to it (SD Bridge's receipts) into the PNG, and nothing else."""
        body = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id, "extra_data": {"extra_pnginfo": {}}}
        try:
            answer = self.json("/prompt", body)
        except Garbled:  # answered 200: queued, under the id we chose (what else it said is unreadable)
            return prompt_id
        chosen = answer.get("prompt_id") if isinstance(answer, dict) else None
        return str(chosen or prompt_id)

    def history(self, prompt_id: str) -> object:
        """The prompt's /history entry (as answered: the caller reads it), None when there is none."""
        answer = self.json(f"/history/{urllib.parse.quote(prompt_id)}")
        if not isinstance(answer, dict):
            raise Garbled(f"{self.url}/history answered {type(answer).__name__}, not an object")
        return answer.get(prompt_id)

    def receipts(self, prompt_id: str, timeout: float) -> object:
        """The pack's receipts of `prompt_id` (GET /sdbridge/receipts), as answered: `hosted.read`
        reads them. Refused (404) from a server without the pack's route."""
        query = urllib.parse.urlencode({"prompt_id": prompt_id, "limit": hosted.LIMIT})
        with self._open(f"{hosted.ROUTE}?{query}", timeout=timeout) as response:
            text = self._read(response, hosted.MAX_BYTES + 1)
        if len(text) > hosted.MAX_BYTES:
            raise Garbled(f"{self.url}{hosted.ROUTE} answered more than {hosted.MAX_BYTES >> 20} MiB")
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            raise Garbled(f"{self.url}{hosted.ROUTE} answered something that is not JSON") from None

    def save_image(self, image: dict, target: Path, limit: int) -> None:
        """One output image (an entry of /history's outputs) into `target`, read 1 MiB at a time,
        at most `limit` bytes (TooLarge beyond)."""
        query = urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
        too_large = TooLarge(f"{image.get('filename')} on {self.url} is larger than the {limit >> 20} MiB the runner "
                             "downloads; fetch it from that server's output folder")
        written = 0
        with self._open(f"/view?{query}", timeout=max(self.timeout, 120)) as response:
            promised = response.headers.get("Content-Length")
            if promised and promised.isdigit() and int(promised) > limit:
                raise too_large
            with target.open("wb") as file:
                for _ in range(limit + 2):  # each read brings a byte at least: the limit ends it, or the end
                    chunk = self._read(response, 1 << 20)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > limit:
                        raise too_large
                    file.write(chunk)
        if promised and promised.isdigit() and written != int(promised):  # read(n) does not say it broke off
            raise Unreachable(f"{self.url}: an image broke off after {written} of {promised} bytes")

    def missing_node_types(self, class_types: set[str]) -> set[str] | None:
        """The node types this server does not have, or None when it cannot tell (no /object_info)."""
        missing = set()
        for class_type in sorted(class_types):
            try:
                info = self.json(f"/object_info/{urllib.parse.quote(class_type)}")
            except Refused:
                return self._missing_from_full_list(class_types)
            if not isinstance(info, dict) or class_type not in info:
                missing.add(class_type)
        return missing

    def _missing_from_full_list(self, class_types: set[str]) -> set[str] | None:
        try:
            info = self.json("/object_info", timeout=max(self.timeout, 60))
        except Refused:
            return None
        return {name for name in class_types if not isinstance(info, dict) or name not in info}

    def delete(self, prompt_ids: list[str]) -> None:
        self.call("/queue", {"delete": prompt_ids}, timeout=5)

    def interrupt(self, prompt_id: str) -> None:
        """Stop `prompt_id` if it runs (ComfyUI 0.3.50+ checks the id; callers check it runs)."""
        self.call("/interrupt", {"prompt_id": prompt_id}, timeout=5)
