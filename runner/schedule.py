"""The batch's decisions as a pure function: `step(state, event, now) -> (state, actions)`.

No threads, sockets or clocks here: the shell (batch.py) carries out the actions and feeds back
what it heard as events, with the time. Every rule of the README's "How a batch runs" is one
branch below, and one row of tests/runner/test_state_machine.py:

- the least loaded server (running + waiting in its /queue, this batch's included) with fewer
  than `depth` of this batch's prompts gets the next job; while it is full, the job waits;
- a server that fails two calls in a row leaves the batch: its prompts whose images are not saved
  go to another; every `revive_every` seconds it is asked whether it is back, and when it is, what
  it still holds of the moved prompts is withdrawn;
- a prompt the server no longer knows (in neither its queue nor its history, three times, after
  a grace period) is sent again; a prompt that finished is never sent again, however its
  /history entry reads (an unreadable one is listed as failed);
- a refused or failed job is listed and not sent again; a job over `timeout` is withdrawn;
- a job whose prompt ran to its end is listed with what its hosted runs cost (the server's
  /sdbridge/receipts of the prompt), or without it and why after `receipts_wait`: finished all
  the same, never sent again;
- Ctrl-C withdraws only this batch's prompts and lists every job (exit 130);
- single-job mode: ComfyUI's own file names and a refused/failed/late job stops the run with its
  reason (the manifest is not written for it), as the one-job runner always did.

A job is in exactly one place: waiting, in flight on one server (one prompt id), or recorded.
States are frozen; their dicts are never changed in place (each step builds new ones).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from . import hosted, reasons

NOT_ASKED = "not asked: the job did not run to its end on a server"

# Events: what the shell heard.


@dataclass(frozen=True)
class Begin:
    """The batch starts."""


@dataclass(frozen=True)
class Queued:
    """POST /prompt accepted the job; `actual_id` is the id the server kept (older ones choose)."""
    job: int
    server: str
    prompt_id: str
    actual_id: str


@dataclass(frozen=True)
class Refused:
    """POST /prompt answered 4xx: ComfyUI's reasons as lines."""
    job: int
    server: str
    prompt_id: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class NotQueued:
    """POST /prompt could not be reached (refused, reset, timed out, 5xx)."""
    job: int
    server: str
    prompt_id: str
    why: str


@dataclass(frozen=True)
class Started:
    server: str
    prompt_id: str


@dataclass(frozen=True)
class Progress:
    server: str
    prompt_id: str
    value: int
    maximum: int


@dataclass(frozen=True)
class Ended:
    """The websocket says the prompt ended: its /history entry tells how."""
    server: str
    prompt_id: str


@dataclass(frozen=True)
class RunFailed:
    """An execution_error or execution_interrupted message."""
    server: str
    prompt_id: str
    reason: str


@dataclass(frozen=True)
class Snapshot:
    """GET /queue: the prompt ids running and waiting (`known` False: the server has no /queue)."""
    server: str
    running: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    known: bool = True


@dataclass(frozen=True)
class History:
    """GET /history/<id>: None when the server has no entry, else the entry as answered."""
    server: str
    prompt_id: str
    entry: object


@dataclass(frozen=True)
class Saved:
    server: str
    prompt_id: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class NotSaved:
    """The images could not be saved; `final` when trying again cannot help (404, too big, disk)."""
    server: str
    prompt_id: str
    why: str
    final: bool


@dataclass(frozen=True)
class Unanswered:
    """A /queue or /history call to the server failed (`prompt_id`: the history asked for)."""
    server: str
    why: str
    prompt_id: str | None = None


@dataclass(frozen=True)
class Socket:
    """The server's websocket opened or closed."""
    server: str
    open: bool


@dataclass(frozen=True)
class Back:
    """A server that left answers again and has the node types."""
    server: str


@dataclass(frozen=True)
class StillAway:
    server: str
    why: str


