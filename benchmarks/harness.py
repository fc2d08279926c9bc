"""Import this first in a benchmark: it makes the tests' helpers (tests/support, tests/fakes)
importable and loads the pack as "sdbridge", exactly as the tests do."""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
importlib.import_module("conftest")

# The benchmarks measure the way to the provider and back: runs repeating one request with a
# fixed seed would otherwise be answered by the result cache after the first.
from sdbridge.nodes.hosted.store import result_cache  # noqa: E402  (loaded by conftest just above)

os.environ[result_cache.SWITCH_ENV] = "off"

# Whatever a benchmark writes (the journal, the spending ledger) goes to a folder of its own, never
# into the user's real one.
_USER_DIR = tempfile.mkdtemp(prefix="sdbridge-bench-")
os.environ["SDBRIDGE_USER_DIR"] = _USER_DIR
atexit.register(shutil.rmtree, _USER_DIR, ignore_errors=True)
