"""The request journal cannot be turned against the user: a damaged journal is kept aside and its
requests are not paid for twice (#17.8), and it keeps no credential of a job's URLs (#17.9).
Every run counts the submits that reached the fake Segmind v2."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import pytest
from support.nodecalls import run

from sdbridge.nodes import runtime, userdata
from sdbridge.nodes.errors import MaybeSent
from sdbridge.nodes.hosted.provider_table import PROVIDERS
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.store import journal

RV = segmind_nodes.NODES[0]
SMALL = {"img_width": 256, "img_height": 256}


def _interrupted_while_processing(fake, seed: int) -> None:
    """Submit a job that never ends, press Cancel while it waits, then let jobs finish: the
    journal holds it."""
    fake.processing_polls = 10_000
    threading.Timer(0.3, runtime.request_interrupt).start()
    with pytest.raises(runtime.Interrupted):
        run(RV, prompt="a cat", seed=seed, **SMALL)
    runtime.request_interrupt(False)
    fake.processing_polls = 0


def _aside() -> list:
    return userdata.damaged_copies(journal.journal_file())


def _warnings(pack_log) -> list[str]:
    return [r.getMessage() for r in pack_log.records if r.levelno >= logging.WARNING and "kept aside" in r.getMessage()]


def test_a_cut_short_journal_is_kept_aside_and_its_request_is_not_paid_twice(fake_segmind_v2, pack_log):
    _interrupted_while_processing(fake_segmind_v2, seed=1)
    text = journal.journal_file().read_text()
    journal.journal_file().write_text(text[: len(text) - 20])  # a crash cut it short: the digest survives
    for _ in range(2):
        with pytest.raises(MaybeSent, match="lists this request") as refused:
            run(RV, prompt="a cat", seed=1, **SMALL)
    assert len(fake_segmind_v2.submits()) == 1  # 0 new
    (copy,) = _aside()
    assert str(copy) in str(refused.value) and "delete" in str(refused.value)
    assert copy.read_text() == text[: len(text) - 20]  # kept as it was, never deleted
    assert len(_warnings(pack_log)) == 1  # logged once
    run(RV, prompt="a cat", seed=2, **SMALL)  # a request it does not list goes
    assert len(fake_segmind_v2.submits()) == 2
    copy.unlink()  # the user checked the provider's history
    run(RV, prompt="a cat", seed=1, **SMALL)
    assert len(fake_segmind_v2.submits()) == 3


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 300, b"[1, 2]", b'{"jobs": 3}', b"\xff\xfe not text"])
def test_a_journal_that_tells_nothing_holds_every_request_back(fake_segmind_v2, garbage):
    _interrupted_while_processing(fake_segmind_v2, seed=3)
    journal.journal_file().write_bytes(garbage)
    for seed in (3, 4):
        with pytest.raises(MaybeSent, match="cannot tell which requests it held"):
            run(RV, prompt="a cat", seed=seed, **SMALL)
    assert len(fake_segmind_v2.submits()) == 1 and len(_aside()) == 1
    old = time.time() - journal.DAMAGED_HOLDS - 60  # a day later the provider has forgotten them
    os.utime(_aside()[0], (old, old))
    run(RV, prompt="a cat", seed=4, **SMALL)
    assert len(fake_segmind_v2.submits()) == 2 and _aside()[0].read_bytes() == garbage


def test_a_base_url_with_a_password_is_not_written_and_the_job_still_resumes(fake_segmind_v2, monkeypatch):
    segmind = PROVIDERS["segmind"]
    monkeypatch.setenv(segmind.base_env, fake_segmind_v2.url.replace("http://", "http://someone:hunter2@"))
    fake_segmind_v2.job_host = "http://elsewhere.invalid"  # so the job's URLs are rebuilt on the base URL
    _interrupted_while_processing(fake_segmind_v2, seed=5)
    text = journal.journal_file().read_text()
    assert "hunter2" not in text and "someone" not in text and "req-" in text
    images, _ = run(RV, prompt="a cat", seed=5, **SMALL)
    assert images.shape[0] == 1 and len(fake_segmind_v2.submits()) == 1 and fake_segmind_v2.generated == 1


def test_job_urls_keep_no_credentials_and_old_journals_still_read():
    leaky = ("r1", "https://someone:hunter2@api.example/v2/requests/r1/status?token=t0ken&page=2",
             "https://api.example/v2/requests/r1?X-Amz-Signature=s1gn&access_token=t0ken")
    first = journal.canonical_request("segmind", "https://api.example/v2/x", {"seed": 1})
    journal.record(first, "segmind", leaky, 600)
    text = journal.journal_file().read_text()
    assert not any(secret in text for secret in ("hunter2", "someone", "t0ken", "s1gn"))
    assert journal.find(first) == ("r1", "https://api.example/v2/requests/r1/status?page=2",
                                   "https://api.example/v2/requests/r1")
    # A journal written before: its URLs with credentials still resume, and are cleaned on the next write.
    old = journal.canonical_request("segmind", "https://api.example/v2/x", {"seed": 2})
    now = time.time()
    journal.journal_file().write_text(json.dumps({"jobs": {old: {
        "provider": "segmind", "request_id": "r2", "status_url": leaky[1], "response_url": leaky[2],
        "submitted_at": now, "expires_at": now + 600}}}))
    assert journal.find(old) == ("r2", "https://api.example/v2/requests/r1/status?page=2",
                                 "https://api.example/v2/requests/r1")
    journal.record(first, "segmind", leaky, 600)
    text = journal.journal_file().read_text()
    assert "r2" in text and not any(secret in text for secret in ("hunter2", "someone", "t0ken", "s1gn"))
