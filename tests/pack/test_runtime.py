"""nodes/runtime.py: the one door to ComfyUI, tested with stand-ins for ComfyUI's modules."""

from __future__ import annotations

import platform
import sys

import pytest
import torch

from sdbridge.nodes import runtime


def test_outside_comfyui_there_is_no_unload_hook():
    assert runtime.on_models_unloaded(lambda: None) is False
    assert runtime.on_memory_needed(lambda required, device: None) is False
    runtime.make_room(10**9, None)  # nothing to ask
    assert runtime.free_bytes(torch.device("cpu")) > 0


def test_comfyui_unloading_its_models_releases_ours_too(comfy_model_management):
    module = comfy_model_management
    assert runtime.on_models_unloaded(lambda: module.calls.append("ours released"))
    assert runtime.on_models_unloaded(lambda: 1 / 0)  # a failing callback must not break ComfyUI
    module.unload_all_models()
    assert module.calls == [("unload_all_models",), ("free_memory", 1e30, "cpu"), "ours released"]


def test_a_callback_is_registered_once(comfy_model_management):
    module = comfy_model_management

    def release():
        module.calls.append("released")

    def give_way(required, device):
        module.calls.append("gave way")

    for _ in range(2):
        runtime.on_models_unloaded(release)
        runtime.on_memory_needed(give_way)
    module.unload_all_models()
    assert module.calls == [("unload_all_models",), ("free_memory", 1e30, "cpu"), "gave way", "released"]


def test_comfyui_freeing_memory_asks_ours_after_its_own(comfy_model_management):
    """ComfyUI's free_memory (before it loads a model, and inside unload_all_models) unloads its
    own models first, then the pack hears how much is needed where."""
    module = comfy_model_management
    heard = []

    def give_way(required, device):
        heard.append((required, str(device), list(module.own_models)))

    assert runtime.on_memory_needed(give_way)
    assert runtime.on_memory_needed(lambda required, device: 1 / 0)  # must not break ComfyUI's loading
    assert module.free_memory(5000, torch.device("cpu"), keep_loaded=["comfy unet"]) == ["comfy clip"]
    module.unload_all_models()
    module.free_memory(0, None, pins_required=1, ram_required=7000)  # ComfyUI's RAM-pressure cache after a node
    assert heard == [(5000, "cpu", ["comfy unet"]), (1e30, "cpu", []), (0, "None", []), (7000, "cpu", [])]


@pytest.mark.parametrize("ram", [None, 0, -1, True, "7000"])
def test_a_ram_required_comfyui_passes_as_none_or_nothing_is_not_an_error(comfy_model_management, ram):
    """ComfyUI's free_memory takes ram_required=None (and callers pass 0): the wrapper neither
    raises into ComfyUI nor asks the pack for RAM then; only a positive number is a need."""
    module = comfy_model_management
    heard = []
    runtime.on_memory_needed(lambda required, device: heard.append((required, str(device))))
    module.free_memory(5000, torch.device("cpu"), ram_required=ram)
    assert heard == [(5000, "cpu")] and ("free_memory", 5000, "cpu") in module.calls


def test_the_pack_making_room_unloads_comfyuis_models_not_its_own(comfy_model_management):
    module = comfy_model_management
    heard = []
    runtime.on_memory_needed(lambda required, device: heard.append(required))
    runtime.make_room(4000, torch.device("cpu"))
    assert module.calls == [("free_memory", 5000, "cpu")]  # plus ComfyUI's inference reserve
    assert module.own_models == [] and heard == []


def test_hooks_come_back_when_comfyui_restores_its_functions(comfy_model_management):
    """ComfyUI puts back functions it does not want hooked (hook_breaker): registering again
    (the cache does at every load) wraps them again."""
    module = comfy_model_management
    original = module.free_memory
    heard = []
    runtime.on_memory_needed(lambda required, device: heard.append(required))
    module.free_memory = original
    module.free_memory(1, torch.device("cpu"))
    assert heard == []
    runtime.on_memory_needed(lambda required, device: heard.append(required))
    module.free_memory(2, torch.device("cpu"))
    assert heard == [2, 2]  # both callbacks, through the one new wrapper


def test_freed_memory_goes_back_to_the_system(comfy_model_management, monkeypatch):
    trimmed = []
    monkeypatch.setattr(runtime, "_malloc_trim", lambda: trimmed.append)
    runtime.return_freed_memory()
    assert comfy_model_management.calls == [("soft_empty_cache",)] and trimmed == [0]


def test_malloc_trim_is_found_on_glibc_and_skipped_elsewhere(monkeypatch):
    runtime._malloc_trim.cache_clear()
    try:
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            assert runtime._malloc_trim() is not None
            runtime._malloc_trim()(0)
        monkeypatch.setattr(sys, "platform", "win32")
        runtime._malloc_trim.cache_clear()
        assert runtime._malloc_trim() is None
        runtime.return_freed_memory()  # still fine: nothing to trim
    finally:
        monkeypatch.undo()
        runtime._malloc_trim.cache_clear()


def test_model_folders_outside_comfyui(tmp_path, monkeypatch):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "a.safetensors").write_bytes(b"x")
    (tmp_path / "ckpt" / "sub").mkdir()
    (tmp_path / "ckpt" / "sub" / "b.safetensors").write_bytes(b"x")
    model = tmp_path / "diff" / "tiny-sdxl"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text("{}")
    (model / "unet" / "config.json").write_text("{}")
    monkeypatch.setenv("SDBRIDGE_CHECKPOINTS_DIR", str(tmp_path / "ckpt"))
    monkeypatch.setenv("SDBRIDGE_DIFFUSERS_DIR", str(tmp_path / "diff"))
    assert runtime.model_filenames("checkpoints") == ["a.safetensors", "sub/b.safetensors"]
    assert runtime.model_filenames("diffusers") == ["tiny-sdxl"]  # folders, not the files inside
    assert runtime.model_path("checkpoints", "sub/b.safetensors") == str(tmp_path / "ckpt" / "sub" / "b.safetensors")
    assert runtime.model_path("checkpoints", "../diff/tiny-sdxl/model_index.json") is None  # stays in its folder
    assert runtime.model_path("checkpoints", "missing.safetensors") is None


def test_interrupt_outside_comfyui():
    runtime.request_interrupt()
    assert runtime.interrupted()
    with pytest.raises(runtime.Interrupted):
        runtime.raise_if_interrupted()
    assert not runtime.interrupted()  # consumed, like ComfyUI's flag


def test_a_model_name_saved_on_windows_finds_its_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.safetensors").write_bytes(b"x")
    monkeypatch.setenv("SDBRIDGE_CHECKPOINTS_DIR", str(tmp_path))
    assert runtime.model_path("checkpoints", "sub\\model.safetensors") == str(tmp_path / "sub" / "model.safetensors")
    assert runtime.model_path("checkpoints", "sub/model.safetensors") == str(tmp_path / "sub" / "model.safetensors")
    for escape in ("../x", "..\\x", "sub/../../x", str(tmp_path.parent / "x"), ""):
        assert runtime.model_path("checkpoints", escape) is None


def test_names_are_compared_the_way_the_file_system_does(monkeypatch, tmp_path):
    """On a case-blind file system (Windows) a root spelled in another case still contains its files."""
    monkeypatch.setattr(runtime.os.path, "normcase", str.lower)
    assert runtime._inside(str(tmp_path / "A" / "b.safetensors"), str(tmp_path / "a"))
    assert not runtime._inside(str(tmp_path / "ab"), str(tmp_path / "a"))