@dataclass(frozen=True)
class Receipts:
    """GET /sdbridge/receipts of a finished prompt: its hosted runs and their totals per provider,
    or None and `why` (no such route, an answer that is not the pack's, no answer)."""
    server: str
    prompt_id: str
    hosted: tuple[dict, ...] | None
    cost: dict | None = None
    why: str | None = None


@dataclass(frozen=True)
class Tick:
    """Time passed."""


@dataclass(frozen=True)
class Interrupted:
    """Ctrl-C."""


# Actions: what the shell does.


@dataclass(frozen=True)
class Submit:
    job: int
    server: str
    prompt_id: str


@dataclass(frozen=True)
class AskQueue:
    server: str


@dataclass(frozen=True)
class FetchHistory:
    server: str
    prompt_id: str


@dataclass(frozen=True)
class Download:
    server: str
    prompt_id: str
    images: tuple[dict, ...]
    prefix: str


@dataclass(frozen=True)
class Discard:
    """Delete files saved for a prompt given up on meanwhile."""
    files: tuple[str, ...]


@dataclass(frozen=True)
class AskReceipts:
    """Ask the server what the prompt's hosted runs cost (the pack's receipts)."""
    server: str
    prompt_id: str


@dataclass(frozen=True)
class Withdraw:
    """Delete these prompts from the server's queue, interrupt the one of them running: only these."""
    server: str
    prompt_ids: tuple[str, ...]


@dataclass(frozen=True)
class AskBack:
    server: str


@dataclass(frozen=True)
class Follow:
    """Open the server's websocket (and keep reopening it)."""
    server: str


@dataclass(frozen=True)
class Unfollow:
    server: str


@dataclass(frozen=True)
class Record:
    """One manifest row (the shell adds the job's overrides)."""
    job: int
    status: str
    server: str | None = None
    prompt_id: str | None = None
    images: tuple[str, ...] = ()
    seconds: float | None = None
    error: str | None = None
    resent: tuple[dict, ...] = ()
    hosted: tuple[dict, ...] | None = None  # the prompt's hosted runs, from its receipts
    cost: dict | None = None                # provider -> its total, in its own unit
    hosted_why: str | None = None           # why `hosted` is None


@dataclass(frozen=True)
class Say:
    text: str
    always: bool = False


@dataclass(frozen=True)
class Stop:
    """The batch is over: exit with `code`; `message` (single-job mode) says why it failed."""
    code: int
    message: str | None = None


# State


@dataclass(frozen=True)
class Rules:
    servers: tuple[str, ...]
    jobs: int                   # jobs 1..jobs
    depth: int = 2              # jobs of ours queued on one server at a time
    timeout: float = 900.0      # seconds from queueing a job to its images saved
    wait: float = 60.0          # how long jobs wait for a server to come back when none is left
    single: bool = False        # one job, as the one-job runner: its own lines and file names
    name: str = "workflow"      # the workflow's file name, for the lines said
    check_every: float = 5.0    # a server's /queue with its websocket open (or idle)
    poll_every: float = 0.5     # without it, while prompts of ours are there
    round_every: float = 0.5    # how often waiting jobs look for room when nothing changed
    revive_every: float = 5.0   # how often a server that left is asked whether it is back
    rest: float = 2.0           # no job for a server this long after a failed call
    misses: int = 3             # checks that find neither queue nor history: the prompt is lost
    grace: float = 5.0          # ... and not before this long after it was sent
    downloads: int = 3          # tries at saving one prompt's images
    receipts_wait: float = 15.0  # how long a finished job waits for its receipts before it is listed without

    @property
    def max_tries(self) -> int:
        return len(self.servers) + 2


