#!/usr/bin/env bash
# Sets up a virtual environment in .venv and runs the lint and the test suite.
# torch is pinned and installed first: a bare torch requirement would pull CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -r requirements-test.txt
ruff check .
lint-imports --no-cache  # the import contracts in pyproject.toml: imports go one way
python -m pytest tests "$@"
