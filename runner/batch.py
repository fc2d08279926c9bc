"""Runs a batch: carries out the schedule's actions with threads and sockets, feeds it events.

The caller's thread owns the state: it takes one event at a time from a queue, asks
`schedule.step` what to do, and hands each server call to that server's lanes (one thread for
its queue-API calls, one for its downloads, one for its receipts, each in order). A
`listen.Listener` per server reads its websocket. Nothing here decides anything: a runner bug is a row in
tests/runner/test_state_machine.py.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import files, hosted, listen, preflight, reasons, schedule
from .jobs import Job, node_types
from .manifest import Manifest
from .progress import Progress
from .server import Garbled, Refused, Server, TooLarge, Unreachable


class Stop(Exception):
    """The batch cannot go on (a refused workflow when running one job): the message says why."""


@dataclass
class Settings:
    out: Path
    depth: int = 2
    timeout: float = 900.0
    use_websocket: bool = True
    wait: float = 60.0
    name: str = "workflow"
    single: bool = False
    check_every: float = 5.0
    poll_every: float = 0.5
    revive_every: float = 5.0
    receipts_timeout: float = 10.0  # seconds for one /sdbridge/receipts answer
    receipts_wait: float = 15.0     # seconds a finished job waits for its receipts in all


class Lane(threading.Thread):
    """One server's calls of one kind, made in order on a thread of their own."""

    def __init__(self, name: str, do, events: queue.Queue):
        super().__init__(daemon=True, name=name)
        self.do, self.events = do, events
        self.todo: queue.Queue = queue.Queue()
        self.stopping = threading.Event()

    def put(self, action) -> None:
        self.todo.put(action)

    def stop(self) -> None:
        self.stopping.set()
        self.todo.put(None)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                action = self.todo.get(timeout=0.1)
            except queue.Empty:
                continue
            if action is None:  # woken to stop
                return
            for event in self.do(action):
                self.events.put(event)


