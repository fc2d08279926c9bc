"""Keys: where they come from, how they are stored, and that they are scrubbed."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from sdbridge.nodes import errors, runtime
from sdbridge.nodes.hosted.keys import credentials, redaction
from sdbridge.nodes.hosted.provider_table import SEGMIND, SINKIN


def test_environment_wins_over_the_file(monkeypatch):
    credentials.store_key(SEGMIND, "file-key-123")
    assert credentials.key_source(SEGMIND) == "file" and credentials.api_key(SEGMIND) == "file-key-123"
    monkeypatch.setenv("SEGMIND_API_KEY", "env-key-456")
    assert credentials.key_source(SEGMIND) == "environment" and credentials.api_key(SEGMIND) == "env-key-456"
    assert credentials.key_source(SINKIN) is None


def test_key_file_is_owner_only_and_clearing_works():
    credentials.store_key(SINKIN, "tok-abcdef")
    path = credentials.key_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    credentials.store_key(SEGMIND, "seg-abcdef")
    credentials.store_key(SINKIN, None)
    assert credentials.key_source(SINKIN) is None and credentials.api_key(SEGMIND) == "seg-abcdef"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".keys-")]  # no temp files left


def test_saving_a_key_needs_no_posix_only_call(monkeypatch):
    """Windows has no os.fchmod before Python 3.13 (ComfyUI's portable build)."""
    monkeypatch.delattr(os, "fchmod", raising=False)
    credentials.store_key(SEGMIND, "sg-windows-key")
    assert credentials.api_key(SEGMIND) == "sg-windows-key"
    assert stat.S_IMODE(os.stat(credentials.key_file()).st_mode) == 0o600


def test_key_file_lives_outside_comfyui_user_folders():
    # ComfyUI's /userdata routes serve user/<user>/...; the key file sits beside them, not inside.
    assert credentials.key_file().parent.name == "sdbridge"
    assert credentials.key_file().parent.parent == runtime.user_directory()


@pytest.mark.parametrize("value, words", [("", "empty"), ("a b", "without spaces"), ("x" * 600, "longer"),
                                          ("key\n", "printable")])
def test_bad_keys_are_refused(value, words):
    if value:
        with pytest.raises(ValueError, match=words):
            credentials.store_key(SEGMIND, value)
    assert words in credentials.check_key_shape(value)


def test_a_corrupt_key_file_reads_as_no_key():
    path = credentials.key_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert credentials.key_source(SEGMIND) is None
    with pytest.raises(errors.MissingKeyError, match="SEGMIND_API_KEY"):
        credentials.api_key(SEGMIND)


def test_redaction_in_text_and_logs(monkeypatch, caplog):
    monkeypatch.setenv("SEGMIND_API_KEY", "seg-SECRET-1")
    credentials.store_key(SINKIN, "sink-SECRET-2")
    assert redaction.redact("a seg-SECRET-1 b sink-SECRET-2") == "a *** b ***"
    caplog.set_level(logging.INFO, logger="sdbridge")
    runtime.log.info("sent %s", "seg-SECRET-1")
    assert "seg-SECRET-1" not in caplog.text and "sent ***" in caplog.text


def test_base_url_override_and_check(monkeypatch):
    assert credentials.base_url(SEGMIND) == "https://api.segmind.com"
    monkeypatch.setenv("SEGMIND_API_BASE", "http://127.0.0.1:8080/")
    assert credentials.base_url(SEGMIND) == "http://127.0.0.1:8080"
    monkeypatch.setenv("SEGMIND_API_BASE", "ftp://example.com")
    with pytest.raises(RuntimeError, match="not an http"):
        credentials.base_url(SEGMIND)


def test_saving_waits_while_another_process_holds_the_file_open(monkeypatch):
    """Windows refuses to replace a file another process has open: the write waits a moment."""
    from sdbridge.nodes import userdata

    real, refusals = os.replace, []

    def busy_twice(source, target):
        if len(refusals) < 2:
            refusals.append(target)
            raise PermissionError(13, "The process cannot access the file")
        real(source, target)

    monkeypatch.setattr(userdata.os, "replace", busy_twice)
    credentials.store_key(SEGMIND, "sg-after-a-wait")
    assert len(refusals) == 2 and credentials.api_key(SEGMIND) == "sg-after-a-wait"


def test_a_file_held_open_for_good_is_a_clear_error_and_leaves_no_temp_file(monkeypatch):
    from sdbridge.nodes import userdata

    def always_busy(source, target):
        raise PermissionError(13, "The process cannot access the file")

    monkeypatch.setattr(userdata.os, "replace", always_busy)
    monkeypatch.setattr(userdata.time, "sleep", lambda seconds: None)
    with pytest.raises(PermissionError, match="another program keeps it open"):
        credentials.store_key(SEGMIND, "sg-never")
    assert [p.name for p in credentials.key_file().parent.iterdir() if p.suffix != ".lock"] == []  # no temp file
