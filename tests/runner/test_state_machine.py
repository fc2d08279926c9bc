"""The runner's rules as a table: each row plays events into `schedule.step` (no threads, no
sockets, no clock: the times are given) and checks what it decided. One row per rule of the
README's "How a batch runs"; test_batch_runner.py checks the same rules against fake servers."""

from __future__ import annotations

import copy
import uuid

import load_runner  # noqa: F401  (first: runner/ as `runner`)
import pytest

from runner import schedule as s

CLIENT = "00000000-0000-0000-0000-0000000000c1"
A, B = "http://a:8188", "http://b:8188"


def pid(job: int, attempt: int = 0) -> str:
    """The prompt id the schedule gives a job's `attempt`-th prompt (0 for the first)."""
    return str(uuid.uuid5(uuid.UUID(CLIENT), f"{job}.{attempt}"))


def play(rules: s.Rules, script, state: s.State | None = None):
    """Feed (time, event) pairs; each step must leave the state it was given unchanged."""
    state = state or s.start(rules, CLIENT)
    steps = []
    for now, event in script:
        before = copy.deepcopy(state)
        new, actions = s.step(state, event, now)
        assert state == before, f"step changed its input state on {event}"
        state = new
        steps.append(actions)
    return state, steps


def sent(rules: s.Rules, loads: dict[str, int], now: float = 0.0):
    """The batch begun and each server's /queue answered with `loads` prompts of others."""
    return [(0.0, s.Begin())] + [(now, s.Snapshot(url, pending=tuple(f"theirs{i}" for i in range(n))))
                                 for url, n in loads.items()]


def confirmed(*pairs):
    """Queued events for (job, server) pairs, first attempts."""
    return [(0.1, s.Queued(job, url, pid(job), pid(job))) for job, url in pairs]


def of(kind, actions):
    return [a for a in actions if isinstance(a, kind)]


def flat(steps):
    return [a for actions in steps for a in actions]


TWO = s.Rules((A, B), jobs=4, depth=2)
ONE = s.Rules((A,), jobs=5, depth=2)
SINGLE = s.Rules((A,), jobs=1, single=True, name="panda.json")
IMAGE = {"filename": "sdxl_00001_.png", "subfolder": "sdbridge", "type": "output"}
ENTRY = {"status": {"status_str": "success"}, "outputs": {"9": {"images": [IMAGE]}}}
RUN = {"node_id": "1", "provider": "segmind", "model": "sdxl1.0-txt2img", "seed": 7, "request_ids": ["req-1"],
       "status": "done", "cost": 0.02, "basis": "measured", "unit": "credits (US$)"}
COST = {"segmind": {"total": 0.02, "unit": "credits (US$)", "basis": "measured", "unpriced": 0}}


def receipts(job: int, at: float, url: str = A):
    """The server's receipts of the job's first prompt: one hosted run."""
    return (at, s.Receipts(url, pid(job), (RUN,), COST))


def least_loaded_gets_the_next_jobs():
    state, steps = play(TWO, sent(TWO, {A: 3, B: 0}))
    assert of(s.AskQueue, steps[0]) == [s.AskQueue(A), s.AskQueue(B)]  # one round: every ready server's /queue
    assert of(s.Submit, flat(steps)) == [s.Submit(1, B, pid(1)), s.Submit(2, B, pid(2))]
    assert state.waiting == (3, 4)  # A still holds more (3 of others) than B (2 of ours): they wait for B


def equal_loads_spread_the_jobs():
    _, steps = play(TWO, sent(TWO, {A: 0, B: 0}))
    assert [(a.job, a.server) for a in of(s.Submit, flat(steps))] == [(1, A), (2, B), (3, A), (4, B)]


def queue_depth_bounds_ours_on_a_server():
    state, steps = play(ONE, sent(ONE, {A: 0}))
    assert [a.job for a in of(s.Submit, flat(steps))] == [1, 2] and state.waiting == (3, 4, 5)


