"""Calling nodes the way ComfyUI does: widget defaults from INPUT_TYPES, validation first, then
the node's FUNCTION awaited on an event loop. Hosted nodes get a fast pace passed in
(`fast`): a node receives its Policies at construction; nothing is patched."""

from __future__ import annotations

import asyncio
import inspect
import math
from dataclasses import replace

from sdbridge.nodes.hosted.http.policy import Policies, PollPolicy, RetryPolicy

FAST_RETRIES = RetryPolicy(base_delay=0.01, max_delay=0.05)
FAST_POLLS = PollPolicy(first_interval=0.02, max_interval=0.05, timeout=30.0)


def fast(node_class, **changes) -> Policies | None:
    """`node_class`'s own policies with fast retries and polls, and `changes` (None for a node
    that takes no policies)."""
    own = getattr(node_class, "POLICIES", None)
    if own is None:
        return None
    return replace(own, **{"retry": FAST_RETRIES, "poll": FAST_POLLS, **changes})


def make(node_class, policies: Policies | None = None):
    """A node as ComfyUI makes it, at `policies` (default: `fast`) when it is a hosted node."""
    policies = policies or fast(node_class)
    return node_class(policies) if policies is not None else node_class()


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


def comfy_validate(node_class, values: dict) -> list[str]:
    """ComfyUI 0.19.3's validation of widget values, as execution.validate_inputs does it: the
    inputs VALIDATE_INPUTS names go to it (its message filed under each of them); the others get
    ComfyUI's own combo and min/max checks. Returns "input: message" lines; empty when valid."""
    spec = node_class.INPUT_TYPES()
    argspec = inspect.getfullargspec(node_class.VALIDATE_INPUTS)
    named = [a for a in argspec.args if a != "cls"]
    errors = []
    for section in ("required", "optional"):
        for name, (kind, options) in spec.get(section, {}).items():
            if name not in values or name in named or argspec.varkw:
                continue
            value = values[name]
            if isinstance(kind, list):
                if value not in kind:
                    errors.append(f"{name}: Value not in list: {name}: '{value}' not in {kind}")
            elif kind in ("INT", "FLOAT"):
                try:
                    number = int(value) if kind == "INT" else float(value)
                except (TypeError, ValueError):
                    errors.append(f"{name}: Failed to convert an input value to a {kind} value")
                    continue
                if kind == "FLOAT" and math.isnan(number):
                    errors.append(f"{name}: NaN is not allowed")
                elif "min" in options and number < options["min"]:
                    errors.append(f"{name}: Value {number} smaller than min of {options['min']}")
                elif "max" in options and number > options["max"]:
                    errors.append(f"{name}: Value {number} bigger than max of {options['max']}")
    passed = {k: v for k, v in values.items() if k in named or argspec.varkw}
    verdict = node_class.VALIDATE_INPUTS(**passed)
    if verdict is not True:
        errors += [f"{name}: {verdict}" for name in passed]
    return errors


def run(node_class, node_id: str = "7", policies: Policies | None = None, **values):
    """Validate like ComfyUI, then run the node (at `policies`, default `fast`); returns its
    output tuple."""
    merged = {**defaults(node_class), **values}
    errors = comfy_validate(node_class, merged)
    if errors:
        raise AssertionError(f"validation failed: {errors}")
    function = getattr(make(node_class, policies), node_class.FUNCTION)
    result = function(unique_id=node_id, **merged)
    return asyncio.run(result) if inspect.isawaitable(result) else result
