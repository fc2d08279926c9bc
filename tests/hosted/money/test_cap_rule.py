"""The one rule of the caps (money/rule.decide), as a table: the figures in, the verdict out."""

from __future__ import annotations

import pytest

from sdbridge.nodes.hosted.money import caps, rule

F = rule.Figures
SINKIN = dict(provider="SinkIn", unit="credits")
SEGMIND = dict(provider="Segmind", unit="credits (US$)")


@pytest.mark.parametrize("figures, run_cap, day_cap, stage, go, cap, words", [
    # no cap: always
    ([F(**SINKIN, estimate=1e6, unknown=3, run=1e6, today=1e6)], None, None, rule.PROMPT, True, None, ""),
    ([F(**SINKIN, estimate=1e6, run=1e6, today=1e6)], None, None, rule.REQUEST, True, None, ""),
    # a prompt: its known estimate against the run cap, and with today's spend against the day cap
    ([F(**SINKIN, estimate=3)], 3, None, rule.PROMPT, True, None, ""),
    ([F(**SINKIN, estimate=4)], 3, None, rule.PROMPT, False, caps.RUN_CAP,
     "this prompt's SinkIn nodes are estimated at 4 credits, above the cap of 3 per run"),
    ([F(**SINKIN, estimate=4, unknown=2)], 3, None, rule.PROMPT, False, caps.RUN_CAP,
     "plus 2 nodes with no estimate"),
    ([F(**SINKIN, estimate=0, unknown=6)], 3, None, rule.PROMPT, True, None, ""),   # unknowns go, one at a time
    ([F(**SINKIN, estimate=2, today=2)], None, 5, rule.PROMPT, True, None, ""),
    ([F(**SINKIN, estimate=2, today=4)], None, 5, rule.PROMPT, False, caps.DAY_CAP,
     "with the 4 spent today that passes the cap of 5 per day"),
    # a request: what the run (or the day) spent and holds, plus its own known estimate
    ([F(**SINKIN, estimate=1, run=2)], 3, None, rule.REQUEST, True, None, ""),
    ([F(**SINKIN, estimate=2, run=2)], 3, None, rule.REQUEST, False, caps.RUN_CAP,
     "this run has spent 2 credits on SinkIn; this node (2 credits) would pass the cap of 3 per run"),
    ([F(**SINKIN, unknown=1, run=2.9)], 3, None, rule.REQUEST, True, None, ""),     # under: an unknown goes
    ([F(**SINKIN, unknown=1, run=3)], 3, None, rule.REQUEST, False, caps.RUN_CAP, "(cost unknown)"),
    ([F(**SINKIN, estimate=1, today=2)], None, 3, rule.REQUEST, True, None, ""),
    ([F(**SINKIN, estimate=2, today=2)], None, 3, rule.REQUEST, False, caps.DAY_CAP,
     "2 credits were spent today on SinkIn; this node (2 credits) would pass the cap of 3 per day"),
    ([F(**SINKIN, unknown=1, today=3)], None, 3, rule.REQUEST, False, caps.DAY_CAP, "cost unknown"),
    # each provider in its own unit, each against the cap: 2 dollars and 2 credits never make 4
    ([F(**SEGMIND, estimate=2), F(**SINKIN, estimate=2)], 3, None, rule.PROMPT, True, None, ""),
    ([F(**SEGMIND, estimate=2, run=2), F(**SINKIN, estimate=2)], 3, None, rule.REQUEST, False, caps.RUN_CAP,
     "this run has spent 2 credits (US$) on Segmind"),
    # a ledger damaged today: the day cap cannot be kept, so it refuses (the run cap alone does not care)
    ([F(**SINKIN, estimate=0, damaged="spending.json.damaged-1")], None, 100, rule.PROMPT, False, caps.DAY_CAP,
     "kept aside as spending.json.damaged-1"),
    ([F(**SINKIN, estimate=0, damaged="spending.json.damaged-1")], None, 100, rule.REQUEST, False, caps.DAY_CAP,
     "Hosted nodes go on tomorrow"),
    ([F(**SINKIN, estimate=1, damaged="spending.json.damaged-1")], 5, None, rule.REQUEST, True, None, ""),
])
def test_the_rule(figures, run_cap, day_cap, stage, go, cap, words):
    verdict = rule.decide(figures, run_cap, day_cap, stage)
    assert verdict.go is go and verdict.cap == cap
    assert words in verdict.reason
    if not go:  # every refusal names the setting and the fix
        assert cap in verdict.reason and "Settings > SD Bridge" in verdict.reason
        assert ("Nothing was sent" in verdict.reason) or ("was not sent" in verdict.reason)
    assert verdict.as_dict() == {"go": go, "reason": verdict.reason, "cap": cap, "provider": verdict.provider}
