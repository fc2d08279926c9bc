"""Benchmark of the batch runner (runner/, as submit.py runs it): 20 jobs of 1 s each on one
fake ComfyUI server, then spread over four, on the loopback (tests/fakes/comfyui.py).

Run: .venv/bin/python benchmarks/bench_runner.py   (not part of the pytest run)

It prints each wall time against its ideal (20 s on one server, 5 s on four: the servers never
wait for a job and no job waits for a free server) and the ratio four/one, whose ideal is 0.25.
The runner keeps --depth jobs (2) queued on each server, so a server starts its next job as soon
as one ends; what is left over the ideal is the first submissions, the last job's images and the
fake's own few milliseconds a job.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import tempfile
import time
from contextlib import ExitStack

import harness  # noqa: F401  (first: the tests' helpers and the pack, as the tests load them)
from fakes.comfyui import FakeComfyUI

# submit.py as users run it: by its path (it finds runner/ at the repository root itself).
_spec = importlib.util.spec_from_file_location("submit", harness.ROOT / "example_workflows" / "api" / "submit.py")
submit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(submit)

JOBS, SECONDS = 20, 1.0


def run(servers: int) -> float:
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sdbridge-bench-runner-") as out:
        fakes = [stack.enter_context(FakeComfyUI(duration=SECONDS, steps=10)) for _ in range(servers)]
        started = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()):  # its summary line
            code = submit.main(["segmind_sdxl_panda.json", "--seeds", f"1-{JOBS}", "--out", out, "--quiet",
                                *[item for fake in fakes for item in ("--server", fake.url)]])
        elapsed = time.monotonic() - started
        ran = [len(fake.finished) for fake in fakes]
    if code != 0 or sum(ran) != JOBS:
        raise SystemExit(f"the batch on {servers} server(s) did not finish cleanly: exit {code}, ran {ran}")
    ideal = JOBS * SECONDS / servers
    print(f"{servers} server{'s' if servers > 1 else ''}: {elapsed:5.2f} s for {JOBS} jobs of {SECONDS:.0f} s "
          f"(ideal {ideal:.0f} s, {elapsed / ideal:.3f}x), jobs per server {ran}")
    return elapsed


def main() -> None:
    one = run(1)
    four = run(4)
    print(f"ratio four/one: {four / one:.3f} (ideal 0.25)")


if __name__ == "__main__":
    main()
