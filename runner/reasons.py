"""ComfyUI's reasons, in its own words: why it refused a workflow, how a run ended (read_entry)."""

from __future__ import annotations

from dataclasses import dataclass


def input_error(error: dict) -> str:
    """One validation error: "samples: Value 9 bigger than max of 4"."""
    name = (error.get("extra_info") or {}).get("input_name")
    message = str(error.get("message") or error.get("type") or "refused")
    details = str(error.get("details") or "").strip()
    if name and details.startswith(f"{name}:"):
        details = details[len(name) + 1:].strip()
    if details == name or details in message:
        details = ""
    text = f"{name}: {message}" if name else message
    return f"{text} ({details})" if details else text


def refusal(answer: dict) -> list[str]:
    """ComfyUI's 400 answer to /prompt as lines: the headline, then each node's inputs."""
    answer = answer if isinstance(answer, dict) else {}
    error = answer.get("error")
    if isinstance(error, dict):
        headline = str(error.get("message") or error.get("type") or "refused")
        details = str(error.get("details") or "").strip()
        if details and details not in headline and not answer.get("node_errors"):
            headline += f": {details}"
    else:
        headline = str(error or "refused")
    lines = [headline]
    node_errors = answer.get("node_errors")
    for node_id, problem in (node_errors.items() if isinstance(node_errors, dict) else ()):
        errors = problem.get("errors") if isinstance(problem, dict) else None
        for item in errors if isinstance(errors, list) else ():
            if isinstance(item, dict):
                lines.append(f"  node {node_id} ({problem.get('class_type')}): {input_error(item)}")
    return lines


def execution_error(message: dict) -> str:
    """An `execution_error` message (websocket or /history) as "NodeType failed: reason"."""
    return f"{message.get('node_type') or 'a node'} failed: {message.get('exception_message') or 'no reason given'}".strip()


def failure(entry: dict) -> str | None:
    """Why a /history entry failed, or None when it succeeded."""
    status = entry.get("status") if isinstance(entry, dict) else None
    if not isinstance(status, dict) or status.get("status_str") != "error":
        return None
    messages = status.get("messages")
    for item in messages if isinstance(messages, list) else ():
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], dict)):
            continue
        kind, message = item
        if kind == "execution_error":
            return execution_error(message)
        if kind == "execution_interrupted":
            return f"interrupted on the server at {message.get('node_type') or 'a node'}"
    return "the workflow failed"


@dataclass(frozen=True)
class Images:
    """A run that succeeded: its output images ({filename, subfolder, type} each)."""
    images: tuple[dict, ...]


@dataclass(frozen=True)
class Failed:
    reason: str


@dataclass(frozen=True)
class Unreadable:
    """An entry that is not shaped as ComfyUI writes them: the run ended, how is unknown."""
    why: str


def read_entry(entry: object) -> Images | Failed | Unreadable:
    """How a prompt's /history entry says its run ended; never raises, whatever the entry holds."""
    if not isinstance(entry, dict):
        return Unreadable(f"it is {type(entry).__name__}, not an object")
    reason = failure(entry)
    if reason:
        return Failed(reason)
    outputs = entry.get("outputs", {})
    if not isinstance(outputs, dict):
        return Unreadable("its outputs are not an object")
    images = []
    for node_id, output in outputs.items():
        if not isinstance(output, dict):
            return Unreadable(f"the output of node {node_id} is not an object")
        listed = output.get("images", [])
        if not isinstance(listed, list):
            return Unreadable(f"the images of node {node_id} are not a list")
        for image in listed:
            if not (isinstance(image, dict) and isinstance(image.get("filename"), str)
                    and all(isinstance(image.get(k, ""), str) for k in ("subfolder", "type"))):
                return Unreadable(f"an image of node {node_id} has no file name")
            images.append({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
    return Images(tuple(images))