@dataclass(frozen=True)
class Flight:
    """A job sent to one server as one prompt."""
    job: int
    server: str
    prompt_id: str
    queued_at: float
    confirmed: bool = False     # /prompt answered
    running: bool = False
    step: tuple[int, int] | None = None
    fetching: bool = False      # its /history asked for, no answer yet
    saving: bool = False        # its images being downloaded
    misses: int = 0
    downloads: int = 0


@dataclass(frozen=True)
class Seat:
    """One server as the batch sees it."""
    url: str
    live: bool = True
    failures: int = 0           # failed calls in a row
    rest_until: float = 0.0
    next_check: float = 0.0
    checking: bool = False
    socket: bool = False
    ask_at: float = 0.0         # when it left: when to ask whether it is back
    asking: bool = False
    abandoned: tuple[str, ...] = ()  # our prompts moved away from it
    running: frozenset = frozenset()  # its last /queue
    pending: frozenset = frozenset()
    known: bool = False         # it has answered /queue


@dataclass(frozen=True)
class Round:
    """Waiting jobs looking for room: the /queue of each ready server, asked once."""
    asked: frozenset
    loads: dict = field(default_factory=dict)


@dataclass(frozen=True)
class State:
    rules: Rules
    client_id: str
    waiting: tuple[int, ...]
    seats: dict                 # url -> Seat
    flights: dict = field(default_factory=dict)     # (url, prompt_id) -> Flight
    recorded: dict = field(default_factory=dict)    # job -> status
    tries: dict = field(default_factory=dict)       # job -> prompts sent
    resent: dict = field(default_factory=dict)      # job -> ({server, prompt_id, why}, ...)
    settling: dict = field(default_factory=dict)    # (url, prompt_id) -> (its Record, asked at): receipts asked
    round: Round | None = None
    dirty: bool = True          # something freed room since the last round
    next_round: float = 0.0
    none_since: float | None = None
    over: bool = False


def start(rules: Rules, client_id: str) -> State:
    return State(rules, client_id, tuple(range(1, rules.jobs + 1)), {url: Seat(url) for url in rules.servers})


def prompt_id(state: State, job: int) -> str:
    """The id this batch gives the job's next prompt: the same state gives the same id."""
    return str(uuid.uuid5(uuid.UUID(state.client_id), f"{job}.{state.tries.get(job, 0)}"))


def prefix(rules: Rules, job: int) -> str:
    return "" if rules.single else f"{job:0{len(str(rules.jobs))}d}_"


def tag(rules: Rules, job: int) -> str:
    return f"[{job:>{len(str(rules.jobs))}}/{rules.jobs}] "


def counts(state: State) -> dict:
    """What the progress bar shows."""
    running = [f for f in state.flights.values() if f.running]
    done = sum(1 for status in state.recorded.values() if status == "done")
    return {"finished": len(state.recorded), "failed": len(state.recorded) - done, "running": len(running),
            "queued": len(state.flights) - len(running), "servers": sum(s.live for s in state.seats.values()),
            "steps": [f.step for f in running if f.step]}


# The step


def step(state: State, event, now: float) -> tuple[State, list]:
    """The state after `event` at `now`, and what to do about it."""
    if state.over:
        return state, []
    act = _Step(state, now)
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(act, event)
    if not act.state.over:
        act.settle()
    return act.state, act.actions


