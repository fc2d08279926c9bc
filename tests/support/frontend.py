"""ComfyUI's server as the pack sees it from a node (`runtime._server()`): records what would reach
the page (node texts and events), and a fake Segmind answering to a given key, for the tests that
look for a key in everything a run shows."""

from __future__ import annotations

import contextlib
import json

from fakes.segmind import FakeSegmind

from sdbridge.nodes import runtime
from sdbridge.nodes.hosted.provider_table import SEGMIND
from sdbridge.nodes.hosted.providers.segmind import api as segmind_api


class Frontend:
    """Stands in for ComfyUI's server: records node texts and events."""

    def __init__(self):
        self.texts: list[str] = []
        self.events: list[str] = []

    @property
    def sent(self) -> list[str]:
        return self.texts + self.events

    def send_progress_text(self, text, node_id):
        self.texts.append(text)

    def send_sync(self, event, data):
        self.events.append(json.dumps(data))


@contextlib.contextmanager
def segmind_showing(monkeypatch, key: str, api: str = "v1"):
    """A fake Segmind that takes `key`, called through `api` ("v1" or "v2"), with a Frontend
    recording what the page would get (as `fake.frontend`)."""
    if api == "v1":
        monkeypatch.setenv(segmind_api.API_ENV, "v1")
    else:
        monkeypatch.delenv(segmind_api.API_ENV, raising=False)
    frontend = Frontend()
    monkeypatch.setattr(runtime, "_server", lambda: frontend)
    with FakeSegmind(key=key) as fake:
        monkeypatch.setenv(SEGMIND.key_env, key)
        monkeypatch.setenv(SEGMIND.base_env, fake.url)
        fake.frontend = frontend
        yield fake