def a_finished_job_frees_room_for_the_next():
    state, _ = play(ONE, sent(ONE, {A: 0}) + confirmed((1, A), (2, A)) + [
        (1.0, s.Ended(A, pid(1))), (1.1, s.History(A, pid(1), ENTRY)), (1.2, s.Saved(A, pid(1), ("out/1_x.png",)))])
    state, steps = play(ONE, [(1.3, s.Snapshot(A, running=(pid(2),)))], state)
    assert of(s.Submit, flat(steps)) == [s.Submit(3, A, pid(3))] and state.recorded == {1: "done"}


def a_server_that_fails_twice_leaves_and_its_jobs_go_to_another():
    state, steps = play(TWO, sent(TWO, {A: 0, B: 0}) + confirmed((1, A), (2, B), (3, A), (4, B)) + [
        (1.0, s.Unanswered(A, "refused")), (1.5, s.Unanswered(A, "refused"))])
    actions = steps[-1]
    assert s.Unfollow(A) in actions and not state.seats[A].live
    assert state.waiting == (1, 3) and set(state.seats[A].abandoned) == {pid(1), pid(3)}
    assert state.resent[1] == ({"server": A, "prompt_id": pid(1), "why": "it stopped answering"},)
    assert any("left the batch: it stopped answering; its 2 jobs go to another" in a.text for a in of(s.Say, actions))


def one_failed_call_is_not_leaving():
    state, steps = play(TWO, sent(TWO, {A: 0, B: 0}) + confirmed((1, A)) + [
        (1.0, s.Unanswered(A, "timed out")), (1.2, s.Snapshot(A, running=(pid(1),)))])
    assert state.seats[A].live and state.seats[A].failures == 0 and not of(s.Unfollow, flat(steps))


def a_server_that_left_is_asked_and_rejoins_and_what_it_held_is_withdrawn():
    rules = s.Rules((A, B), jobs=4, depth=2, revive_every=5.0)
    state, _ = play(rules, sent(rules, {A: 0, B: 0}) + confirmed((1, A), (2, B), (3, A), (4, B)) + [
        (1.0, s.Unanswered(A, "refused")), (1.5, s.Unanswered(A, "refused"))])
    state, steps = play(rules, [(3.0, s.Tick()), (6.6, s.Tick()), (7.0, s.StillAway(A, "not reachable")),
                                (7.5, s.Tick()), (12.1, s.Tick()), (12.2, s.Back(A))], state)
    assert [a for a in flat(steps) if isinstance(a, s.AskBack)] == [s.AskBack(A), s.AskBack(A)]
    assert not of(s.AskBack, steps[0]) and not of(s.AskBack, steps[3])  # every revive_every seconds
    back = steps[-1]
    assert s.Withdraw(A, (pid(3), pid(1))) in back and s.Follow(A) in back and state.seats[A].live
    assert state.seats[A].abandoned == ()


def a_forgotten_prompt_is_sent_again():
    rules = s.Rules((A,), jobs=1, grace=5.0, misses=3)
    state, steps = play(rules, sent(rules, {A: 0}) + confirmed((1, A)) + [
        (5.0, s.Snapshot(A)), (5.1, s.History(A, pid(1), None)),
        (5.6, s.Snapshot(A)), (5.7, s.History(A, pid(1), None)),
        (6.2, s.Snapshot(A)), (6.3, s.History(A, pid(1), None)),
        (6.4, s.Snapshot(A))])
    assert of(s.FetchHistory, steps[-7]) == [s.FetchHistory(A, pid(1))]
    assert of(s.Submit, flat(steps)) == [s.Submit(1, A, pid(1)), s.Submit(1, A, pid(1, 1))]
    assert state.resent[1] == ({"server": A, "prompt_id": pid(1), "why": "the server no longer knows the prompt"},)


def a_prompt_still_queued_is_not_forgotten():
    rules = s.Rules((A,), jobs=1)
    state, steps = play(rules, sent(rules, {A: 0}) + confirmed((1, A)) + [
        (t, s.Snapshot(A, pending=(pid(1),))) for t in (6.0, 7.0, 8.0, 9.0)])
    assert len(of(s.Submit, flat(steps))) == 1 and not of(s.FetchHistory, flat(steps)) and state.flights


