"""Two ComfyUI processes saving settings at once (#17.14): settings.json is read, changed and
written under the shared file lock, so neither loses the other's last setting; a damaged file is
kept aside, never overwritten."""

from __future__ import annotations

import json

from conftest import ROOT
from support.two_writers import race

from sdbridge.nodes import pack_settings, userdata
from sdbridge.nodes.hosted.store import result_cache


def test_two_processes_saving_settings_at_once_keep_both_last_values(tmp_path):
    assert race(ROOT, "setting", (result_cache.SIZE_ENV, result_cache.SWITCH_ENV), 150, tmp_path) == 0  # no save of the other's was lost midway
    assert json.loads(pack_settings.settings_file().read_text()) == {result_cache.SIZE_ENV: "149",
                                                                     result_cache.SWITCH_ENV: "149"}


def test_a_damaged_settings_file_is_kept_aside_when_a_setting_is_saved(pack_log):
    pack_settings.settings_file().parent.mkdir(parents=True)
    pack_settings.settings_file().write_text('{"SDBRIDGE_RESULT_CACHE_MB": "64"')  # cut short
    pack_settings.store(result_cache.SWITCH_ENV, "off")
    (aside,) = userdata.damaged_copies(pack_settings.settings_file())
    assert aside.read_text() == '{"SDBRIDGE_RESULT_CACHE_MB": "64"'
    assert json.loads(pack_settings.settings_file().read_text()) == {result_cache.SWITCH_ENV: "off"}
    assert sum("kept aside" in r.getMessage() for r in pack_log.records) == 1
