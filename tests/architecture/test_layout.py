"""The house rules that hold the layout together: imports go one way (the contracts in
pyproject.toml, checked by import-linter; a wrong arrow breaks them), nothing under nodes/
imports the package root, and importing any module only defines things."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest
from conftest import ROOT

# `lint-imports` as tools/test.sh runs it: from the repository root, which puts `nodes` and
# `runner` on the path.
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache"], cwd=root, capture_output=True, text=True,
                          timeout=120)


def test_the_import_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


@pytest.fixture
def copy_of_the_pack(tmp_path) -> Path:
    """The pack's code and contracts in a folder of its own, to break on purpose."""
    root = tmp_path / "pack"
    for folder in ("nodes", "runner"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("configs", "__pycache__", "*.json"))
    for name in ("__init__.py", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    return root


@pytest.mark.parametrize("module, line, broken", [
    # keys sit below the node base: a key module that reaches up breaks the hosted layers
    ("nodes/hosted/keys/credentials.py", "from ..node import HostedNode", "Hosted:"),
    # the HTTP layer is given a job store; it never imports the store itself
    ("nodes/hosted/http/jobs.py", "from ..store import journal", "Hosted:"),
    # one provider never imports another
    ("nodes/hosted/providers/sinkin/nodes.py", "from ..segmind import endpoints", "Each provider stands alone"),
    # an import hidden inside a function still counts (the cycles of old were hidden that way)
    ("nodes/pack_settings.py", "def _late():\n    from .hosted.money import caps  # noqa", "The pack:"),
])
def test_a_wrong_arrow_breaks_the_build(copy_of_the_pack, module, line, broken):
    path = copy_of_the_pack / module
    path.write_text(path.read_text() + "\n\n" + line + "\n")
    result = lint(copy_of_the_pack)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout, result.stdout


def test_a_cycle_between_siblings_breaks_the_build(copy_of_the_pack):
    path = copy_of_the_pack / "nodes/hosted/money/ledger.py"  # ledger <- prices already; the way back closes a circle
    path.write_text(path.read_text() + "\n\ndef _late():\n    from . import prices  # noqa\n")
    result = lint(copy_of_the_pack)
    assert result.returncode != 0 and "No cycle anywhere" in result.stdout and "BROKEN" in result.stdout


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("sdbridge", include_external_packages=False)


def test_nothing_under_nodes_imports_the_package_root():
    graph = _graph()
    importers = {module for module in graph.find_modules_that_directly_import("sdbridge")}
    assert not {m for m in importers if m.startswith("sdbridge.nodes")}


EFFECTS_SCRIPT = textwrap.dedent("""
    import importlib, importlib.util, logging, pkgutil, sys, threading
    root = sys.argv[1]
    spec = importlib.util.spec_from_file_location("sdbridge", root + "/__init__.py", submodule_search_locations=[root])
    sys.modules["sdbridge"] = importlib.util.module_from_spec(spec)  # the root itself is not run
    import sdbridge.nodes
    names = [m.name for m in pkgutil.walk_packages(sdbridge.nodes.__path__, "sdbridge.nodes.")]
    for name in names:
        importlib.import_module(name)
    from sdbridge.nodes import runtime
    from sdbridge.nodes.hosted.keys.redaction import LOGGERS
    filters = [name for name in LOGGERS if logging.getLogger(name).filters]
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    print(len(names), filters, threads, runtime._redactor, runtime._unload_callbacks, runtime._memory_callbacks)
    assert not filters and not threads and runtime._redactor is None
    assert not runtime._unload_callbacks and not runtime._memory_callbacks
    from sdbridge.nodes import setup
    assert setup.setup() is False  # outside ComfyUI no route is taken, but setup wires the rest
    assert runtime._redactor is not None and all(logging.getLogger(name).filters for name in LOGGERS)
    assert setup.setup() is False and len(logging.getLogger("sdbridge").filters) == 1  # once
""")


def test_importing_any_module_only_defines_things():
    result = subprocess.run([sys.executable, "-c", EFFECTS_SCRIPT, str(ROOT)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout.split()[0]) > 40  # every module was imported


def test_tests_pass_policies_in_and_patch_no_provider_module():
    """A run's pace reaches the provider through the node's Policies; a test that patched a
    provider module's global would change every node at once (and hide a missing parameter)."""
    patched = re.compile(r"setattr\(\s*(segmind_api|sinkin_api|standin\w*|[\w.]*\.(CLIENT|DOWNLOADS))\b")
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "tests").rglob("*.py"))
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if patched.search(line)]
    assert offenders == []