@pytest.mark.parametrize("entry", [
    ["not", "an", "object"], {"outputs": ["a list"]}, {"outputs": {"9": "text"}}, {"outputs": {"9": {"images": 7}}},
    {"outputs": {"9": {"images": ["name.png"]}}}, {"status": "weird", "outputs": {"9": {"images": [{"x": 1}]}}},
])
def test_a_finished_job_is_never_queued_again_however_its_history_reads(entry):
    """#17.19: an unreadable /history entry of a finished prompt: failed, listed, not sent again."""
    rules = s.Rules((A, B), jobs=1)
    state, steps = play(rules, sent(rules, {A: 0, B: 0}) + confirmed((1, A)) + [
        (1.0, s.Ended(A, pid(1))), (1.1, s.History(A, pid(1), entry)), receipts(1, 1.2), (9.0, s.Tick())])
    (record,) = of(s.Record, flat(steps))
    assert record.status == "failed" and "its /history entry could not be read" in record.error
    assert of(s.AskReceipts, flat(steps)) == [s.AskReceipts(A, pid(1))] and record.hosted == (RUN,)
    assert len(of(s.Submit, flat(steps))) == 1 and state.seats[A].live
    assert of(s.Stop, flat(steps)) == [s.Stop(1)]


def a_refused_job_is_listed_and_not_sent_again():
    state, steps = play(TWO, sent(TWO, {A: 0, B: 0}) + [(0.1, s.Refused(1, A, pid(1), ("bad", "  node 1: x")))])
    assert of(s.Record, steps[-1])[0].status == "refused" and 1 not in state.waiting
    assert [a.job for a in of(s.Submit, flat(steps))].count(1) == 1


def a_failed_run_is_listed_and_not_sent_again():
    state, steps = play(TWO, sent(TWO, {A: 0, B: 0}) + confirmed((1, A)) + [
        (1.0, s.RunFailed(A, pid(1), "KSampler failed: out of memory")), receipts(1, 1.1)])
    (record,) = of(s.Record, steps[-1])
    assert (record.status, record.error) == ("failed", "KSampler failed: out of memory") and 1 not in state.waiting
    assert record.cost == COST  # a run that failed may have paid for its hosted nodes: listed


def a_job_that_cannot_be_queued_is_tried_elsewhere_then_listed():
    rules = s.Rules((A,), jobs=1)  # tries: one server + 2
    script = sent(rules, {A: 0})
    for attempt in range(3):
        script += [(10.0 * attempt + 1, s.NotQueued(1, A, pid(1, attempt), "HTTP 500")),
                   (10.0 * attempt + 5, s.Tick()), (10.0 * attempt + 5.1, s.Snapshot(A))]
    state, steps = play(rules, script)
    assert len(of(s.Submit, flat(steps))) == 3
    (record,) = of(s.Record, flat(steps))
    assert record.status == "failed" and record.error.startswith(f"tried 3 times; last: could not queue it on {A}")


def a_job_over_its_time_is_withdrawn_waiting_ones_first():
    rules = s.Rules((A,), jobs=2, timeout=10.0)
    state, steps = play(rules, sent(rules, {A: 0}) + confirmed((1, A), (2, A)) + [(10.5, s.Tick())])
    assert of(s.Withdraw, steps[-1]) == [s.Withdraw(A, (pid(1), pid(2)))]
    assert [r.status for r in of(s.Record, steps[-1])] == ["failed", "failed"]
    assert of(s.Stop, steps[-1]) == [s.Stop(1)]


def ctrl_c_withdraws_only_ours_and_lists_every_job():
    state, steps = play(ONE, sent(ONE, {A: 4}) + confirmed((1, A), (2, A)) + [(2.0, s.Interrupted())])
    actions = steps[-1]
    assert of(s.Withdraw, actions) == [s.Withdraw(A, (pid(1), pid(2)))]  # never theirs0..3
    assert [(r.job, r.status) for r in of(s.Record, actions)] == [
        (1, "cancelled"), (2, "cancelled"), (3, "not run"), (4, "not run"), (5, "not run")]
    assert of(s.Stop, actions) == [s.Stop(130)] and state.over


