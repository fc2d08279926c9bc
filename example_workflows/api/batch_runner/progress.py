"""What the runner says: lines on stdout, and a one-line progress bar on stderr.

The bar is plain text redrawn with a carriage return (a Windows console shows it too); it is
drawn only when stderr is a terminal and --quiet is not given, at most ten times a second, and
cleared before each line is printed so the two never mix.
"""

from __future__ import annotations

import sys
import time


def clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total: int, quiet: bool = False, stream=None, out=None, bar: bool | None = None):
        self.total, self.quiet = total, quiet
        self.stream = stream or sys.stderr
        self.out = out or sys.stdout
        self.bar = (not quiet and self.stream.isatty()) if bar is None else bar
        self.started = time.monotonic()
        self._shown = 0
        self._last = 0.0
        self.state: dict = {"finished": 0, "failed": 0, "running": 0, "servers": 0, "step": None}

    def line(self, finished: int, failed: int, running: int, servers: int, step=None, width: int = 24) -> str:
        elapsed = time.monotonic() - self.started
        filled = int(width * finished / self.total) if self.total else width
        text = f"[{'#' * filled}{'-' * (width - filled)}] {finished}/{self.total}"
        if failed:
            text += f" ({failed} failed)"
        text += f" | {running} running on {servers} server{'s' if servers != 1 else ''}"
        if step and step[1]:
            text += f" | step {step[0]}/{step[1]}"
        text += f" | {clock(elapsed)}"
        if 0 < finished < self.total:
            text += f", ~{clock(elapsed / finished * (self.total - finished))} left"
        return text[:119]

    def update(self, force: bool = False, **state) -> None:
        self.state.update(state)
        if not self.bar or (not force and time.monotonic() - self._last < 0.1):
            return
        self._last = time.monotonic()
        self._draw(self.line(**self.state))

    def _draw(self, text: str) -> None:
        self.stream.write("\r" + text + " " * max(self._shown - len(text), 0))
        self.stream.flush()
        self._shown = len(text)

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0

    def say(self, text: str, always: bool = False) -> None:
        """A line on stdout (`always`: even with --quiet, e.g. errors and the summary)."""
        if self.quiet and not always:
            return
        self._clear()
        print(text, file=self.out, flush=True)
        if self.bar:
            self.update(force=True)

    def close(self) -> None:
        if self.bar:
            self.update(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self._shown = 0