class Batch:
    def __init__(self, servers: list[Server], jobs: list[Job], manifest: Manifest, progress: Progress,
                 settings: Settings):
        self.servers = {server.url: server for server in servers}
        self.jobs = {job.index: job for job in jobs}
        self.manifest, self.progress, self.settings = manifest, progress, settings
        self.events: queue.Queue = queue.Queue()
        self.node_types = node_types(jobs[0].prompt) if jobs else set()
        self.reserved = files.reserve(manifest.path, files.part(manifest.path))
        self.rules = schedule.Rules(
            tuple(self.servers), len(jobs), depth=settings.depth, timeout=settings.timeout, wait=settings.wait,
            single=settings.single, name=settings.name, check_every=settings.check_every,
            poll_every=settings.poll_every, revive_every=settings.revive_every, receipts_wait=settings.receipts_wait)
        self.state = schedule.start(self.rules, str(uuid.uuid4()))
        self.calls = {url: Lane(f"calls {url}", self._call, self.events) for url in self.servers}
        self.downloads = {url: Lane(f"downloads {url}", self._download, self.events) for url in self.servers}
        self.receipts = {url: Lane(f"receipts {url}", self._receipts, self.events) for url in self.servers}
        self.listeners: dict[str, listen.Listener] = {}
        self.stopping = threading.Event()
        self.result: schedule.Stop | None = None

    # What the caller runs

    def run(self) -> int:
        """0 when every job is done, 1 when some failed, 130 after Ctrl-C (ours withdrawn)."""
        if self.settings.use_websocket and not listen.available():
            self.progress.say("websocket-client is not installed: following the jobs by polling "
                              "(pip install -r runner/requirements.txt)", always=True)
            self.settings.use_websocket = False
        for lane in self._lanes():
            lane.start()
        try:
            self._feed(schedule.Begin())
            # Every flight ends by its timeout, and waiting jobs go or fail after --wait: it ends.
            while self.result is None:
                try:
                    event = self.events.get(timeout=0.1)
                except queue.Empty:
                    event = schedule.Tick()
                self._feed(event)
        except KeyboardInterrupt:
            self._interrupted()
            return 130
        finally:
            self._shut_down()
        if self.result.message is not None:
            raise Stop(self.result.message)
        return self.result.code

    def _feed(self, event) -> None:
        self.state, actions = schedule.step(self.state, event, time.monotonic())
        for action in actions:
            self._act(action)
        self.progress.update(**schedule.counts(self.state))

    def _act(self, action) -> None:
        if isinstance(action, schedule.Record):
            self.manifest.record({
                "index": action.job, "status": action.status, "overrides": self.jobs[action.job].overrides,
                "server": action.server, "prompt_id": action.prompt_id, "images": list(action.images),
                "seconds": action.seconds, "error": action.error, "resent": list(action.resent),
                "hosted": list(action.hosted) if action.hosted is not None else None, "hosted_cost": action.cost,
                "hosted_error": action.hosted_why})
        elif isinstance(action, schedule.Say):
            self.progress.say(action.text, always=action.always)
        elif isinstance(action, schedule.Stop):
            self.result = action
        elif isinstance(action, schedule.Follow):
            self._follow(action.server)
        elif isinstance(action, schedule.Unfollow):
            listener = self.listeners.pop(action.server, None)
            if listener is not None:
                listener.stop()
        elif isinstance(action, schedule.Discard):
            for name in action.files:
                Path(name).unlink(missing_ok=True)
        elif isinstance(action, schedule.Download):
            self.downloads[action.server].put(action)
        elif isinstance(action, schedule.AskReceipts):
            self.receipts[action.server].put(action)
        else:  # Submit, AskQueue, FetchHistory, Withdraw, AskBack
            self.calls[action.server].put(action)

    def _lanes(self) -> list[Lane]:
        return [*self.calls.values(), *self.downloads.values(), *self.receipts.values()]

    def _follow(self, url: str) -> None:
        if self.settings.use_websocket and not self.stopping.is_set():
            listener = listen.Listener(url, self.state.client_id, self.events)
            self.listeners[url] = listener
            listener.start()

    # Ctrl-C, and the end

    def _interrupted(self) -> None:
        """What finished before the Ctrl-C counts as finished; then ours are withdrawn, in this
        thread (a second Ctrl-C ends that; the manifest is written all the same)."""
        self.stopping.set()
        for lane in self.calls.values():  # a submit under way: its answer comes before we withdraw
            lane.stopping.set()
        deadline = time.monotonic() + 10
        for lane in self.calls.values():
            lane.join(timeout=max(deadline - time.monotonic(), 0))
        for _ in range(10000):
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            self.state, actions = schedule.step(self.state, event, time.monotonic())
            for action in actions:
                if isinstance(action, (schedule.Record, schedule.Say, schedule.Discard)):
                    self._act(action)
        self.state, actions = schedule.step(self.state, schedule.Interrupted(), time.monotonic())
        for action in actions:
            if isinstance(action, schedule.Withdraw):
                withdraw(self.servers[action.server], action.prompt_ids)
            elif isinstance(action, (schedule.Record, schedule.Say)):
                self._act(action)
        for job in self.jobs:  # a row the Ctrl-C caught half written: listed all the same
            if job not in self.manifest.entries:
                self._act(schedule.Record(job, "cancelled", error="stopped by Ctrl-C"))

    def _shut_down(self) -> None:
        self.stopping.set()
        for thread in (*self.listeners.values(), *self._lanes()):
            thread.stop()
        for thread in (*self.listeners.values(), *self._lanes()):
            if thread.is_alive():
                thread.join(timeout=2)
        self.manifest.close()
        self.progress.close()

    # The lanes: one server call each, its outcome as events

    def _call(self, action) -> list:
        server = self.servers[action.server]
        try:
            if isinstance(action, schedule.Submit):
                return [self._submit(server, action)]
            if isinstance(action, schedule.AskQueue):
                try:
                    running, pending = server.queue(timeout=10)
                except Refused:  # answers, but without /queue: /history alone tells
                    return [schedule.Snapshot(server.url, known=False)]
                return [schedule.Snapshot(server.url, tuple(running), tuple(pending))]
            if isinstance(action, schedule.FetchHistory):
                try:
                    entry = server.history(action.prompt_id)
                except Refused:
                    entry = None
                except Garbled as exc:  # answered: how the prompt ended is unreadable, not unknown
                    entry = reasons.Unreadable(str(exc))
                return [schedule.History(server.url, action.prompt_id, entry)]
            if isinstance(action, schedule.Withdraw):
                withdraw(server, action.prompt_ids)
                return []
            if isinstance(action, schedule.AskBack):
                verdict = preflight.check(server, self.node_types)
                return [schedule.Back(server.url) if verdict is None else schedule.StillAway(server.url, verdict)]
        except Unreachable as exc:
            return [schedule.Unanswered(server.url, str(exc), getattr(action, "prompt_id", None))]
        except Exception as exc:  # never a dead lane: a call that broke is a call unanswered
            if isinstance(action, schedule.FetchHistory):
                return [schedule.History(server.url, action.prompt_id, reasons.Unreadable(repr(exc)))]
            return [schedule.Unanswered(server.url, repr(exc), getattr(action, "prompt_id", None))]
        return []

    def _submit(self, server: Server, action: schedule.Submit):
        try:
            actual = server.submit(self.jobs[action.job].prompt, self.state.client_id, action.prompt_id)
        except Refused as exc:
            return schedule.Refused(action.job, server.url, action.prompt_id, tuple(reasons.refusal(exc.answer)))
        except Unreachable as exc:
            return schedule.NotQueued(action.job, server.url, action.prompt_id, str(exc))
        return schedule.Queued(action.job, server.url, action.prompt_id, actual)

    def _receipts(self, action: schedule.AskReceipts) -> list:
        """What the prompt's hosted runs cost. Whatever goes wrong is the line's `hosted_error`,
        never a failed call: the server is not counted as failing, the job is not sent again."""
        server = self.servers[action.server]
        try:
            answer = server.receipts(action.prompt_id, timeout=self.settings.receipts_timeout)
            runs, totals = hosted.read(answer, action.prompt_id)
        except Refused as exc:
            why = (f"{server.url} has no {hosted.ROUTE} (HTTP {exc.status}): SD Bridge is not installed there, or "
                   "is older than the receipts" if exc.status == 404 else f"{hosted.ROUTE} answered HTTP {exc.status}")
        except hosted.Unreadable as exc:
            why = f"{hosted.ROUTE} answered something that is not SD Bridge's receipts: {exc}"
        except Garbled as exc:
            why = str(exc)
        except Unreachable as exc:
            why = f"no answer from {hosted.ROUTE}: {exc}"
        except Exception as exc:  # never a dead lane
            why = f"{hosted.ROUTE} could not be read: {type(exc).__name__}"
        else:
            return [schedule.Receipts(server.url, action.prompt_id, tuple(runs), totals)]
        return [schedule.Receipts(server.url, action.prompt_id, None, why=why)]

    def _download(self, action: schedule.Download) -> list:
        server = self.servers[action.server]
        try:
            saved = files.save_all(server, action.images, self.settings.out, action.prefix, self.reserved,
                                   stopping=self.stopping.is_set)
        except Unreachable as exc:
            return [schedule.NotSaved(server.url, action.prompt_id, str(exc), final=False)]
        except Refused as exc:
            return [schedule.NotSaved(server.url, action.prompt_id, f"an image could not be fetched ({exc.status})",
                                      final=True)]
        except TooLarge as exc:
            return [schedule.NotSaved(server.url, action.prompt_id, str(exc), final=True)]
        except Exception as exc:  # the disk (full, not writable) or anything else: trying again cannot help
            return [schedule.NotSaved(server.url, action.prompt_id, f"{type(exc).__name__}: {exc}", final=True)]
        return [schedule.Saved(server.url, action.prompt_id, tuple(str(path) for path in saved))]


def withdraw(server: Server, prompt_ids: tuple[str, ...]) -> None:
    """Delete those of `prompt_ids` waiting in the server's queue, interrupt the one running:
    only these (another client's running prompt is never interrupted)."""
    try:
        if not prompt_ids:
            return
        running, _ = server.queue(timeout=3)
        waiting = [p for p in prompt_ids if p not in running]
        if waiting:
            server.delete(waiting)
        for prompt_id in prompt_ids:
            if prompt_id in running:
                server.interrupt(prompt_id)
    except (Unreachable, Refused):
        pass  # gone or too old: nothing more to withdraw there
