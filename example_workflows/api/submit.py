#!/usr/bin/env python3
"""Submit one of these API-format workflows to a running ComfyUI, follow it, save its images.

    python submit.py segmind_sdxl_panda.json --set prompt="a red fox" --set seed=7
    python submit.py segmind_sd15_img2img_landscape.json --set 2.strength=0.5 --out ./renders

--set NAME=VALUE changes that input on every node that has it (NAME may be NODE_ID.NAME to aim at
one node); VALUE is read as JSON when it parses (7, 0.5, true) and as text otherwise. Linked
inputs cannot be overridden. Standard library only; talks to ComfyUI's /prompt, /history and
/view routes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path


def apply_overrides(prompt: dict, overrides: list[str]) -> dict:
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--set needs NAME=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        node_id, _, field = name.rpartition(".")
        targets = [node_id] if node_id else list(prompt)
        changed = 0
        for target in targets:
            inputs = prompt.get(target, {}).get("inputs", {})
            if field in inputs and not isinstance(inputs[field], list):
                inputs[field] = value
                changed += 1
        if not changed:
            raise SystemExit(f"--set {name}: no node in this workflow has a widget input named {field!r}")
    return prompt


def call(server: str, path: str, body: dict | None = None, timeout: float = 30) -> bytes:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def submit(server: str, prompt: dict) -> str:
    try:
        answer = json.loads(call(server, "/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex}))
    except urllib.error.HTTPError as exc:  # 400: ComfyUI's validation refused the workflow
        details = json.loads(exc.read() or b"{}")
        lines = [details.get("error", {}).get("message", str(exc))]
        for node_id, problem in details.get("node_errors", {}).items():
            for error in problem.get("errors", []):
                lines.append(f"  node {node_id} ({problem.get('class_type')}): {error.get('details') or error.get('message')}")
        raise SystemExit("ComfyUI refused the workflow:\n" + "\n".join(lines)) from None
    return answer["prompt_id"]


def wait(server: str, prompt_id: str, timeout: float) -> dict:
    deadline, shown = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        history = json.loads(call(server, f"/history/{prompt_id}"))
        if prompt_id in history:
            return history[prompt_id]
        queue = json.loads(call(server, "/queue"))
        running = any(item[1] == prompt_id for item in queue.get("queue_running", []))
        state = "running" if running else f"queued ({len(queue.get('queue_pending', []))} waiting)"
        if state != shown:
            print(state, flush=True)
            shown = state
        time.sleep(0.5)
    raise SystemExit(f"gave up after {timeout:.0f} s; the prompt {prompt_id} may still finish in ComfyUI")


def save_images(server: str, entry: dict, out: Path) -> list[Path]:
    status = entry.get("status", {})
    if status.get("status_str") == "error":
        for kind, message in status.get("messages", []):
            if kind == "execution_error":
                raise SystemExit(f"{message.get('node_type')} failed: {message.get('exception_message')}")
        raise SystemExit("the workflow failed")
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    for output in entry.get("outputs", {}).values():
        for image in output.get("images", []):
            query = urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
            target = out / Path(image["filename"]).name
            target.write_bytes(call(server, f"/view?{query}"))
            saved.append(target)
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workflow", type=Path, help="an API-format workflow (this folder's *.json)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    parser.add_argument("--out", type=Path, default=Path("sdbridge_outputs"))
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)
    path = args.workflow if args.workflow.exists() else Path(__file__).parent / args.workflow
    prompt = apply_overrides(json.loads(path.read_text()), args.overrides)
    server = args.server.rstrip("/")
    prompt_id = submit(server, prompt)
    print(f"queued {path.name} as {prompt_id}", flush=True)
    for image in save_images(server, wait(server, prompt_id, args.timeout), args.out):
        print(f"saved {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
