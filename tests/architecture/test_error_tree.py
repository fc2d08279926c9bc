"""One error tree: every exception class the pack defines derives from errors.SDBridgeError, or
is internal (listed here with the module that catches it, so it never reaches a user); and the
tree drawn at the top of errors.py is the tree of classes, so the drawing cannot drift."""

from __future__ import annotations

import ast
import builtins
import importlib
import re

from conftest import ROOT

from sdbridge.nodes import errors

# Exceptions that are not part of the tree, and why none reaches a user: {class: (where it is
# caught, why it stays outside)}.
INTERNAL = {
    "nodes.runtime.Interrupted": (None, "stands in for ComfyUI's own interrupt outside ComfyUI; ComfyUI handles it"),
    "nodes.hosted.http.exchange.ExchangeFailed": ("nodes/hosted/http/client.py", "becomes a retry or ProviderError"),
    "nodes.hosted.http.exchange.ResponseTooLarge": ("nodes/hosted/http/client.py", "becomes a ProviderError"),
    "nodes.hosted.http.exchange.ResponseUndecodable": ("nodes/hosted/http/client.py", "becomes a ProviderError"),
    "nodes.hosted.http.exchange.Cancelled": ("nodes/hosted/http/client.py", "becomes ComfyUI's interrupt"),
    "nodes.hosted.http.addresses.RefusedURL": ("nodes/hosted/http/client.py", "becomes a ProviderError"),
    "nodes.hosted.money.budget.LinkedInput": ("nodes/hosted/money/budget.py", "an input the estimate cannot read"),
    "nodes.hosted.money.ledger.LedgerUnavailable": ("nodes/hosted/money/budget.py", "becomes a BudgetExceeded"),
    "nodes.images.ImageDecodeError": (("nodes/hosted/node.py", "nodes/hosted/providers/segmind/api.py",
                                       "nodes/hosted/providers/sinkin/api.py"), "becomes a ProviderError or a miss"),
}


def defined_exceptions() -> dict[str, type]:
    """Every exception class defined under nodes/, by its dotted place in the pack."""
    found = {}
    for path in sorted((ROOT / "nodes").rglob("*.py")):
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        module = importlib.import_module(f"sdbridge.{dotted}")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.col_offset == 0:
                cls = getattr(module, node.name)
                if isinstance(cls, type) and issubclass(cls, BaseException):
                    found[f"{dotted}.{node.name}"] = cls
    return found


def test_every_exception_the_pack_defines_is_in_the_tree_or_internal():
    found = defined_exceptions()
    outside = {name for name, cls in found.items() if not issubclass(cls, errors.SDBridgeError)}
    assert outside == set(INTERNAL), "add the class to errors.py's tree, or here with where it is caught"
    assert len(found) - len(outside) >= 9  # the tree itself and its branches elsewhere


def test_each_internal_exception_is_caught_where_it_says():
    for name, (catchers, _) in INTERNAL.items():
        short = name.rsplit(".", 1)[1]
        for catcher in (catchers,) if isinstance(catchers, str) else catchers or ():
            source = (ROOT / catcher).read_text(encoding="utf-8")
            assert re.search(rf"except [^:]*\b{short}\b", source), f"{catcher} no longer catches {short}"


def test_every_error_in_the_tree_shows_as_sdbridge_on_comfyuis_card():
    for name, cls in defined_exceptions().items():
        if issubclass(cls, errors.SDBridgeError):
            assert cls.__module__ == errors.CARD_MODULE, name


def documented_tree() -> dict[str, tuple[str | None, str | None]]:
    """The drawing in errors.py's docstring: {class: (its parent, the builtin it is said to be)}."""
    drawn, stack = {}, []
    for line in errors.__doc__.splitlines():
        found = re.match(r"^( {4}[ │├└─]*)([A-Z]\w+)(?: \((\w+)\))?(?: |$)", line)  # an indented class name
        if not found:
            continue
        depth = len(found.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[found.group(2)] = (stack[-1][1] if stack else None, found.group(3))
        stack.append((depth, found.group(2)))
    return drawn


def test_the_drawn_tree_is_the_tree_of_classes():
    drawn = documented_tree()
    defined = {name: cls for name, cls in vars(errors).items()
               if isinstance(cls, type) and issubclass(cls, errors.SDBridgeError)}
    assert set(drawn) == set(defined)
    for name, (parent, builtin) in drawn.items():
        cls = defined[name]
        in_tree = [base.__name__ for base in cls.__bases__ if issubclass(base, errors.SDBridgeError)]
        assert in_tree == ([parent] if parent else []), name
        if builtin:
            assert issubclass(cls, getattr(builtins, builtin)), name
