"""Seed ranges are declared once, in surface.py, and each node draws its random seed up to its own
seed widget's max; the widgets saved workflows hold keep their min, max and default."""

from __future__ import annotations

import re

from conftest import ROOT

from sdbridge.nodes import surface
from sdbridge.nodes.params import resolve_seed
from sdbridge.nodes.setup import NODES

# What saved workflows hold: these never change.
WIDGET_MAX = {"Segmind": 999_999_999_999_999, "SinkIn": 2**32 - 1, "Local": 2**53 - 1}


def _family(node) -> str:
    name = node.__name__
    return next(family for family in WIDGET_MAX if name.startswith(f"SDBridge{family}"))


def test_every_seed_widget_keeps_its_range_and_default():
    seeded = [node for node in NODES if "seed" in node.INPUT_TYPES()["required"]]
    assert len(seeded) >= 7
    for node in seeded:
        spec = node.INPUT_TYPES()["required"]["seed"][1]
        assert (spec["min"], spec["max"], spec["default"]) == (-1, WIDGET_MAX[_family(node)], -1), node.__name__


def test_each_node_draws_its_random_seed_up_to_its_own_widgets_max(monkeypatch):
    import secrets

    asked = []
    monkeypatch.setattr(secrets, "randbelow", lambda bound: asked.append(bound) or bound - 1)
    for node in NODES:
        if "seed" not in node.INPUT_TYPES()["required"]:
            continue
        assert resolve_seed(node.PARAMS, {"seed": -1}) == WIDGET_MAX[_family(node)], node.__name__
        assert resolve_seed(node.PARAMS, {"seed": 7}) == 7
    assert set(asked) == {maximum + 1 for maximum in WIDGET_MAX.values()}


def test_a_seed_range_is_declared_only_on_the_surface():
    declared = re.compile(r"^\s*\w*SEED\w*MAX\w*\s*=", re.MULTILINE)
    places = [path.relative_to(ROOT).as_posix()
              for folder in ("nodes", "tests/support") for path in (ROOT / folder).rglob("*.py")
              if declared.search(path.read_text(encoding="utf-8"))]
    assert places == ["nodes/surface.py"]
    assert surface.seed().max == surface.EDITOR_SEED_MAX
