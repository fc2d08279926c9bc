"""A fake ComfyUI server on the loopback server: the queue API the runner (submit.py) speaks.

- POST /prompt {"prompt", "client_id", "prompt_id"?}: validated as ComfyUI does against
  `object_info` (unknown node type; INT/FLOAT min and max; combo lists), answering 400 with
  ComfyUI's `error` + `node_errors` shapes; else queued: {"prompt_id", "number", "node_errors"}.
- GET /queue, POST /queue {"delete": [...]}, POST /interrupt {"prompt_id"?}, GET /history/<id>,
  GET /object_info and /object_info/<type>, GET /view?filename=... (PNG bytes).
- GET /ws?clientId=...: a websocket (RFC 6455 handshake, unmasked text frames): "status" on
  connect and after each prompt; for the client's prompts "execution_start", "executing",
  "progress" (`steps` of them), "executed", "execution_success", then "executing" with node None;
  "execution_error" for a prompt whose text contains "explode"; "execution_interrupted".
- One prompt runs at a time for `duration` seconds; each job makes `samples` images coloured by
  seed + i (`fakes.queue.picture`).
- What a runner may meet: `history_shape(entry)` changes each /history entry as served (a
  malformed one); `image_name(seed, number)` names the images (any name: "", ".", 251
  characters); `queue_shape(answer)` changes /queue's answer; `endless_views` serves /view as
  an answer that never ends (until the client hangs up, at most 1 GiB).
- `websocket=False` answers /ws with 404 (the runner must poll); `die_at=N` makes the server die
  when its Nth prompt has run half its time: it stops accepting connections, drops every open
  one and forgets its queue and history (a crashed machine); `die()` does that at any moment;
  `restart()` forgets them but keeps answering (ComfyUI restarted between two checks);
  `blackout(s)` drops every connection for s seconds while prompts keep running (an outage).
- GET /sdbridge/receipts?prompt_id=...&limit=N, the pack's route: each prompt that ended leaves a
  receipt per hosted node of its workflow, made by the pack's own `receipts.make` (done at `cost`
  measured, or failed with no cost), newest first. `receipts_answer` says how it answers:
  "records" (as the pack does), "404" (a server without the pack's route), "garbage" (not JSON),
  "wrong shape" (JSON that is not the pack's), "slow" (the records after `receipts_delay` s).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import struct
import threading
import time
import uuid
from urllib.parse import parse_qs, unquote, urlsplit

from fakes.queue import picture
from support.loopback import Answer, Loopback, Request, json_answer

SAVE_IMAGE = {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]}},
              "output": [], "name": "SaveImage", "output_node": True}


def pack_object_info() -> dict:
    """/object_info for the pack's nodes (their real declarations) and SaveImage."""
    import sdbridge

    info = {"SaveImage": SAVE_IMAGE}
    for name, node in sdbridge.NODE_CLASS_MAPPINGS.items():
        info[name] = {"input": node.INPUT_TYPES(), "output": list(node.RETURN_TYPES), "name": name}
    return info


def _server_frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, length) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, length) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, length) + payload