def when_no_server_is_left_the_jobs_wait_then_fail():
    rules = s.Rules((A,), jobs=2, wait=30.0, depth=1)
    state, steps = play(rules, sent(rules, {A: 0}) + confirmed((1, A)) + [
        (1.0, s.Unanswered(A, "x")), (1.5, s.Unanswered(A, "x")), (20.0, s.Tick()), (31.6, s.Tick())])
    assert any("waiting up to 30 s" in a.text for a in of(s.Say, steps[-3]))
    assert not of(s.Record, steps[-2])
    assert [(r.job, r.status) for r in of(s.Record, steps[-1])] == [(1, "failed"), (2, "failed")]


def a_download_cut_short_is_fetched_again_a_final_failure_is_listed():
    rules = s.Rules((A,), jobs=1)
    base = sent(rules, {A: 0}) + confirmed((1, A)) + [(1.0, s.Ended(A, pid(1))), (1.1, s.History(A, pid(1), ENTRY))]
    state, steps = play(rules, base + [(1.2, s.NotSaved(A, pid(1), "broke off", final=False)), (1.4, s.Snapshot(A))])
    assert of(s.AskQueue, steps[-2]) == [s.AskQueue(A)] and of(s.FetchHistory, steps[-1]) == [s.FetchHistory(A, pid(1))]
    state, steps = play(rules, base + [(1.2, s.NotSaved(A, pid(1), "larger than 1024 MiB", final=True)),
                                       receipts(1, 1.3)])
    (record,) = of(s.Record, steps[-1])
    assert record.status == "failed" and "larger than 1024 MiB" in record.error


def images_saved_after_giving_up_are_discarded():
    rules = s.Rules((A,), jobs=1, timeout=5.0)
    state, steps = play(rules, sent(rules, {A: 0}) + confirmed((1, A)) + [
        (4.0, s.Ended(A, pid(1))), (4.1, s.History(A, pid(1), ENTRY)), (6.0, s.Tick()),
        (6.1, s.Saved(A, pid(1), ("out/1_x.png",)))])
    assert steps[-1] == [] or of(s.Discard, steps[-1]) == [s.Discard(("out/1_x.png",))]


def a_prompt_queued_after_its_server_left_is_withdrawn_when_it_is_back():
    rules = s.Rules((A, B), jobs=1)
    state, steps = play(rules, sent(rules, {A: 0, B: 0}) + [
        (1.0, s.Unanswered(A, "x")), (1.5, s.Unanswered(A, "x")), (1.6, s.Queued(1, A, pid(1), pid(1)))])
    assert pid(1) in state.seats[A].abandoned and 1 in [f.job for f in state.flights.values()] + list(state.waiting)


def with_the_websocket_open_an_idle_server_is_not_polled():
    rules = s.Rules((A,), jobs=1, check_every=5.0, poll_every=0.5)
    state, _ = play(rules, sent(rules, {A: 0}) + confirmed((1, A)) + [
        (1.0, s.Ended(A, pid(1))), (1.1, s.History(A, pid(1), ENTRY))])
    state, steps = play(rules, [(1.2, s.Socket(A, True)), (1.3, s.Snapshot(A))] +
                        [(1.3 + i * 0.5, s.Tick()) for i in range(1, 9)], state)
    assert not of(s.AskQueue, flat(steps[2:]))  # saving: nothing to ask until check_every


