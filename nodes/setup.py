"""The one place the pack is wired into ComfyUI: which node classes it offers, and `setup`, which
installs what importing never does (log redaction, the routes, the memory hooks). ComfyUI loads
the pack by importing its root `__init__.py`, which calls both."""

from __future__ import annotations

import logging
import threading

from . import routes, runtime
from .hosted.keys.redaction import LOGGERS, RedactingFilter, redact
from .hosted.providers.segmind import nodes as segmind_nodes
from .hosted.providers.sinkin import nodes as sinkin_nodes
from .local import local_nodes, pipeline_cache
from .param_node import node_mappings

NODES = segmind_nodes.NODES + sinkin_nodes.NODES + local_nodes.NODES  # every node the pack offers, in menu order

_done = False
_lock = threading.Lock()


def mappings() -> tuple[dict, dict]:
    """ComfyUI's NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS."""
    return node_mappings(NODES)


def setup() -> bool:
    """Wire the pack in, once per process (later calls do nothing): keys scrubbed from every log
    record, event and error text; the /sdbridge routes; the local model cache giving way to
    ComfyUI's model management. Returns whether ComfyUI's server took the routes."""
    global _done
    with _lock:
        if _done:
            return False
        _done = True
    runtime.set_redactor(redact)
    scrubber = RedactingFilter()
    for name in LOGGERS:
        logging.getLogger(name).addFilter(scrubber)
    pipeline_cache.install_hooks()
    return routes.install()
