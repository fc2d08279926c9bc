"""ComfyUI's reasons, in its own words: why it refused a workflow, why a run failed."""

from __future__ import annotations


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
    error = answer.get("error")
    if isinstance(error, dict):
        headline = str(error.get("message") or error.get("type") or "refused")
        details = str(error.get("details") or "").strip()
        if details and details not in headline and not answer.get("node_errors"):
            headline += f": {details}"
    else:
        headline = str(error or "refused")
    lines = [headline]
    for node_id, problem in (answer.get("node_errors") or {}).items():
        for item in problem.get("errors", []):
            lines.append(f"  node {node_id} ({problem.get('class_type')}): {input_error(item)}")
    return lines


def execution_error(message: dict) -> str:
    """An `execution_error` message (websocket or /history) as "NodeType failed: reason"."""
    return f"{message.get('node_type') or 'a node'} failed: {message.get('exception_message') or 'no reason given'}".strip()


def failure(entry: dict) -> str | None:
    """Why a /history entry failed, or None when it succeeded."""
    status = entry.get("status") or {}
    if status.get("status_str") != "error":
        return None
    for kind, message in status.get("messages", []):
        if kind == "execution_error":
            return execution_error(message)
        if kind == "execution_interrupted":
            return f"interrupted on the server at {message.get('node_type') or 'a node'}"
    return "the workflow failed"
