"""Following this client's prompts on one server: its websocket, /queue and /history, downloads.

A `Follower` thread per server listens on ComfyUI's /ws?clientId=... and turns its messages into
events on the batch's queue. It falls back to polling /queue and /history when the websocket
cannot be opened, and checks them every few seconds anyway (a message missed while reconnecting
is not a job lost). When a prompt finishes it fetches the images into the output folder (whole
files only: a download cut short is removed) and reports them; the server counts as down after
two failed checks in a row, and the batch moves its prompts elsewhere.

Events: Event(kind, server, prompt_id, data) with kind
  "started"   the prompt runs                "progress"  data = (value, max) of the running node
  "done"      data = [saved paths]           "failed"    data = ComfyUI's reason
  "lost"      the server no longer knows the prompt (restarted): send it again
  "down"      data = why; the follower has stopped
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import reasons
from .server import Refused, Server, Unreachable
from .websocket import TEXT, WebSocket, WebSocketClosed


@dataclass(frozen=True)
class Event:
    kind: str
    server: str
    prompt_id: str | None = None
    data: object = None


def free_name(target: Path) -> Path:
    """`target`, or `name-2.png`, `name-3.png`, ... when a file (an earlier run's) has its name."""
    candidate = target
    for number in range(2, 10000):
        if not candidate.exists() and not candidate.with_name(candidate.name + ".part").exists():
            return candidate
        candidate = target.with_name(f"{target.stem}-{number}{target.suffix}")
    raise FileExistsError(f"{target}: too many files of that name")


class Follower(threading.Thread):
    def __init__(self, server: Server, client_id: str, events: queue.Queue, out: Path, *,
                 use_websocket: bool = True, check_every: float = 5.0, poll_every: float = 0.5,
                 misses_before_lost: int = 3):
        super().__init__(daemon=True, name=f"follow {server.url}")
        self.server, self.client_id, self.events, self.out = server, client_id, events, out
        self.use_websocket, self.check_every, self.poll_every = use_websocket, check_every, poll_every
        self.misses_before_lost = misses_before_lost
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._tracked: dict[str, str] = {}      # prompt id -> file name prefix
        self._running: set[str] = set()
        self._misses: dict[str, int] = {}
        self._since: dict[str, float] = {}      # when each prompt was tracked
        self._heard_done: dict[str, None] = {}  # finished prompts heard before they were tracked
        self._next_check = 0.0
        self._failures = 0
        self._probe = False
        self.ws: WebSocket | None = None
        self._next_open = 0.0

    # Called by the batch (another thread)

    def track(self, prompt_id: str, prefix: str) -> None:
        """Follow `prompt_id` (before it is sent: its first messages may beat the answer to /prompt)."""
        with self._lock:
            self._tracked[prompt_id] = prefix
            self._since[prompt_id] = time.monotonic()
            if prompt_id in self._heard_done:
                self._next_check = 0.0
            elif self.ws is None:  # polling: an idle server was asked less often
                self._next_check = min(self._next_check, time.monotonic() + self.poll_every)

    def untrack(self, prompt_id: str) -> bool:
        """Stop following `prompt_id`; True when it was followed (no event for it comes after)."""
        with self._lock:
            return self._tracked.pop(prompt_id, None) is not None

    def check_soon(self) -> None:
        """Ask the server now, by HTTP even while the websocket is open (a call to it just failed)."""
        self._probe = True
        self._next_check = 0.0

    def stop(self) -> None:
        """End the thread soon: a read waiting on the websocket wakes up at once."""
        self.stopping.set()
        ws = self.ws
        if ws is not None:
            ws.wake()

    # The thread

    def run(self) -> None:
        try:
            self._follow()
        except Exception as exc:  # never die silently: the batch moves this server's jobs
            self._emit("down", data=f"stopped following it: {exc!r}")
        finally:
            if self.ws is not None:
                self.ws.close()

    def _emit(self, kind: str, prompt_id: str | None = None, data: object = None) -> None:
        self.events.put(Event(kind, self.server.url, prompt_id, data))

    def _follow(self) -> None:
        self._open()
        while not self.stopping.is_set():
            if self.ws is not None:
                try:
                    got = self.ws.receive(timeout=0.2)
                except WebSocketClosed:
                    self.ws, got, self._next_check = None, None, 0.0
                    self._next_open = time.monotonic()  # try once more at once; then every few seconds
                if got and got[0] == TEXT:
                    self._on_message(got[1])
            else:
                self.stopping.wait(self.poll_every)
                if self.use_websocket and time.monotonic() >= self._next_open:
                    self._open()
            if time.monotonic() >= self._next_check and not self.stopping.is_set():
                self._failures = 0 if self._check() else self._failures + 1
                if self._failures >= 2:
                    self._emit("down", data="it stopped answering")
                    return
                with self._lock:
                    busy = bool(self._tracked)
                pause = self.check_every if (self.ws is not None or not busy) and not self._misses else self.poll_every
                self._next_check = time.monotonic() + (pause if self._failures == 0 else 0.5)

    def _open(self) -> None:
        if not self.use_websocket:
            return
        url = "ws" + self.server.url.removeprefix("http") + f"/ws?clientId={self.client_id}"
        try:
            self.ws = WebSocket.connect(url, timeout=5.0)
            self._next_check = 0.0  # whatever was missed while it was closed
        except WebSocketClosed as exc:
            self.ws = None
            if "refused the websocket" in str(exc):  # no /ws here (not ComfyUI, or a proxy): poll
                self.use_websocket = False
            self._next_open = time.monotonic() + 5.0
        except OSError:
            self.ws, self._next_open = None, time.monotonic() + 5.0

    def _on_message(self, text: bytes) -> None:
        try:
            message = json.loads(text)
            kind, data = message["type"], message.get("data") or {}
        except (ValueError, KeyError, TypeError):
            return
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        with self._lock:
            ours = prompt_id in self._tracked
        if kind in ("executing", "execution_success") and (kind == "execution_success" or data.get("node") is None):
            if not ours and prompt_id:
                with self._lock:
                    self._heard_done[prompt_id] = None
                    while len(self._heard_done) > 1000:
                        self._heard_done.pop(next(iter(self._heard_done)))
            if ours:
                self._finish_safely(prompt_id)
            return
        if not ours:
            return
        if kind in ("execution_start", "executing"):
            self._mark_started(prompt_id)
        elif kind == "progress":
            self._emit("progress", prompt_id, (data.get("value"), data.get("max")))
        elif kind == "execution_error":
            self._fail(prompt_id, reasons.execution_error(data))
        elif kind == "execution_interrupted":
            self._fail(prompt_id, f"interrupted on the server at {data.get('node_type') or 'a node'}")

    def _mark_started(self, prompt_id: str) -> None:
        if prompt_id not in self._running:
            self._running.add(prompt_id)
            self._emit("started", prompt_id)

    def _fail(self, prompt_id: str, reason: str) -> None:
        with self._lock:
            if self._tracked.pop(prompt_id, None) is not None:
                self._emit("failed", prompt_id, reason)

    def _check(self) -> bool:
        """Ask /queue (and /history for our prompts no longer queued); False when unreachable."""
        with self._lock:
            tracked = list(self._tracked)
        if not tracked and self.ws is not None and not self._probe:
            return True
        try:
            queue_known = True
            try:
                running, pending = self.server.queue(timeout=10)
            except Refused:  # answers, but without /queue: follow the prompts by /history alone
                running, pending, queue_known = [], [], False
            for prompt_id in tracked:
                if prompt_id in running:
                    self._mark_started(prompt_id)
                if prompt_id in pending:
                    self._misses.pop(prompt_id, None)
                    continue
                try:
                    entry = self.server.history(prompt_id)
                except Refused:
                    entry = None
                if entry is not None:
                    self._misses.pop(prompt_id, None)
                    self._finish(prompt_id, entry)
                    continue
                if not queue_known or prompt_id in running:
                    self._misses.pop(prompt_id, None)
                    continue
                self._misses[prompt_id] = self._misses.get(prompt_id, 0) + 1
                if (self._misses[prompt_id] >= self.misses_before_lost
                        and time.monotonic() - self._since.get(prompt_id, 0) >= 5.0):  # not one still being sent
                    self._misses.pop(prompt_id)
                    with self._lock:
                        if self._tracked.pop(prompt_id, None) is not None:
                            self._emit("lost", prompt_id, "the server no longer knows the prompt")
        except Unreachable:
            return False
        self._probe = False
        return True

    def _finish_safely(self, prompt_id: str) -> None:
        try:
            entry = self.server.history(prompt_id)
            if entry is not None:
                self._finish(prompt_id, entry)
        except (Unreachable, Refused):
            self._next_check = 0.0

    def _finish(self, prompt_id: str, entry: dict) -> None:
        with self._lock:
            prefix = self._tracked.get(prompt_id)
        if prefix is None:
            return
        reason = reasons.failure(entry)
        if reason:
            self._fail(prompt_id, reason)
            return
        saved: list[Path] = []
        partial = None
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            for output in (entry.get("outputs") or {}).values():
                for image in output.get("images", []):
                    if self.stopping.is_set():
                        raise Unreachable("stopped")
                    target = free_name(self.out / f"{prefix}{Path(image.get('filename', 'image.png')).name}")
                    partial = target.with_name(target.name + ".part")
                    self.server.save_image(image, partial)
                    partial.replace(target)
                    saved.append(target)
        except BaseException as exc:
            for path in [*saved, partial]:
                if path is not None:
                    path.unlink(missing_ok=True)
            if isinstance(exc, Refused):
                self._fail(prompt_id, f"an image could not be fetched ({exc.status})")
                return
            raise
        with self._lock:
            if self._tracked.pop(prompt_id, None) is None:  # given up on meanwhile: not counted
                for path in saved:
                    path.unlink(missing_ok=True)
                return
            self._emit("done", prompt_id, saved)