def single_job_mode_keeps_comfyuis_names_and_stops_with_the_reason():
    state, steps = play(SINGLE, sent(SINGLE, {A: 0}) + confirmed((1, A)) + [
        (0.5, s.Started(A, pid(1))), (1.0, s.Ended(A, pid(1))), (1.1, s.History(A, pid(1), ENTRY)),
        (1.5, s.Saved(A, pid(1), ("out/sdxl_00001_.png",))), receipts(1, 1.6)])
    said = [a.text for a in of(s.Say, flat(steps))]
    assert said == [f"queued panda.json as {pid(1)} on {A}", "running", "saved out/sdxl_00001_.png"]
    assert of(s.Download, flat(steps))[0].prefix == ""  # ComfyUI's file name, as before
    assert of(s.Stop, flat(steps)) == [s.Stop(0)] and of(s.Record, flat(steps))[0].images == ("sdxl_00001_.png",)


@pytest.mark.parametrize("event, message", [
    (s.Refused(1, A, pid(1), ("Prompt outputs failed validation",)),
     "ComfyUI refused the workflow:\nPrompt outputs failed validation"),
    (s.RunFailed(A, pid(1), "KSampler failed: oom"), "KSampler failed: oom"),
])
def test_single_job_mode_stops_with_comfyuis_reason_and_writes_no_manifest(event, message):
    state, steps = play(SINGLE, sent(SINGLE, {A: 0}) + [(0.5, event)])
    assert of(s.Stop, steps[-1]) == [s.Stop(1, message)] and not of(s.Record, flat(steps))


def a_finished_job_is_listed_with_its_receipts_and_the_batch_ends_after_them():
    rules = s.Rules((A,), jobs=1)
    base = sent(rules, {A: 0}) + confirmed((1, A)) + [(1.0, s.Ended(A, pid(1))), (1.1, s.History(A, pid(1), ENTRY)),
                                                      (1.5, s.Saved(A, pid(1), ("out/1_x.png",)))]
    state, steps = play(rules, base)
    assert of(s.AskReceipts, steps[-1]) == [s.AskReceipts(A, pid(1))] and not of(s.Record, steps[-1])
    assert not of(s.Stop, steps[-1]) and s.counts(state)["finished"] == 1  # finished: the bar counts it
    state, steps = play(rules, [receipts(1, 2.0)], state)
    (record,) = of(s.Record, steps[-1])
    assert (record.status, record.images, record.hosted, record.cost, record.hosted_why) == (
        "done", ("1_x.png",), (RUN,), COST, None)
    assert of(s.Stop, steps[-1]) == [s.Stop(0)]


def a_job_waiting_for_its_receipts_is_never_sent_again_when_its_server_leaves():
    rules = s.Rules((A, B), jobs=1)
    state, steps = play(rules, sent(rules, {A: 0, B: 0}) + confirmed((1, A)) + [
        (1.0, s.Ended(A, pid(1))), (1.1, s.History(A, pid(1), ENTRY)), (1.5, s.Saved(A, pid(1), ("out/1_x.png",))),
        (2.0, s.Unanswered(A, "x")), (2.5, s.Unanswered(A, "x")), (3.0, s.Snapshot(B)), (4.0, s.Tick()),
        (4.1, s.Receipts(A, pid(1), None, why="no answer from /sdbridge/receipts: timed out"))])
    assert len(of(s.Submit, flat(steps))) == 1 and not state.seats[A].live
    (record,) = of(s.Record, flat(steps))
    assert (record.status, record.hosted, record.cost) == ("done", None, None)
    assert record.hosted_why == "no answer from /sdbridge/receipts: timed out"


def receipts_that_do_not_come_are_given_up_after_receipts_wait():
    rules = s.Rules((A,), jobs=1, receipts_wait=15.0)
    state, steps = play(rules, sent(rules, {A: 0}) + confirmed((1, A)) + [
        (1.0, s.RunFailed(A, pid(1), "boom")), (15.9, s.Tick()), (16.0, s.Tick()), receipts(1, 17.0)])
    assert not of(s.Record, flat(steps[:-2]))
    (record,) = of(s.Record, steps[-2])
    assert record.hosted is None and record.hosted_why == "/sdbridge/receipts did not answer within 15 s"
    assert of(s.Stop, steps[-2]) == [s.Stop(1)] and steps[-1] == []  # the late answer: the batch is over


