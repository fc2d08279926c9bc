"""Checks the import contracts in pyproject.toml with import-linter, on the pack as ComfyUI sees it:
the repository folder is the package `sdbridge` whatever the folder is called, so the package is
registered by path first (nothing of it is run). Exit code 0 when every contract holds.

    python tools/lint_imports.py [repository root]
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def register(root: Path) -> None:
    """Make `sdbridge` findable as the package at `root` without importing it."""
    spec = importlib.util.spec_from_file_location("sdbridge", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    sys.modules["sdbridge"] = importlib.util.module_from_spec(spec)


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else Path(__file__).resolve().parent.parent).resolve()
    register(root)
    from importlinter.cli import lint_imports

    return lint_imports(config_filename=str(root / "pyproject.toml"), no_cache=True, no_logo=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
