"""Loads the pack exactly as ComfyUI does: by file path, as a package named after its folder
("sdbridge"), so the tests exercise the relative imports users get. Every shared fixture is
registered here, once: the isolation every test gets, the fake providers, the tiny pipelines.

Helpers live in support/ (loopback server, node calls, fuzzing, Node.js runner, tiny pipeline
builders); fake providers in fakes/; benchmarks outside the test run, in ../benchmarks/.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # support/ and fakes/ import as packages


def _load_pack():
    if "sdbridge" in sys.modules:
        return sys.modules["sdbridge"]
    spec = importlib.util.spec_from_file_location(
        "sdbridge", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["sdbridge"] = module
    spec.loader.exec_module(module)
    return module


PACK = _load_pack()

from fakes.segmind import FakeSegmind  # noqa: E402  (the fakes import the pack's names)
from fakes.sinkin import FakeSinkIn  # noqa: E402
from support import standin_comfy, tiny_pipelines  # noqa: E402

from sdbridge.nodes import declared_settings, routes, runtime  # noqa: E402
from sdbridge.nodes.hosted.http import rate_limit  # noqa: E402
from sdbridge.nodes.hosted.money import ledger  # noqa: E402
from sdbridge.nodes.hosted.provider_table import PROVIDERS, SEGMIND, SINKIN  # noqa: E402
from sdbridge.nodes.hosted.providers.segmind import api as segmind_api  # noqa: E402
from sdbridge.nodes.hosted.providers.sinkin import covers as sinkin_covers  # noqa: E402
from sdbridge.nodes.local import pipeline_cache  # noqa: E402

UNPACED = "1000000/1"


@pytest.fixture
def pack():
    return PACK


@pytest.fixture(autouse=True)
def _isolated_user_dir(tmp_path, monkeypatch):
    """Every test gets its own user directory and no provider keys or base URLs from the
    machine, and starts uninterrupted."""
    monkeypatch.setenv("SDBRIDGE_USER_DIR", str(tmp_path / "user"))
    for setting in declared_settings.declared():  # every setting, from the modules that own them
        monkeypatch.delenv(setting.name, raising=False)
    for provider in PROVIDERS.values():
        monkeypatch.delenv(provider.key_env, raising=False)
        monkeypatch.delenv(provider.base_env, raising=False)
        # The tests send far more than a plan allows: no pace, but what a test sets itself.
        monkeypatch.setenv(provider.rate_env, UNPACED)
    monkeypatch.delenv(segmind_api.API_ENV, raising=False)
    rate_limit.forget_all()
    ledger.forget_balances()  # each fake starts with a fresh balance
    monkeypatch.setattr(routes, "_last_refresh", float("-inf"))  # each test may refresh the catalog
    sinkin_covers.forget()  # no cover fetch under way or failed from another test
    runtime.request_interrupt(False)
    yield
    runtime.request_interrupt(False)


@pytest.fixture
def pack_log(caplog):
    """Everything the pack logs during a test, at every level."""
    caplog.set_level(logging.DEBUG, logger="sdbridge")
    return caplog


def serve_fake(monkeypatch, provider, server):
    """Point `provider`'s key and base URL (from the provider table) at a running fake. Its
    nodes run at the fast pace support.nodecalls passes in (`run`, `make`)."""
    monkeypatch.setenv(provider.key_env, server.key)
    monkeypatch.setenv(provider.base_env, server.url)
    return server


@pytest.fixture
def fake_segmind(monkeypatch):
    """A running fake Segmind, with the key and base URL pointing at it, called through v1, the
    synchronous API the documents describe."""
    monkeypatch.setenv(segmind_api.API_ENV, "v1")
    with FakeSegmind() as server:
        yield serve_fake(monkeypatch, SEGMIND, server)


@pytest.fixture
def fake_segmind_v2(monkeypatch):
    """A running fake Segmind called through its v2 queue (the default)."""
    monkeypatch.delenv(segmind_api.API_ENV, raising=False)
    with FakeSegmind() as server:
        yield serve_fake(monkeypatch, SEGMIND, server)


@pytest.fixture
def fake_sinkin(monkeypatch):
    """A running fake SinkIn, with the key and base URL pointing at it."""
    with FakeSinkIn() as server:
        yield serve_fake(monkeypatch, SINKIN, server)


@pytest.fixture
def comfy_model_management():
    """ComfyUI's model management as a stand-in (support/standin_comfy.py), with the pack's hooks
    on it cleared before and after; set `get_free_memory_of` to say how much memory is free."""
    module = standin_comfy.model_management()
    with pytest.MonkeyPatch.context() as patch:
        standin_comfy.install(patch, module)
        patch.setattr(runtime, "_unload_callbacks", [])
        patch.setattr(runtime, "_memory_callbacks", [])
        runtime._comfy.cache_clear()
        yield module
    runtime._comfy.cache_clear()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Tiny random-weight SD 1.5, SDXL base and refiner models, built once per session."""
    return tiny_pipelines.tiny_models(str(tmp_path_factory.getbasetemp() / "tiny"))


@pytest.fixture
def local_models(tiny, monkeypatch):
    """ComfyUI's model folders pointed at the tiny models; single files load with the tiny
    architectures' configs (the shipped ones are real-size); an empty cache before and after."""
    import torch

    root = tiny["sd15"]["folder"].parent.parent
    for kind in ("checkpoints", "diffusers", "loras"):
        monkeypatch.setenv(f"SDBRIDGE_{kind.upper()}_DIR", str(root / kind))
    for family, paths in tiny.items():
        monkeypatch.setitem(pipeline_cache.CONFIG_DIRS, family, paths["folder"])
    pipeline_cache.release_pipelines()
    threads = torch.get_num_threads()
    # Tiny models gain nothing from threads, and on a shared 2-core machine extra threads make
    # each run ten times slower.
    torch.set_num_threads(1)
    yield tiny
    torch.set_num_threads(threads)
    pipeline_cache.release_pipelines()
