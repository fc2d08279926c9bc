"""Imported first by the runner's tests: the package runner/ at the repository root, loaded by its
file path as the pack is (tests/conftest.py), so `import runner` means that package wherever
pytest runs. (Not a conftest.py: the other tests import tests/conftest.py as `conftest`.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

if "runner" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("runner", ROOT / "runner" / "__init__.py",
                                                   submodule_search_locations=[str(ROOT / "runner")])
    sys.modules["runner"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["runner"])