class FakeComfyUI(Loopback):
    def __init__(self, duration: float = 0.2, steps: int = 4, websocket: bool = True, die_at: int | None = None,
                 object_info: dict | None = None):
        self.duration, self.steps, self.websocket, self.die_at = duration, steps, websocket, die_at
        self.object_info = object_info if object_info is not None else pack_object_info()
        self.pending: list[dict] = []
        self.running: dict | None = None
        self.history: dict[str, dict] = {}
        self.accepted: list[dict] = []     # every prompt queued: {"prompt_id", "prompt", "client_id"}
        self.finished: list[str] = []      # prompt ids that ran to the end
        self.deleted: list[str] = []
        self.interrupts: list[str | None] = []
        self.sockets: dict[str, list] = {}
        self.dead = False
        self.broken_submit = False         # POST /prompt answers 500 (everything else works)
        self.cut_views = 0                 # this many /view answers are cut short
        self.away_until = 0.0              # connections are dropped until then (blackout)
        self.started = 0                   # prompts that began running
        self.history_shape = None          # entry -> what /history serves instead
        self.queue_shape = None            # answer -> what /queue serves instead
        self.image_name = lambda seed, number: f"seed_{seed}_{number:05d}_.png"
        self.endless_views = False
        self.outputs: dict[str, bytes] = {}  # file name -> bytes, what /view serves
        self.receipts: dict[str, list[dict]] = {}  # prompt id -> its receipts, newest first
        self.receipts_answer = "records"
        self.receipts_delay = 0.0
        self.cost = 0.0125                 # credits each hosted node's receipt says it spent
        self._forget: str | None = None
        self._number = itertools.count()
        self._images = itertools.count(1)
        self._cond = threading.Condition()
        self._interrupt = threading.Event()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, daemon=True)
        super().__init__(self.answer)
        self._serve_endless_views()

    def _serve_endless_views(self) -> None:
        """/view as an answer without a length that never ends, when `endless_views` is set."""
        fake, base = self, self.server.RequestHandlerClass

        class Handler(base):
            def do_GET(self):
                if not (fake.endless_views and self.path.startswith("/view")):
                    return base.do_GET(self)
                with fake._lock:
                    fake.requests.append(Request("GET", self.path, {}, b""))
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.end_headers()
                self.close_connection = True
                chunk = b"\0" * (1 << 16)
                try:
                    for _ in range(1 << 14):  # 1 GiB at most: the client hangs up long before
                        self.wfile.write(chunk)
                except OSError:
                    pass

        self.server.RequestHandlerClass = Handler

    def __enter__(self) -> FakeComfyUI:
        super().__enter__()
        self._worker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._close_sockets()
        super().__exit__(*exc)

    # Death

    def die(self) -> None:
        with self._cond:
            if self.dead:
                return
            self.dead = True
            self.pending.clear()
            self.history.clear()
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self._close_sockets()

    def blackout(self, seconds: float) -> None:
        """Drop every connection for `seconds` (a network outage) while prompts keep running."""
        self.away_until = time.monotonic() + seconds
        self._close_sockets()

    def restart(self) -> None:
        """Forget the queue, the running prompt and the history and drop the websockets, but keep
        answering (ComfyUI restarted between two of the runner's checks)."""
        with self._cond:
            self.pending.clear()
            self.history.clear()
            if self.running:
                self._interrupt.set()
                self._forget = self.running["prompt_id"]
        self._close_sockets()

    def _close_sockets(self) -> None:
        with self._cond:
            sockets = [s for group in self.sockets.values() for s in group]
            self.sockets.clear()
        for handler in sockets:
            try:
                handler.connection.shutdown(2)
                handler.connection.close()
            except OSError:
                pass

    # HTTP

    def answer(self, request: Request) -> Answer:
        if self.dead or time.monotonic() < self.away_until:
            return Answer(drop=True)
        url = urlsplit(request.path)
        path, query = unquote(url.path), parse_qs(url.query)
        if path == "/ws":
            return self._handshake(request, query.get("clientId", [""])[0])
        if request.method == "POST" and path == "/prompt":
            if self.broken_submit:
                return Answer(500, b"500 Internal Server Error\n\nServer got itself in trouble")
            return self._submit(json.loads(request.body))
        if request.method == "POST" and path == "/queue":
            body = json.loads(request.body or b"{}")
            with self._cond:
                for prompt_id in body.get("delete", []):
                    before = len(self.pending)
                    self.pending = [p for p in self.pending if p["prompt_id"] != prompt_id]
                    if len(self.pending) < before:
                        self.deleted.append(prompt_id)
            return Answer(200)
        if request.method == "POST" and path == "/interrupt":
            prompt_id = json.loads(request.body or b"{}").get("prompt_id")
            self.interrupts.append(prompt_id)
            with self._cond:
                if self.running and prompt_id in (None, self.running["prompt_id"]):
                    self._interrupt.set()
            return Answer(200)
        if path == "/queue":
            with self._cond:
                running = [self._row(self.running)] if self.running else []
                pending = [self._row(p) for p in self.pending]
            answer = {"queue_running": running, "queue_pending": pending}
            return json_answer(200, self.queue_shape(answer) if self.queue_shape else answer)
        if path.startswith("/history/"):
            prompt_id = path.removeprefix("/history/")
            with self._cond:
                entry = self.history.get(prompt_id)
            if entry and self.history_shape:
                shaped = self.history_shape(entry)
                if isinstance(shaped, bytes):  # not even JSON
                    return Answer(200, shaped, {"content-type": "application/json"})
                return json_answer(200, {prompt_id: shaped})
            return json_answer(200, {prompt_id: entry} if entry else {})
        if path == "/sdbridge/receipts":
            return self._receipts(query)
        if path == "/object_info":
            return json_answer(200, self.object_info)
        if path.startswith("/object_info/"):
            name = path.removeprefix("/object_info/")
            return json_answer(200, {name: self.object_info[name]} if name in self.object_info else {})
        if path == "/view":
            name = query.get("filename", [""])[0] if "filename" in query else ""
            with self._cond:
                body = self.outputs.get(name)
                cut = body is not None and self.cut_views > 0
                self.cut_views -= cut
            if body is None or query.get("type") != ["output"]:
                return json_answer(404, {})
            return Answer(200, body, {"content-type": "image/png"}, truncate=cut)
        return Answer(404, b"")

    def _receipts(self, query: dict) -> Answer:
        if self.receipts_answer == "404":
            return Answer(404, b"404: Not Found", {"content-type": "text/plain"})
        if self.receipts_answer == "garbage":
            return Answer(200, b"<html>a proxy's login page</html>", {"content-type": "application/json"})
        prompt_id, limit = query.get("prompt_id", [None])[0], int(query.get("limit", ["50"])[0])
        if self.receipts_answer == "wrong shape":
            return json_answer(200, {"receipts": [{"prompt_id": prompt_id, "provider": ["not", "text"]}]})
        with self._cond:
            found = list(self.receipts.get(prompt_id, [])) if prompt_id else [
                r for group in self.receipts.values() for r in group]
        answer = json_answer(200, {"receipts": found[:limit], "in_flight": []})
        if self.receipts_answer == "slow":
            answer.delay = self.receipts_delay
        return answer

    def _leave_receipts(self, item: dict, done: bool) -> None:
        """A receipt per hosted node of the prompt, as the pack writes them."""
        from sdbridge.nodes.hosted.node import hosted_classes
        from sdbridge.nodes.hosted.store import receipts

        made = []
        for node_id, node in item["prompt"].items():
            cls = hosted_classes().get(node.get("class_type"))
            if cls is None:
                continue
            inputs = node.get("inputs", {})
            endpoint = getattr(getattr(cls, "ENDPOINT", None), "slug", "") or inputs.get("model") or node["class_type"]
            made.append(receipts.make(
                provider=cls.PROVIDER.id, endpoint=str(endpoint), node_id=node_id,
                title=cls.DISPLAY_NAME, prompt_id=item["prompt_id"], inputs=inputs, image_digests=[],
                seed=inputs.get("seed"), request_ids=[f"req-{item['number']}-{node_id}"],
                status="done" if done else "failed", message="done" if done else "failed", credits=self.cost
                if done else None, basis="measured" if done else "unknown", returned=[]))
        with self._cond:
            self.receipts[item["prompt_id"]] = made[::-1]

    def queue_for_another_client(self, prompt: dict) -> str:
        """Queue `prompt` as someone else's work (as if another user pressed Run); its prompt id."""
        return json.loads(self._submit({"prompt": prompt, "client_id": "someone else"}).body)["prompt_id"]

    def _row(self, item: dict) -> list:
        return [item["number"], item["prompt_id"], item["prompt"], {"client_id": item["client_id"]}, ["2"]]

    def _submit(self, body: dict) -> Answer:
        prompt = body.get("prompt") or {}
        refusal = self._validate(prompt)
        if refusal:
            return json_answer(400, refusal)
        item = {"prompt_id": str(body.get("prompt_id") or uuid.uuid4()), "prompt": prompt,
                "client_id": body.get("client_id", ""), "number": next(self._number)}
        with self._cond:
            self.pending.append(item)
            self.accepted.append(item)
            self._cond.notify_all()
        self._broadcast_status()
        return json_answer(200, {"prompt_id": item["prompt_id"], "number": item["number"], "node_errors": {}})

    def _validate(self, prompt: dict) -> dict | None:
        node_errors = {}
        for node_id, node in prompt.items():
            declared = self.object_info.get(node.get("class_type"))
            if declared is None:
                return {"error": {"type": "invalid_prompt", "message":
                                  f"Cannot execute because node {node.get('class_type')} does not exist.",
                                  "details": f"Node ID '#{node_id}'", "extra_info": {}}, "node_errors": {}}
            specs = {**declared["input"].get("required", {}), **declared["input"].get("optional", {})}
            errors = []
            for name, value in node.get("inputs", {}).items():
                spec = specs.get(name)
                if spec is None or isinstance(value, list):
                    continue
                kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
                extra = {"input_name": name, "input_config": spec, "received_value": value}
                if isinstance(kind, list) and value not in kind:
                    errors.append({"type": "value_not_in_list", "message": "Value not in list",
                                   "details": f"{name}: '{value}' not in {kind}", "extra_info": extra})
                elif kind in ("INT", "FLOAT") and "min" in options and value < options["min"]:
                    errors.append({"type": "value_smaller_than_min", "message":
                                   f"Value {value} smaller than min of {options['min']}", "details": name,
                                   "extra_info": extra})
                elif kind in ("INT", "FLOAT") and "max" in options and value > options["max"]:
                    errors.append({"type": "value_bigger_than_max", "message":
                                   f"Value {value} bigger than max of {options['max']}", "details": name,
                                   "extra_info": extra})
            if errors:
                node_errors[node_id] = {"errors": errors, "dependent_outputs": [], "class_type": node["class_type"]}
        if not node_errors:
            return None
        return {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                          "details": "", "extra_info": {}}, "node_errors": node_errors}

    # Websocket

    def _handshake(self, request: Request, client_id: str) -> Answer:
        key = request.headers.get("sec-websocket-key")
        if not self.websocket or not key or request.headers.get("upgrade", "").lower() != "websocket":
            return Answer(404, b"")
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        return Answer(101, b"", {"Upgrade": "websocket", "Connection": "Upgrade",
                                 "Sec-WebSocket-Accept": accept.decode()},
                      upgrade=lambda handler: self._serve_socket(handler, client_id))

    def _serve_socket(self, handler, client_id: str) -> None:
        handler.send_lock = threading.Lock()
        with self._cond:
            self.sockets.setdefault(client_id, []).append(handler)
        self._send(handler, "status", {"status": {"exec_info": {"queue_remaining": self._remaining()}},
                                       "sid": client_id})
        try:
            while not self._stop.is_set():  # read the client's frames until it closes (a close frame or EOF)
                head = handler.rfile.read(2)
                if len(head) < 2 or head[0] & 0x0F == 0x8:
                    break
                length = head[1] & 0x7F
                if length == 126:
                    length = struct.unpack("!H", handler.rfile.read(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", handler.rfile.read(8))[0]
                handler.rfile.read(4 + length)  # the mask and the payload: nothing to answer
        except OSError:
            pass
        finally:
            with self._cond:
                group = self.sockets.get(client_id, [])
                if handler in group:
                    group.remove(handler)

    def _send(self, handler, kind: str, data: dict) -> None:
        payload = _server_frame(0x1, json.dumps({"type": kind, "data": data}).encode())
        try:
            with handler.send_lock:
                handler.connection.sendall(payload)
        except OSError:
            pass

    def _tell(self, client_id: str, kind: str, data: dict) -> None:
        with self._cond:
            targets = list(self.sockets.get(client_id, []))
        for handler in targets:
            self._send(handler, kind, data)

    def _remaining(self) -> int:
        with self._cond:
            return len(self.pending) + (1 if self.running else 0)

    def _broadcast_status(self) -> None:
        with self._cond:
            targets = [s for group in self.sockets.values() for s in group]
        for handler in targets:
            self._send(handler, "status", {"status": {"exec_info": {"queue_remaining": self._remaining()}}})

    # Running prompts, one at a time

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                if self.dead:
                    return
                if not self.pending:
                    self._cond.wait(0.05)
                    continue
                item = self.running = self.pending.pop(0)
                self.started += 1
                started = self.started
            self._interrupt.clear()
            self._run(item, started)
            with self._cond:
                self.running = None
            self._broadcast_status()

    def _run(self, item: dict, number: int) -> None:
        prompt_id, client = item["prompt_id"], item["client_id"]
        node = next(iter(item["prompt"]), "1")
        inputs = item["prompt"].get(node, {}).get("inputs", {})
        self._tell(client, "execution_start", {"prompt_id": prompt_id, "timestamp": int(time.time() * 1000)})
        self._tell(client, "executing", {"node": node, "display_node": node, "prompt_id": prompt_id})
        for step in range(1, self.steps + 1):
            if self._stop.wait(self.duration / self.steps) or self.dead:
                return
            if self.die_at == number and step > self.steps // 2:
                self.die()
                return
            if self._interrupt.is_set() and self._forget == prompt_id:  # restarted: no trace of it
                return
            if self._interrupt.is_set():
                self._end(item, "execution_interrupted", {"prompt_id": prompt_id, "node_id": node,
                                                          "node_type": item["prompt"][node]["class_type"],
                                                          "executed": []})
                return
            self._tell(client, "progress", {"value": step, "max": self.steps, "prompt_id": prompt_id, "node": node})
        if "explode" in str(inputs.get("prompt", "")):
            self._end(item, "execution_error", {"prompt_id": prompt_id, "node_id": node,
                                                "node_type": item["prompt"][node]["class_type"], "executed": [],
                                                "exception_message": "the model could not render this prompt",
                                                "exception_type": "RuntimeError", "traceback": []})
            return
        seed, samples = int(inputs.get("seed", 0)), int(inputs.get("samples", 1))
        images = [{"filename": self.image_name(seed + i, next(self._images)), "subfolder": "sdbridge",
                   "type": "output"} for i in range(samples)]
        with self._cond:
            self.outputs.update({image["filename"]: picture(seed + i) for i, image in enumerate(images)})
        save = next((i for i, n in item["prompt"].items() if n.get("class_type") == "SaveImage"), node)
        self._leave_receipts(item, done=True)  # written before the prompt ends, as the pack's nodes do
        with self._cond:
            self.history[prompt_id] = {"prompt": [item["number"], prompt_id, item["prompt"], {}, [save]],
                                       "outputs": {save: {"images": images}},
                                       "status": {"status_str": "success", "completed": True, "messages": [
                                           ["execution_start", {"prompt_id": prompt_id}],
                                           ["execution_success", {"prompt_id": prompt_id}]]}}
            self.finished.append(prompt_id)
        self._tell(client, "executed", {"node": save, "display_node": save, "output": {"images": images},
                                        "prompt_id": prompt_id})
        self._tell(client, "execution_success", {"prompt_id": prompt_id})
        self._tell(client, "executing", {"node": None, "prompt_id": prompt_id})

    def _end(self, item: dict, kind: str, message: dict) -> None:
        self._leave_receipts(item, done=False)
        with self._cond:
            self.history[item["prompt_id"]] = {"prompt": [], "outputs": {}, "status": {
                "status_str": "error", "completed": False, "messages": [[kind, message]]}}
        self._tell(item["client_id"], kind, message)
        self._tell(item["client_id"], "executing", {"node": None, "prompt_id": item["prompt_id"]})
