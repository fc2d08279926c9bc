"""Two ComfyUI processes saving keys at once (#17.14): each read-modify-write of keys.json happens
under the shared file lock, read included, so neither loses the other's last key."""

from __future__ import annotations

import json

from conftest import ROOT
from support.two_writers import race

from sdbridge.nodes.hosted.keys import credentials


def test_two_processes_saving_keys_at_once_keep_both_last_keys(tmp_path):
    assert race(ROOT, "key", ("segmind", "sinkin"), 150, tmp_path) == 0  # no save of the other's was lost midway
    assert json.loads(credentials.key_file().read_text()) == {"segmind": "segmind-key-149",
                                                              "sinkin": "sinkin-key-149"}