class _Step:
    """One step's work: the state as it changes, and the actions it takes."""

    def __init__(self, state: State, now: float):
        self.state, self.now, self.actions = state, now, []
        self.rules = state.rules

    # Small helpers that replace a piece of the state

    def set(self, **changes) -> None:
        self.state = replace(self.state, **changes)

    def seat(self, url: str, **changes) -> Seat:
        seat = replace(self.state.seats[url], **changes)
        self.set(seats={**self.state.seats, url: seat})
        return seat

    def flight(self, key, **changes) -> Flight:
        flight = replace(self.state.flights[key], **changes)
        self.set(flights={**self.state.flights, key: flight})
        return flight

    def drop(self, key) -> Flight:
        flights = dict(self.state.flights)
        flight = flights.pop(key)
        self.set(flights=flights)
        return flight

    def say(self, text: str, always: bool = False) -> None:
        self.actions.append(Say(text, always))

    def record(self, job: int, status: str, flight: Flight | None = None, server: str | None = None,
               images: tuple[str, ...] = (), error: str | None = None, ask: bool = False) -> None:
        """List the job (once). With `ask` (its prompt ran to its end) its line waits for the
        prompt's receipts; the job counts as finished meanwhile and is never sent again."""
        if job in self.state.recorded:
            return  # a job is listed once
        self.set(recorded={**self.state.recorded, job: status}, dirty=True)
        record = Record(
            job, status, flight.server if flight else server, flight.prompt_id if flight else None, images,
            round(self.now - flight.queued_at, 3) if flight else None, error, self.state.resent.get(job, ()))
        if ask and flight is not None:
            self.set(settling={**self.state.settling, (flight.server, flight.prompt_id): (record, self.now)})
            self.actions.append(AskReceipts(flight.server, flight.prompt_id))
        else:
            self.actions.append(replace(record, hosted_why=NOT_ASKED))

    def listed(self, key, hosted: tuple[dict, ...] | None, cost: dict | None, why: str | None) -> None:
        """The line of a job that waited for its receipts, with them or with why not."""
        settling = dict(self.state.settling)
        record, _ = settling.pop(key)
        self.set(settling=settling)
        self.actions.append(replace(record, hosted=hosted, cost=cost if hosted is not None else None,
                                    hosted_why=None if hosted is not None else why or "no receipts"))

    def stop(self, code: int, message: str | None = None) -> None:
        self.set(over=True)
        self.actions.append(Stop(code, message))

    def again(self, job: int, why: str) -> None:
        """Back to the front of the line, unless it has been tried on enough servers."""
        tries = self.state.tries.get(job, 0)
        if tries >= self.rules.max_tries:
            self.record(job, "failed", error=f"tried {tries} times; last: {why}")
        else:
            self.set(waiting=(job, *self.state.waiting), dirty=True)

    def note_resent(self, flight: Flight, why: str) -> None:
        note = {"server": flight.server, "prompt_id": flight.prompt_id, "why": why}
        self.set(resent={**self.state.resent, flight.job: (*self.state.resent.get(flight.job, ()), note)})

    def fail_job(self, key, reason: str, headline: str = "failed on") -> None:
        """A run that ended badly (or an unreadable report of one): listed, never sent again."""
        flight = self.drop(key)
        if self.rules.single:
            self.stop(1, reason)
            return
        self.say(f"{tag(self.rules, flight.job)}{headline} {flight.server}: {reason}", always=True)
        self.record(flight.job, "failed", flight, error=reason, ask=True)

    def answered(self, url: str) -> None:
        if url in self.state.seats and self.state.seats[url].failures:
            self.seat(url, failures=0)

    # Settling: what time and the new state call for, after every event

    def settle(self) -> None:
        self.give_up_late_ones()
        if self.state.over:
            return
        self.give_up_receipts()
        self.ask_those_that_left()
        self.check_servers()
        self.wait_for_a_server()
        self.dispatch()
        if not self.state.waiting and not self.state.flights and not self.state.settling:
            done = sum(1 for status in self.state.recorded.values() if status == "done")
            self.stop(0 if done == self.rules.jobs else 1)

    def give_up_late_ones(self) -> None:
        late = sorted((f for f in self.state.flights.values() if self.now - f.queued_at >= self.rules.timeout),
                      key=lambda f: f.job)
        for url in dict.fromkeys(f.server for f in late):  # one withdrawal per server: waiting ones first
            self.withdraw(url, tuple(f.prompt_id for f in late if f.server == url))
        for flight in late:
            self.drop((flight.server, flight.prompt_id))
            why = (f"gave up after {self.rules.timeout:.0f} s; the prompt {flight.prompt_id} may still finish "
                   "in ComfyUI")
            if self.rules.single:
                self.stop(1, why)
                return
            self.say(f"{tag(self.rules, flight.job)}{why}", always=True)
            self.record(flight.job, "failed", flight, error=why)

    def give_up_receipts(self) -> None:
        """A job whose receipts do not come within `receipts_wait` is listed without them."""
        late = [key for key, (_, asked) in self.state.settling.items()
                if self.now - asked >= self.rules.receipts_wait]
        for key in sorted(late, key=lambda k: self.state.settling[k][0].job):
            self.listed(key, None, None, f"{hosted.ROUTE} did not answer within {self.rules.receipts_wait:.0f} s")

    def withdraw(self, url: str, prompt_ids: tuple[str, ...]) -> None:
        seat = self.state.seats[url]
        if seat.live:
            self.actions.append(Withdraw(url, prompt_ids))
        else:  # withdrawn when it comes back
            self.seat(url, abandoned=(*seat.abandoned, *prompt_ids))

    def ask_those_that_left(self) -> None:
        for url, seat in self.state.seats.items():
            if not seat.live and not seat.asking and seat.ask_at <= self.now:
                self.seat(url, asking=True)
                self.actions.append(AskBack(url))

    def check_servers(self) -> None:
        """Each live server's /queue now and then: every `poll_every` while prompts of ours are
        there and no websocket tells about them, else every `check_every`."""
        asked = self.state.round.asked if self.state.round else frozenset()
        for url, seat in self.state.seats.items():
            if not seat.live or seat.checking or url in asked or seat.next_check > self.now:
                continue
            ours = [f for f in self.state.flights.values() if f.server == url]
            if seat.socket and not ours:
                self.seat(url, next_check=self.now + self.rules.check_every)
                continue
            self.seat(url, checking=True)
            self.actions.append(AskQueue(url))

    def wait_for_a_server(self) -> None:
        if any(seat.live for seat in self.state.seats.values()):
            if self.state.none_since is not None:
                self.set(none_since=None)
            return
        if self.state.none_since is None:
            self.set(none_since=self.now)
            if self.rules.wait > 0 and self.state.waiting:
                self.say(f"no server left; waiting up to {self.rules.wait:.0f} s for one to come back", always=True)
        if self.now - self.state.none_since >= self.rules.wait:
            for job in self.state.waiting:
                self.record(job, "failed", error="no server left to run it: every server stopped answering")
            self.set(waiting=())

    def ours(self) -> dict[str, int]:
        ours = dict.fromkeys(self.state.seats, 0)
        for flight in self.state.flights.values():
            ours[flight.server] += 1
        return ours

    def dispatch(self) -> None:
        """While jobs wait: each round asks every ready server's /queue once; when all have
        answered, the least loaded with room gets the next job, and so on; while the least loaded
        is full, the jobs wait for it."""
        state, ours = self.state, self.ours()
        ready = [url for url, seat in state.seats.items() if seat.live and seat.rest_until <= self.now]
        if state.round is None:
            if (not state.waiting or not any(ours[url] < self.rules.depth for url in ready)
                    or not (state.dirty or self.now >= state.next_round)):
                return
            self.set(round=Round(frozenset(ready)), dirty=False)
            self.actions.extend(AskQueue(url) for url in ready if not state.seats[url].checking)  # one answer serves both
            return
        if state.round.asked:
            return  # answers still to come
        loads = dict(state.round.loads)
        self.set(round=None, next_round=self.now + self.rules.round_every)
        for _ in range(len(self.state.waiting)):
            live = {url: load for url, load in loads.items() if self.state.seats[url].live}
            if not self.state.waiting or not live:
                return
            least = min(live.values())
            room = [url for url in self.rules.servers if live.get(url) == least and ours[url] < self.rules.depth]
            if not room:
                return  # the least loaded server has enough of ours: the next finished job frees it
            url = min(room, key=lambda u: ours[u])
            self.send(self.state.waiting[0], url)
            loads[url] += 1
            ours[url] += 1

    def send(self, job: int, url: str) -> None:
        chosen = prompt_id(self.state, job)
        self.set(waiting=self.state.waiting[1:], tries={**self.state.tries, job: self.state.tries.get(job, 0) + 1},
                 flights={**self.state.flights, (url, chosen): Flight(job, url, chosen, self.now)})
        self.actions.append(Submit(job, url, chosen))


