"""Loads the pack exactly as ComfyUI does: by file path, as a package named after its folder
("sdbridge"), so the tests exercise the relative imports users get."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests' own helpers (loopback, ...)


def _load_pack():
    if "sdbridge" in sys.modules:
        return sys.modules["sdbridge"]
    spec = importlib.util.spec_from_file_location(
        "sdbridge", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["sdbridge"] = module
    spec.loader.exec_module(module)
    return module


PACK = _load_pack()


@pytest.fixture
def pack():
    return PACK


@pytest.fixture(autouse=True)
def _isolated_user_dir(tmp_path, monkeypatch):
    """Every test gets its own user directory and no provider keys or base URLs from the
    machine, and starts uninterrupted."""
    monkeypatch.setenv("SDBRIDGE_USER_DIR", str(tmp_path / "user"))
    for name in ("SEGMIND_API_KEY", "SINKIN_API_KEY", "SEGMIND_API_BASE", "SINKIN_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    from sdbridge.nodes import runtime

    runtime.request_interrupt(False)
    yield
    runtime.request_interrupt(False)


@pytest.fixture
def pack_log(caplog):
    """Everything the pack logs during a test, at every level."""
    caplog.set_level(logging.DEBUG, logger="sdbridge")
    return caplog
