"""What the runner says: lines on stdout, and a one-line progress bar on stderr.

The bar is tqdm's when tqdm is installed, else plain text redrawn with a carriage return (a
Windows console shows either); it is drawn only when stderr is a terminal and --quiet is not
given, at most ten times a second, and cleared before each line is printed so the two never mix.
"""

from __future__ import annotations

import sys
import time


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


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
        self.state: dict = {"finished": 0, "failed": 0, "running": 0, "queued": 0, "servers": 0, "steps": ()}
        tqdm = _tqdm() if self.bar else None
        self.tqdm = tqdm(total=total, file=self.stream, unit="job", mininterval=0.1, dynamic_ncols=True,
                         ascii=not _unicode(self.stream)) if tqdm else None

    def postfix(self, failed: int, running: int, queued: int, servers: int, steps=()) -> str:
        """What the tqdm bar shows after its count."""
        text = f"{failed} failed, " if failed else ""
        text += f"{running} running, {queued} queued on {servers} server{'s' if servers != 1 else ''}"
        shown = [f"{value}/{total}" for value, total in list(steps)[:4] if total]
        return text + (f", step{'s' if len(shown) > 1 else ''} {' '.join(shown)}" if shown else "")

    def line(self, finished: int, failed: int, running: int, queued: int, servers: int, steps=(),
             width: int = 24) -> str:
        """`steps`: (value, max) of each running job's current node, as ComfyUI reports it."""
        elapsed = time.monotonic() - self.started
        filled = int(width * finished / self.total) if self.total else width
        text = f"[{'#' * filled}{'-' * (width - filled)}] {finished}/{self.total}"
        if failed:
            text += f" ({failed} failed)"
        text += f" | {running} running, {queued} queued on {servers} server{'s' if servers != 1 else ''}"
        shown = [f"{value}/{total}" for value, total in list(steps)[:4] if total]
        if shown:
            text += f" | step{'s' if len(shown) > 1 else ''} {' '.join(shown)}"
        text += f" | {clock(elapsed)}"
        if 0 < finished < self.total:
            text += f", ~{clock(elapsed / finished * (self.total - finished))} left"
        return text[:119]

    def update(self, force: bool = False, **state) -> None:
        self.state.update(state)
        if not self.bar or (not force and time.monotonic() - self._last < 0.1):
            return
        self._last = time.monotonic()
        if self.tqdm is not None:
            finished = self.state["finished"]
            self.tqdm.set_postfix_str(self.postfix(**{k: v for k, v in self.state.items() if k != "finished"}),
                                      refresh=False)
            if finished != self.tqdm.n:
                self.tqdm.update(finished - self.tqdm.n)
            else:
                self.tqdm.refresh()
            return
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
        if self.tqdm is not None:
            self.tqdm.write(text, file=self.out)
            self.out.flush()
            return
        self._clear()
        print(text, file=self.out, flush=True)
        self._last = 0.0  # the bar comes back at the next update, with the counts this line changed

    def close(self) -> None:
        """The bar's last state stays on its line; lines after this one go below it."""
        if self.tqdm is not None:
            self.update(force=True)
            self.tqdm.close()
            self.tqdm, self.bar = None, False
        if self.bar:
            self.update(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self._shown = 0
            self.bar = False


def _unicode(stream) -> bool:
    """Whether `stream` can show tqdm's block characters (an old Windows code page cannot)."""
    try:
        "\u2588".encode(getattr(stream, "encoding", None) or "ascii")
    except (LookupError, UnicodeEncodeError):
        return False
    return True