# Handlers, one per event


def _begin(act: _Step, event: Begin) -> None:
    act.actions.extend(Follow(url) for url in act.rules.servers)


def _queued(act: _Step, event: Queued) -> None:
    key = (event.server, event.prompt_id)
    act.answered(event.server)
    if key not in act.state.flights:  # given up on meanwhile (its server left, Ctrl-C): not ours to run
        act.withdraw(event.server, (event.actual_id,))
        return
    flight = act.drop(key)
    act.set(flights={**act.state.flights, (event.server, event.actual_id):
                     replace(flight, prompt_id=event.actual_id, confirmed=True)})
    if act.rules.single:
        act.say(f"queued {act.rules.name} as {event.actual_id} on {event.server}")


def _refused(act: _Step, event: Refused) -> None:
    key = (event.server, event.prompt_id)
    if key not in act.state.flights:
        return
    act.drop(key)
    text = "\n".join(event.lines)
    if act.rules.single:
        act.stop(1, "ComfyUI refused the workflow:\n" + text)
        return
    act.say(f"{tag(act.rules, event.job)}refused by {event.server}: {text}", always=True)
    act.record(event.job, "refused", server=event.server, error=text)


def _not_queued(act: _Step, event: NotQueued) -> None:
    key = (event.server, event.prompt_id)
    if key not in act.state.flights:
        return
    act.drop(key)
    act.seat(event.server, rest_until=act.now + act.rules.rest, next_check=act.now)
    act.again(event.job, f"could not queue it on {event.server}: {event.why}")


