"""Calling nodes the way ComfyUI does: widget defaults from INPUT_TYPES, validation first, then
the node's FUNCTION awaited on an event loop."""

from __future__ import annotations

import asyncio
import inspect


def defaults(node_class) -> dict:
    """The widget values a fresh node has in the editor."""
    values = {}
    spec = node_class.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, (kind, options) in spec.get(section, {}).items():
            if "default" in options:
                values[name] = options["default"]
            elif isinstance(kind, list):
                values[name] = kind[0]
    return values


def run(node_class, node_id: str = "7", **values):
    """Validate like ComfyUI, then run the node; returns its output tuple."""
    merged = {**defaults(node_class), **values}
    verdict = node_class.VALIDATE_INPUTS(**merged)
    if verdict is not True:
        raise AssertionError(f"validation failed: {verdict}")
    function = getattr(node_class(), node_class.FUNCTION)
    result = function(unique_id=node_id, **merged)
    return asyncio.run(result) if inspect.isawaitable(result) else result
