"""One server's websocket (/ws?clientId=...), read with websocket-client, turned into events.

A `Listener` thread opens the socket, reports it open or closed (`schedule.Socket`), and turns
ComfyUI's messages into `Started`, `Progress`, `Ended` and `RunFailed` for any prompt id: the
schedule keeps those of this batch. It reopens a closed socket every few seconds and gives up
when the server refuses the upgrade (no /ws there: the schedule polls /queue and /history).
Without websocket-client installed, `available()` is False and the runner polls.
"""

from __future__ import annotations

import json
import queue
import socket
import threading

from . import reasons, schedule


def available() -> bool:
    try:
        import websocket  # noqa: F401  (websocket-client)
    except ImportError:
        return False
    return True


def events_of(server: str, text: str) -> list:
    """A websocket text message as schedule events ([] for the ones the runner does not use)."""
    try:
        message = json.loads(text)
        kind, data = message["type"], message.get("data") or {}
    except (ValueError, KeyError, TypeError):
        return []
    prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
    if not isinstance(prompt_id, str):
        return []
    if kind == "execution_success" or (kind == "executing" and data.get("node") is None):
        return [schedule.Ended(server, prompt_id)]
    if kind in ("execution_start", "executing"):
        return [schedule.Started(server, prompt_id)]
    if kind == "progress":
        value, maximum = data.get("value"), data.get("max")
        if isinstance(value, int) and isinstance(maximum, int):
            return [schedule.Progress(server, prompt_id, value, maximum)]
    if kind == "execution_error":
        return [schedule.RunFailed(server, prompt_id, reasons.execution_error(data))]
    if kind == "execution_interrupted":
        return [schedule.RunFailed(server, prompt_id,
                                   f"interrupted on the server at {data.get('node_type') or 'a node'}")]
    return []


class Listener(threading.Thread):
    def __init__(self, server: str, client_id: str, events: queue.Queue, reopen_every: float = 5.0):
        super().__init__(daemon=True, name=f"listen {server}")
        self.server, self.client_id, self.events, self.reopen_every = server, client_id, events, reopen_every
        self.url = "ws" + server.removeprefix("http") + f"/ws?clientId={client_id}"
        self.stopping = threading.Event()
        self.ws = None

    def stop(self) -> None:
        """End the thread soon: a read waiting on the socket wakes up at once."""
        self.stopping.set()
        ws = self.ws
        if ws is not None and ws.sock is not None:
            try:
                ws.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run(self) -> None:
        import websocket

        while not self.stopping.is_set():
            try:
                ws = websocket.create_connection(self.url, timeout=5)
            except websocket.WebSocketBadStatusException:
                return  # no /ws here (not ComfyUI, or a proxy): the schedule polls
            except (OSError, websocket.WebSocketException):
                self.stopping.wait(self.reopen_every)
                continue
            self.ws = ws
            self.events.put(schedule.Socket(self.server, True))
            try:
                self._read(ws, websocket)
            finally:
                self.ws = None
                ws.close(timeout=0.5)
                self.events.put(schedule.Socket(self.server, False))
            self.stopping.wait(0.2)

    def _read(self, ws, websocket) -> None:
        ws.settimeout(0.2)  # each read wakes up to see whether the batch is over
        while not self.stopping.is_set():
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except (OSError, websocket.WebSocketException):
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:  # binary ones are previews
                for event in events_of(self.server, data.decode("utf-8", "replace")):
                    self.events.put(event)