def _started(act: _Step, event: Started) -> None:
    key = (event.server, event.prompt_id)
    if key in act.state.flights and not act.state.flights[key].running:
        act.flight(key, running=True)
        if act.rules.single:
            act.say("running")


def _progress(act: _Step, event: Progress) -> None:
    key = (event.server, event.prompt_id)
    if key in act.state.flights:
        act.flight(key, running=True, step=(event.value, event.maximum))


def _ended(act: _Step, event: Ended) -> None:
    key = (event.server, event.prompt_id)
    flight = act.state.flights.get(key)
    if flight is not None and not flight.fetching and not flight.saving:
        act.flight(key, fetching=True)
        act.actions.append(FetchHistory(event.server, event.prompt_id))


def _run_failed(act: _Step, event: RunFailed) -> None:
    key = (event.server, event.prompt_id)
    if key in act.state.flights and not act.state.flights[key].saving:
        act.fail_job(key, event.reason)


def _snapshot(act: _Step, event: Snapshot) -> None:
    url = event.server
    seat = act.state.seats.get(url)
    if seat is None:
        return
    act.answered(url)
    running, pending = frozenset(event.running), frozenset(event.pending)
    round_ = act.state.round
    if round_ is not None and url in round_.asked:
        ours = act.ours()[url]
        act.set(round=Round(round_.asked - {url},
                            {**round_.loads, url: len(running) + len(pending) if event.known else ours}))
    seat = act.seat(url, running=running, pending=pending, known=event.known, checking=False)
    busy = False
    for key, flight in list(act.state.flights.items()):
        if flight.server != url or flight.saving:
            continue
        busy = True
        if flight.prompt_id in running and not flight.running:
            act.flight(key, running=True)
            if act.rules.single:
                act.say("running")
        if flight.prompt_id in pending or (flight.prompt_id in running and seat.socket):
            act.flight(key, misses=0)  # the websocket will say when it ends
        elif flight.confirmed and not flight.fetching:  # finished or forgotten (or running): /history tells
            act.flight(key, fetching=True)
            act.actions.append(FetchHistory(url, flight.prompt_id))
    polling = busy and not seat.socket
    act.seat(url, next_check=act.now + (act.rules.poll_every if polling else act.rules.check_every))


