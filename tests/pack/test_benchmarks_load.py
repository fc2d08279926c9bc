"""The benchmarks run outside the test suite; this keeps them loadable: each one's imports
resolve against the pack's current layout (a moved module breaks them here, not in a user's run)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))

LOAD = """
import importlib.util, sys
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("bench", sys.argv[2])
module = importlib.util.module_from_spec(spec)
sys.argv = [sys.argv[2], "--help"]
try:
    spec.loader.exec_module(module)  # defines; each benchmark runs only under __main__
except SystemExit:
    pass
print("loaded")
"""


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_benchmark_loads(name):
    folder = ROOT / "benchmarks"
    result = subprocess.run([sys.executable, "-c", LOAD, str(folder), str(folder / f"{name}.py")],
                            capture_output=True, text=True, timeout=300, cwd=folder)
    assert result.returncode == 0 and "loaded" in result.stdout, result.stderr[-2000:]
