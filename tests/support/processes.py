"""Two real processes at once, for what must hold across ComfyUI processes sharing one user
folder: each runs `body` after loading the pack as ComfyUI does, and they start together."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Prepended to every worker: argv is [root, worker number, a folder for the start barrier].
_PREAMBLE = """
import importlib.util, pathlib, sys, time
root, worker, ready = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
spec = importlib.util.spec_from_file_location("sdbridge", root + "/__init__.py", submodule_search_locations=[root])
pack = importlib.util.module_from_spec(spec); sys.modules["sdbridge"] = pack; spec.loader.exec_module(pack)
(ready / f"ready-{worker}").touch()
while len(list(ready.glob("ready-*"))) < 2:  # both loaded: start together
    time.sleep(0.01)
"""


def run_two_at_once(root: Path, body: str, folder: Path, timeout: float = 180) -> None:
    """Run `body` in two processes (`worker` is 1 or 2 in each) started together; fails with a
    worker's stderr when one fails or takes longer than `timeout`."""
    writers = [subprocess.Popen([sys.executable, "-c", _PREAMBLE + body, str(root), str(worker), str(folder)],
                                env=dict(os.environ), stderr=subprocess.PIPE, text=True) for worker in (1, 2)]
    for writer in writers:
        assert writer.wait(timeout=timeout) == 0, writer.stderr.read()[-3000:]