def _history(act: _Step, event: History) -> None:
    key = (event.server, event.prompt_id)
    flight = act.state.flights.get(key)
    act.answered(event.server)
    if flight is None or flight.saving:
        return
    flight = act.flight(key, fetching=False)
    seat = act.state.seats[event.server]
    if event.entry is None:
        if not seat.known or flight.prompt_id in seat.running or flight.prompt_id in seat.pending:
            act.flight(key, misses=0)
            return
        if not flight.confirmed and act.now - flight.queued_at < act.rules.grace:
            return  # still being sent
        flight = act.flight(key, misses=flight.misses + 1)
        act.seat(event.server, next_check=min(seat.next_check, act.now + act.rules.poll_every))
        if flight.misses >= act.rules.misses and act.now - flight.queued_at >= act.rules.grace:
            act.drop(key)
            act.note_resent(flight, "the server no longer knows the prompt")
            act.again(flight.job, f"{event.server} lost it")
        return
    outcome = reasons.read_entry(event.entry)
    if isinstance(outcome, reasons.Failed):
        act.fail_job(key, outcome.reason)
    elif isinstance(outcome, reasons.Unreadable):  # it finished: never sent again because of how it reads
        act.fail_job(key, f"finished, but its /history entry could not be read ({outcome.why}); not sent again: "
                          f"its images, if any, are in the output folder of {event.server}", headline="on")
    else:
        act.flight(key, saving=True, misses=0)
        act.actions.append(Download(event.server, event.prompt_id, outcome.images, prefix(act.rules, flight.job)))


def _saved(act: _Step, event: Saved) -> None:
    key = (event.server, event.prompt_id)
    act.answered(event.server)
    flight = act.state.flights.get(key)
    if flight is None:  # given up on meanwhile: not counted
        act.actions.append(Discard(event.files))
        return
    act.drop(key)
    names = tuple(_name(path) for path in event.files)
    if act.rules.single:
        for path in event.files:
            act.say(f"saved {path}")
    else:
        act.say(f"{tag(act.rules, flight.job)}done on {event.server} in {act.now - flight.queued_at:.1f} s: "
                + (", ".join(names) or "no images"))
    act.record(flight.job, "done", flight, images=names, ask=True)


def _name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _not_saved(act: _Step, event: NotSaved) -> None:
    key = (event.server, event.prompt_id)
    flight = act.state.flights.get(key)
    if flight is None:
        return
    downloads = flight.downloads + 1
    if event.final or downloads >= act.rules.downloads:
        act.fail_job(key, f"finished, but its images could not be saved: {event.why}", headline="on")
        return
    act.flight(key, saving=False, downloads=downloads)  # its /history again at the next check
    act.seat(event.server, next_check=act.now)


def _unanswered(act: _Step, event: Unanswered) -> None:
    url = event.server
    seat = act.state.seats.get(url)
    if seat is None:
        return
    key = (url, event.prompt_id)
    if event.prompt_id and key in act.state.flights:
        act.flight(key, fetching=False)
    round_ = act.state.round
    if round_ is not None and url in round_.asked:
        act.set(round=Round(round_.asked - {url}, round_.loads))
    seat = act.seat(url, failures=seat.failures + 1, checking=False, next_check=act.now + act.rules.poll_every,
                    rest_until=act.now + act.rules.rest)
    if seat.live and seat.failures >= 2:
        _leave(act, url, "it stopped answering")


