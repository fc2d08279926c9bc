"""nodes/runtime.py: the one door to ComfyUI, tested with stand-ins for ComfyUI's modules."""

from __future__ import annotations

import sys
import types

import pytest

from sdbridge.nodes import runtime


@pytest.fixture
def fake_model_management():
    """comfy.model_management as a stand-in, removed (and runtime's cache cleared) on the way out."""
    calls = []
    module = types.ModuleType("comfy.model_management")
    module.unload_all_models = lambda: calls.append("comfy unloaded")
    package = types.ModuleType("comfy")
    package.model_management = module
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "comfy", package)
        patch.setitem(sys.modules, "comfy.model_management", module)
        patch.setattr(runtime, "_unload_callbacks", [])
        runtime._comfy.cache_clear()
        yield module, calls
    runtime._comfy.cache_clear()


def test_outside_comfyui_there_is_no_unload_hook():
    assert runtime.on_models_unloaded(lambda: None) is False


def test_comfyui_unloading_its_models_releases_ours_too(fake_model_management):
    module, calls = fake_model_management
    assert runtime.on_models_unloaded(lambda: calls.append("ours released"))
    assert runtime.on_models_unloaded(lambda: 1 / 0)  # a failing callback must not break ComfyUI
    module.unload_all_models()
    assert calls == ["comfy unloaded", "ours released"]


def test_a_callback_is_registered_once(fake_model_management):
    module, calls = fake_model_management

    def release():
        calls.append("released")

    runtime.on_models_unloaded(release)
    runtime.on_models_unloaded(release)
    module.unload_all_models()
    assert calls == ["comfy unloaded", "released"]


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
