"""A real HTTP server on 127.0.0.1 for fake providers.

A test gives it a `handler(request) -> Answer` function (`json_answer` builds a JSON one); the server records every request it
receives (method, path, headers, body) and answers what the handler says: any status, headers,
body, a delay before answering, a body cut short, a dropped connection, or a connection taken
over after a 101 answer (a websocket). Threaded, so concurrent calls overlap as they would
against a real provider.

`lose_answers` holds faults for the next requests that the handler serves normally: the work
is done (a fake provider makes and bills the image), then its answer is lost on the way back.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0           # seconds to wait before answering
    drop: bool = False           # close the connection without an answer
    truncate: bool = False       # promise a longer body than is sent
    upgrade: Callable | None = None  # 101 Switching Protocols, then upgrade(handler) owns the connection


def json_answer(status: int, payload, headers: dict | None = None) -> Answer:
    """An answer whose body is `payload` as JSON (the one builder every fake and test uses)."""
    return Answer(status, json.dumps(payload).encode(), {"content-type": "application/json", **(headers or {})})


LOST_ANSWERS = ("drop", "502", "504", "truncate", "slow")  # what a network or gateway does


def lost(answer: Answer, fault: str, slow: float = 5.0) -> Answer:
    """`answer` (the work done) lost on the way back as `fault` says."""
    if fault == "drop":
        return Answer(drop=True)
    if fault in ("502", "504"):
        return Answer(int(fault), b"<html><body>gateway error</body></html>", {"content-type": "text/html"})
    if fault == "truncate":
        return Answer(answer.status, answer.body, answer.headers, truncate=True)
    if fault == "slow":
        return Answer(answer.status, answer.body, answer.headers, delay=slow)
    raise ValueError(fault)


class Loopback:
    def __init__(self, handler: Callable[[Request], Answer]):
        self.handler = handler
        self.lose_answers: list[str] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _serve(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with outer._lock:
                    outer.requests.append(request)
                answer = outer.handler(request)
                with outer._lock:
                    fault = outer.lose_answers.pop(0) if outer.lose_answers else None
                if fault:
                    answer = lost(answer, fault)
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                if answer.upgrade:  # a websocket: the handshake's answer, then the fake speaks frames
                    self.send_response(101)
                    for key, value in answer.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.flush()
                    self.close_connection = True
                    answer.upgrade(self)
                    return
                self.send_response(answer.status)
                headers = {"content-type": "application/octet-stream", **answer.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                length = len(answer.body) * (2 if answer.truncate else 1)
                self.send_header("content-length", str(length))
                self.end_headers()
                try:
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if answer.truncate:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        # A real provider accepts many connections at once; the default backlog of 5 would hold
        # the rest back for a second (SYN retries) and blur what was sent when.
        server_class = type("LoopbackServer", (ThreadingHTTPServer,), {"request_queue_size": 128})
        self.server = server_class(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
