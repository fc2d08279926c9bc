"""Import this first in a benchmark: it makes the tests' helpers (tests/support, tests/fakes)
importable and loads the pack as "sdbridge", exactly as the tests do."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
importlib.import_module("conftest")