def ctrl_c_lists_a_job_waiting_for_its_receipts_as_finished():
    state, steps = play(ONE, sent(ONE, {A: 0}) + confirmed((1, A), (2, A)) + [
        (1.0, s.Ended(A, pid(1))), (1.1, s.History(A, pid(1), ENTRY)), (1.5, s.Saved(A, pid(1), ("out/1_x.png",))),
        (2.0, s.Interrupted())])
    records = of(s.Record, steps[-1])
    assert [(r.job, r.status) for r in records] == [(2, "cancelled"), (1, "done"), (3, "not run"), (4, "not run"),
                                                    (5, "not run")]
    assert records[1].hosted_why == "stopped by Ctrl-C before its receipts were read"
    assert not of(s.AskReceipts, steps[-1]) and of(s.Stop, steps[-1]) == [s.Stop(130)]


def a_job_that_did_not_run_to_its_end_is_listed_without_asking():
    rules = s.Rules((A,), jobs=2, timeout=10.0)
    state, steps = play(rules, sent(rules, {A: 0}) + [(0.1, s.Refused(1, A, pid(1), ("bad",)))] +
                        confirmed((2, A)) + [(10.5, s.Tick())])
    assert not of(s.AskReceipts, flat(steps))
    assert [(r.status, r.hosted, r.hosted_why) for r in of(s.Record, flat(steps))] == [
        ("refused", None, s.NOT_ASKED), ("failed", None, s.NOT_ASKED)]


def batch_mode_prefixes_the_job_number():
    rules = s.Rules((A,), jobs=12)
    state, steps = play(rules, sent(rules, {A: 0}) + confirmed((1, A)) + [
        (1.0, s.Ended(A, pid(1))), (1.1, s.History(A, pid(1), ENTRY))])
    assert of(s.Download, steps[-1])[0].prefix == "01_"


RULES = [least_loaded_gets_the_next_jobs, equal_loads_spread_the_jobs, queue_depth_bounds_ours_on_a_server,
         a_finished_job_frees_room_for_the_next, a_server_that_fails_twice_leaves_and_its_jobs_go_to_another,
         one_failed_call_is_not_leaving, a_server_that_left_is_asked_and_rejoins_and_what_it_held_is_withdrawn,
         a_forgotten_prompt_is_sent_again, a_prompt_still_queued_is_not_forgotten,
         a_refused_job_is_listed_and_not_sent_again, a_failed_run_is_listed_and_not_sent_again,
         a_job_that_cannot_be_queued_is_tried_elsewhere_then_listed,
         a_job_over_its_time_is_withdrawn_waiting_ones_first, ctrl_c_withdraws_only_ours_and_lists_every_job,
         when_no_server_is_left_the_jobs_wait_then_fail,
         a_download_cut_short_is_fetched_again_a_final_failure_is_listed,
         images_saved_after_giving_up_are_discarded, a_prompt_queued_after_its_server_left_is_withdrawn_when_it_is_back,
         with_the_websocket_open_an_idle_server_is_not_polled,
         single_job_mode_keeps_comfyuis_names_and_stops_with_the_reason, batch_mode_prefixes_the_job_number,
         a_finished_job_is_listed_with_its_receipts_and_the_batch_ends_after_them,
         a_job_waiting_for_its_receipts_is_never_sent_again_when_its_server_leaves,
         receipts_that_do_not_come_are_given_up_after_receipts_wait,
         ctrl_c_lists_a_job_waiting_for_its_receipts_as_finished,
         a_job_that_did_not_run_to_its_end_is_listed_without_asking]


@pytest.mark.parametrize("rule", RULES, ids=[rule.__name__ for rule in RULES])
def test_rule(rule):
    rule()


def test_a_stopped_batch_hears_nothing_more():
    state, _ = play(ONE, sent(ONE, {A: 0}) + [(1.0, s.Interrupted())])
    assert s.step(state, s.Queued(3, A, pid(3), pid(3)), 2.0) == (state, [])