def _leave(act: _Step, url: str, why: str) -> None:
    seat = act.seat(url, live=False, ask_at=act.now + act.rules.revive_every, socket=False, checking=False,
                    known=False)
    act.actions.append(Unfollow(url))
    moved = sorted((f for f in act.state.flights.values() if f.server == url), key=lambda f: f.job, reverse=True)
    for flight in moved:
        act.drop((url, flight.prompt_id))
        act.note_resent(flight, why)
        act.again(flight.job, f"{url} stopped answering")
    act.seat(url, abandoned=(*seat.abandoned, *(f.prompt_id for f in moved)))
    tail = f"; its {len(moved)} job{'s' if len(moved) != 1 else ''} go to another" if moved else ""
    act.say(f"server {url} left the batch: {why}{tail}", always=True)


def _socket(act: _Step, event: Socket) -> None:
    seat = act.state.seats.get(event.server)
    if seat is not None and seat.live:
        act.seat(event.server, socket=event.open, next_check=act.now)  # what was missed, or is it gone?


def _back(act: _Step, event: Back) -> None:
    seat = act.state.seats.get(event.server)
    if seat is None or seat.live:
        return
    act.seat(event.server, live=True, asking=False, failures=0, rest_until=0.0, next_check=act.now, abandoned=())
    if seat.abandoned:  # what it still holds of ours was sent elsewhere: withdrawn, so it is not made twice
        act.actions.append(Withdraw(event.server, seat.abandoned))
    act.actions.append(Follow(event.server))
    act.set(dirty=True)
    act.say(f"server {event.server} is back in the batch", always=True)


def _still_away(act: _Step, event: StillAway) -> None:
    seat = act.state.seats.get(event.server)
    if seat is not None and not seat.live:
        act.seat(event.server, asking=False, ask_at=act.now + act.rules.revive_every)


def _receipts(act: _Step, event: Receipts) -> None:
    key = (event.server, event.prompt_id)
    if key in act.state.settling:  # else listed already (it came too late, or after Ctrl-C)
        act.listed(key, event.hosted, event.cost, event.why)


def _tick(act: _Step, event: Tick) -> None:
    pass  # settle() does what time calls for


def _interrupted(act: _Step, event: Interrupted) -> None:
    """Stop sending; withdraw this batch's prompts (only ours); list every job."""
    flights = sorted(act.state.flights.values(), key=lambda f: f.job)
    act.say(f"stopping: withdrawing {len(flights)} queued job(s) of this batch", always=True)
    by_server: dict[str, list[str]] = {}
    for flight in flights:
        by_server.setdefault(flight.server, []).append(flight.prompt_id)
    act.actions.extend(Withdraw(url, tuple(ids)) for url, ids in by_server.items())
    for flight in flights:
        act.record(flight.job, "cancelled", flight, error="stopped by Ctrl-C")
    for key in sorted(act.state.settling, key=lambda k: act.state.settling[k][0].job):  # finished: listed as such
        act.listed(key, None, None, "stopped by Ctrl-C before its receipts were read")
    for job in act.state.waiting:
        act.record(job, "not run", error="stopped by Ctrl-C before it was sent")
    for job in range(1, act.rules.jobs + 1):  # one caught between two places: listed all the same
        act.record(job, "cancelled", error="stopped by Ctrl-C")
    act.set(flights={}, waiting=())
    act.stop(130)


_HANDLERS = {
    Begin: _begin, Queued: _queued, Refused: _refused, NotQueued: _not_queued, Started: _started,
    Progress: _progress, Ended: _ended, RunFailed: _run_failed, Snapshot: _snapshot, History: _history,
    Saved: _saved, NotSaved: _not_saved, Unanswered: _unanswered, Socket: _socket, Back: _back,
    StillAway: _still_away, Receipts: _receipts, Tick: _tick, Interrupted: _interrupted,
}
