#!/usr/bin/env python3
"""Submit one of these API-format workflows to ComfyUI, follow it, save its images; or a batch of
jobs spread over several ComfyUI servers. The runner itself is the package runner/ at the
repository root (README, "Driving it from scripts"); `python -m runner` there does the same.

    python submit.py segmind_sdxl_panda.json --set prompt="a red fox" --set seed=7
    python submit.py segmind_sdxl_panda.json --seeds 1-20 --server http://gpu1:8188 --server http://gpu2:8188
    python submit.py segmind_sdxl_panda.json --batch prompts.jsonl --out ./renders
"""

from __future__ import annotations

import sys
from pathlib import Path

# The one place that finds the runner: the repository root is two folders above this file.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402
from runner.jobs import apply_overrides  # noqa: E402, F401  (kept: scripts import it from here)

if __name__ == "__main__":
    sys.exit(main())
