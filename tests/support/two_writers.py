"""Two real processes saving into the same user folder at once: each makes `count` saves of its
own entry (read, change, write), starting together. After each save a writer reads the file and
counts the times its own entry was not what it just saved or the other's went backwards (a lost
update: a save overwritten by a stale copy); what the file holds at the end is checked by the test. Used for keys.json and
settings.json."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import importlib.util, sys, time
from pathlib import Path
root, kind, name, other, count, start = sys.argv[1:4] + [sys.argv[4], int(sys.argv[5]), Path(sys.argv[6])]
spec = importlib.util.spec_from_file_location("sdbridge", root + "/__init__.py", submodule_search_locations=[root])
pack = importlib.util.module_from_spec(spec); sys.modules["sdbridge"] = pack; spec.loader.exec_module(pack)
from sdbridge.nodes import pack_settings
from sdbridge.nodes.hosted.keys import credentials
from sdbridge.nodes.hosted.provider_table import PROVIDERS
(start.parent / f"ready-{name}").write_text("ready")
deadline = time.monotonic() + 60
while not start.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
highest, backwards = -1, 0
for n in range(count):
    if kind == "key":
        credentials.store_key(PROVIDERS[name], f"{name}-key-{n}")
        stored = credentials._read_key_file()
        mine = stored.get(name) == f"{name}-key-{n}"
        seen = int(stored.get(other, "none-key--1").rpartition("-key-")[2])
    else:
        pack_settings.store(name, f"{n}")
        stored = pack_settings._stored()
        mine = stored.get(name) == f"{n}"
        seen = int(stored.get(other, "-1"))
    backwards += (seen < highest) + (not mine)
    highest = max(highest, seen)
print(backwards)
"""


def race(root: Path, kind: str, names: tuple[str, str], count: int, tmp: Path) -> int:
    """Run one writer per name, together; the times either saw the other's entry go backwards.
    Fails with their stderr if one fails or takes > 120 s."""
    start = tmp / "start"
    writers = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(root), kind, name, other, str(count), str(start)],
                                env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, other in (names, names[::-1])]
    deadline = time.monotonic() + 90
    while not all((tmp / f"ready-{name}").exists() for name in names) and time.monotonic() < deadline:
        time.sleep(0.01)  # both have imported the pack: start them together
    start.write_text("go")
    backwards = 0
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err[-2000:]
        backwards += int(out.strip().splitlines()[-1])
    return backwards
