"""Runs a batch over servers: the least loaded server with room gets the next job; a job whose
server stops answering before its images are saved goes to another; Ctrl-C withdraws ours.

One thread (the caller's) decides everything; each server's `Follower` reports events to it on one
queue, so a job's outcome is settled in one place, once. A job is in exactly one of: waiting,
in flight on one server (one prompt id), or finished in the manifest.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from . import preflight, reasons
from .follow import Event, Follower
from .jobs import Job, node_types
from .manifest import Manifest
from .progress import Progress
from .server import Refused, Server, Unreachable


class Stop(Exception):
    """The batch cannot go on (a refused workflow when running one job): the message says why."""


@dataclass
class Attempt:
    job: Job
    server: Server
    prompt_id: str
    queued: float = field(default_factory=time.monotonic)
    running: bool = False
    step: tuple | None = None


@dataclass
class Settings:
    out: Path
    depth: int = 2              # jobs of ours queued on one server at a time
    timeout: float = 900.0      # seconds from queueing a job to its images saved
    use_websocket: bool = True
    check_every: float = 5.0    # with the websocket open; polling asks every poll_every
    poll_every: float = 0.5
    revive_every: float = 5.0   # how often a server that left the batch is asked whether it is back
    wait: float = 60.0          # how long jobs wait for a server to come back when none is left
    name: str = "workflow"      # the workflow's file name, for the lines printed
    single: bool = False        # one job, run as the runner always has: its own lines, file names


class Batch:
    def __init__(self, servers: list[Server], jobs: list[Job], manifest: Manifest, progress: Progress,
                 settings: Settings):
        self.servers, self.jobs, self.manifest, self.progress, self.settings = (
            servers, jobs, manifest, progress, settings)
        self.client_id = uuid.uuid4().hex
        self.events: queue.Queue[Event] = queue.Queue()
        self.waiting: deque[Job] = deque(jobs)
        self.in_flight: dict[tuple[str, str], Attempt] = {}
        self.live: list[Server] = list(servers)
        self.followers: dict[str, Follower] = {}
        self.resting: dict[str, float] = {}  # server -> until when it gets no job (just failed a call)
        self.left: dict[str, float] = {}     # server that left -> when to ask it again
        self.asking: set[str] = set()        # servers being asked right now
        self.abandoned: dict[str, list[str]] = {}  # server -> our prompt ids moved away from it
        self.none_since: float | None = None
        self.node_types = node_types(jobs[0].prompt) if jobs else set()
        self.resent: dict[int, list[dict]] = {}
        self.tries: dict[int, int] = {}
        self.max_tries = len(servers) + 2
        self.width = len(str(len(jobs)))

    # What the caller runs

    def run(self) -> int:
        """0 when every job is done, 1 when some failed, 130 after Ctrl-C (ours withdrawn)."""
        self.progress.update(force=True, servers=len(self.live))
        for server in self.servers:
            self._follow(server)
        try:
            self._loop()
        except KeyboardInterrupt:
            self._withdraw()
            return 130
        finally:
            for follower in self.followers.values():
                follower.stop()
            for follower in self.followers.values():
                follower.join(timeout=2)
            self.manifest.close()
            self.progress.close()
        counts = self.manifest.counts()
        return 0 if counts.get("done", 0) == len(self.jobs) else 1

    def _follow(self, server: Server) -> None:
        follower = Follower(server, self.client_id, self.events, self.settings.out,
                            use_websocket=self.settings.use_websocket, check_every=self.settings.check_every,
                            poll_every=self.settings.poll_every)
        self.followers[server.url] = follower
        follower.start()

    def _loop(self) -> None:
        changed, dispatched = True, 0.0
        while self.waiting or self.in_flight:
            self._ask_those_that_left()
            if self.live:
                self.none_since = None
            elif self.none_since is None:
                self.none_since = time.monotonic()
                if self.settings.wait > 0:
                    self.progress.say(f"no server left; waiting up to {self.settings.wait:.0f} s for one to come back",
                                      always=True)
            if not self.live and time.monotonic() - self.none_since >= self.settings.wait:
                for job in list(self.waiting):
                    self._record(job, "failed", error="no server left to run it: every server stopped answering")
                self.waiting.clear()
                return
            if changed or time.monotonic() - dispatched >= 0.5:
                self._dispatch()
                changed, dispatched = False, time.monotonic()
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                event = None
            for _ in range(1000):  # everything that arrived, then dispatch again
                if event is None:
                    break
                changed = changed or event.kind not in ("progress", "started")  # nothing freed by those
                self._handle(event)
                try:
                    event = self.events.get_nowait()
                except queue.Empty:
                    event = None
            self._give_up_late_ones()
            self._show()

    # Sending

    def _dispatch(self) -> None:
        """While jobs wait: the servers' loads (running + waiting, from /queue: ours included, asked
        once per round, plus what this round sent); the least loaded gets the next job if it has
        room (fewer than `depth` of ours), else the job waits for it."""
        now = time.monotonic()
        ready = [s for s in self.live if self.resting.get(s.url, 0) <= now]
        ours = self._ours()
        if not self.waiting or not any(ours[s.url] < self.settings.depth for s in ready):
            return
        loads = {}
        for server in ready:
            try:
                running, pending = server.queue(timeout=5)
                loads[server.url] = len(running) + len(pending)
            except Unreachable:
                self._rest(server)
            except Refused:  # no /queue (an old or a stripped-down server): count ours only
                loads[server.url] = ours[server.url]
        for _ in range(len(self.waiting)):
            if not self.waiting or not loads:
                return
            least = min(loads.values())
            room = [s for s in ready if loads.get(s.url) == least and ours[s.url] < self.settings.depth]
            if not room:
                return  # the least loaded server has enough of ours: the next finished job frees it
            server = min(room, key=lambda s: ours[s.url])
            if self._send(self.waiting.popleft(), server):
                loads[server.url] += 1
                ours[server.url] += 1
            else:
                loads.pop(server.url, None)  # refused the job or could not be reached: ask again next round

    def _ours(self) -> dict[str, int]:
        ours = {s.url: 0 for s in self.servers}
        for attempt in self.in_flight.values():
            ours[attempt.server.url] += 1
        return ours

    def _rest(self, server: Server) -> None:
        """A call to `server` failed: no job for 2 s, and its follower checks it now (and reports
        it down when it stays unreachable)."""
        self.resting[server.url] = time.monotonic() + 2.0
        self.followers[server.url].check_soon()

    def _submit(self, job: Job, server: Server) -> None:
        self.tries[job.index] = self.tries.get(job.index, 0) + 1
        follower, chosen = self.followers[server.url], uuid.uuid4().hex
        prefix = "" if self.settings.single else f"{job.index:0{self.width}d}_"
        follower.track(chosen, prefix)
        try:
            prompt_id = server.submit(job.prompt, self.client_id, chosen)
        except (Refused, Unreachable):
            follower.untrack(chosen)
            raise
        except KeyboardInterrupt:  # it may have been queued: withdraw it with the others
            self.in_flight[(server.url, chosen)] = Attempt(job, server, chosen)
            raise
        if prompt_id != chosen:  # an older ComfyUI chose its own id
            follower.untrack(chosen)
            follower.track(prompt_id, prefix)
        self.in_flight[(server.url, prompt_id)] = Attempt(job, server, prompt_id)
        if self.settings.single:
            self.progress.say(f"queued {self.settings.name} as {prompt_id} on {server.url}")

    def _send(self, job: Job, server: Server) -> bool:
        """True when `server` queued the job."""
        try:
            self._submit(job, server)
            return True
        except Refused as exc:
            lines = reasons.refusal(exc.answer)
            if self.settings.single:
                raise Stop("ComfyUI refused the workflow:\n" + "\n".join(lines)) from None
            self.progress.say(f"{self._tag(job)}refused by {server.url}: " + "\n".join(lines), always=True)
            self._record(job, "refused", server=server.url, error="\n".join(lines))
        except Unreachable as exc:
            self._rest(server)
            self._again(job, f"could not queue it on {server.url}: {exc}")
        return False

    def _again(self, job: Job, why: str) -> None:
        """Back to the front of the line, unless it has been tried on enough servers."""
        if self.tries.get(job.index, 0) >= self.max_tries:
            self._record(job, "failed", error=f"tried {self.tries[job.index]} times; last: {why}")
        else:
            self.waiting.appendleft(job)

    # Hearing back

    def _handle(self, event: Event) -> None:
        if event.kind == "down":
            self._server_down(event.server, str(event.data))
            return
        if event.kind in ("back", "still away"):
            self._answered(event)
            return
        attempt = self.in_flight.get((event.server, event.prompt_id))
        if attempt is None:
            return  # a prompt given up on, or a server already left
        job = attempt.job
        if event.kind == "started":
            attempt.running = True
            if self.settings.single:
                self.progress.say("running")
        elif event.kind == "progress":
            attempt.running, attempt.step = True, event.data
        elif event.kind == "done":
            del self.in_flight[(event.server, event.prompt_id)]
            files = event.data
            if self.settings.single:
                for path in files:
                    self.progress.say(f"saved {path}")
            else:
                self.progress.say(f"{self._tag(job)}done on {event.server} in {time.monotonic() - attempt.queued:.1f} s: "
                                  + (", ".join(p.name for p in files) or "no images"))
            self._record(job, "done", attempt, images=[p.name for p in files])
        elif event.kind == "failed":
            del self.in_flight[(event.server, event.prompt_id)]
            if self.settings.single:
                raise Stop(str(event.data))
            self.progress.say(f"{self._tag(job)}failed on {event.server}: {event.data}", always=True)
            self._record(job, "failed", attempt, error=str(event.data))
        elif event.kind == "lost":
            del self.in_flight[(event.server, event.prompt_id)]
            self._note_resent(attempt, str(event.data))
            self._again(job, f"{event.server} lost it")

    def _server_down(self, url: str, why: str) -> None:
        if url in self.left:
            return
        self.live = [s for s in self.live if s.url != url]
        self.left[url] = time.monotonic() + self.settings.revive_every
        self.followers[url].stop()
        moved = [a for key, a in self.in_flight.items() if key[0] == url]
        for attempt in sorted(moved, key=lambda a: a.job.index, reverse=True):
            self.followers[url].untrack(attempt.prompt_id)
            del self.in_flight[(url, attempt.prompt_id)]
            self.abandoned.setdefault(url, []).append(attempt.prompt_id)
            self._note_resent(attempt, why)
            self._again(attempt.job, f"{url} stopped answering")
        tail = f"; its {len(moved)} job{'s' if len(moved) != 1 else ''} go to another" if moved else ""
        self.progress.say(f"server {url} left the batch: {why}{tail}", always=True)

    def _ask_those_that_left(self) -> None:
        """Every `revive_every` seconds, on a thread of its own, whether a server that left is back."""
        now = time.monotonic()
        for url, when in self.left.items():
            if when > now or url in self.asking:
                continue
            self.asking.add(url)
            server = next(s for s in self.servers if s.url == url)

            def ask(server: Server = server) -> None:
                verdict = preflight.check(server, self.node_types)
                self.events.put(Event("back" if verdict is None else "still away", server.url, data=verdict))

            threading.Thread(target=ask, daemon=True, name=f"ask {url}").start()

    def _answered(self, event: Event) -> None:
        self.asking.discard(event.server)
        if event.server not in self.left:
            return
        if event.kind == "still away":
            self.left[event.server] = time.monotonic() + self.settings.revive_every
            return
        del self.left[event.server]
        server = next(s for s in self.servers if s.url == event.server)
        # What it still holds of ours was sent elsewhere: withdraw it, so it is not made twice.
        self._cancel_on_server(server, self.abandoned.pop(event.server, []))
        self._follow(server)
        self.live = [s for s in self.servers if s.url not in self.left]
        self.progress.say(f"server {event.server} is back in the batch", always=True)

    def _note_resent(self, attempt: Attempt, why: str) -> None:
        self.resent.setdefault(attempt.job.index, []).append(
            {"server": attempt.server.url, "prompt_id": attempt.prompt_id, "why": why})

    def _give_up_late_ones(self) -> None:
        now = time.monotonic()
        for key, attempt in list(self.in_flight.items()):
            if now - attempt.queued < self.settings.timeout:
                continue
            self.followers[key[0]].untrack(attempt.prompt_id)
            del self.in_flight[key]
            self._cancel_on_server(attempt.server, [attempt.prompt_id])
            why = f"gave up after {self.settings.timeout:.0f} s; the prompt {attempt.prompt_id} may still finish in ComfyUI"
            if self.settings.single:
                raise Stop(why)
            self.progress.say(f"{self._tag(attempt.job)}{why}", always=True)
            self._record(attempt.job, "failed", attempt, error=why)

    # Ctrl-C

    def _withdraw(self) -> None:
        """Stop sending; delete our waiting prompts, interrupt our running ones (only ours)."""
        for _ in range(1000):  # what finished before the Ctrl-C counts as finished
            try:
                self._handle(self.events.get_nowait())
            except (queue.Empty, Stop):
                break
        self.progress.say(f"stopping: withdrawing {len(self.in_flight)} queued job(s) of this batch", always=True)
        by_server: dict[str, list[Attempt]] = {}
        for attempt in self.in_flight.values():
            by_server.setdefault(attempt.server.url, []).append(attempt)
        for attempts in by_server.values():
            for attempt in attempts:
                self.followers[attempt.server.url].untrack(attempt.prompt_id)
            self._cancel_on_server(attempts[0].server, [a.prompt_id for a in attempts])
        for attempt in sorted(self.in_flight.values(), key=lambda a: a.job.index):
            self._record(attempt.job, "cancelled", attempt, error="stopped by Ctrl-C")
        self.in_flight.clear()
        for job in self.waiting:
            self._record(job, "not run", error="stopped by Ctrl-C before it was sent")
        self.waiting.clear()
        for job in self.jobs:  # one caught between two of those places by the Ctrl-C: listed all the same
            if job.index not in self.manifest.entries:
                self._record(job, "cancelled", error="stopped by Ctrl-C")

    def _cancel_on_server(self, server: Server, prompt_ids: list[str]) -> None:
        try:
            if not prompt_ids:
                return
            running, _ = server.queue(timeout=3)
            if any(p not in running for p in prompt_ids):
                server.delete([p for p in prompt_ids if p not in running])
            for prompt_id in prompt_ids:
                if prompt_id in running:
                    server.interrupt(prompt_id)
        except (Unreachable, Refused):
            pass  # gone or too old: nothing more to withdraw there

    # Bookkeeping

    def _record(self, job: Job, status: str, attempt: Attempt | None = None, server: str | None = None,
                images: list[str] | None = None, error: str | None = None) -> None:
        self.manifest.record({
            "index": job.index, "status": status, "overrides": job.overrides,
            "server": attempt.server.url if attempt else server,
            "prompt_id": attempt.prompt_id if attempt else None,
            "images": images or [],
            "seconds": round(time.monotonic() - attempt.queued, 3) if attempt else None,
            "error": error, "resent": self.resent.get(job.index, []),
        })

    def _tag(self, job: Job) -> str:
        return f"[{job.index:>{self.width}}/{len(self.jobs)}] "

    def _show(self) -> None:
        counts = self.manifest.counts()
        running = [a for a in self.in_flight.values() if a.running]
        self.progress.update(finished=sum(counts.values()), failed=len(self.manifest.entries) - counts.get("done", 0),
                             running=len(running), queued=len(self.in_flight) - len(running), servers=len(self.live),
                             steps=[a.step for a in running if a.step])
