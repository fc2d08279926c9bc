"""A stand-in for ComfyUI's comfy.model_management, as far as the pack's memory hooks use it:
`free_memory(memory_required, device, keep_loaded=...)` unloads ComfyUI's own models first (here
a list of names), `unload_all_models()` asks it for everything (1e30 bytes, as ComfyUI 0.19.3
does) by looking `free_memory` up at call time, and `get_free_memory(device)` reports what the
test says is free. Every call is recorded in `calls`."""

from __future__ import annotations

import sys
import types


def model_management(free=lambda device: float("inf")):
    """A module object shaped like comfy.model_management, on the CPU."""
    import torch

    module = types.ModuleType("comfy.model_management")
    module.calls = []
    module.own_models = ["comfy unet", "comfy clip"]
    module.get_free_memory_of = free

    def free_memory(memory_required, device, keep_loaded=(), **kwargs):
        module.calls.append(("free_memory", memory_required, str(device)))
        unloaded = [m for m in module.own_models if m not in keep_loaded]
        module.own_models = [m for m in module.own_models if m in keep_loaded]
        return unloaded

    def unload_all_models():
        module.calls.append(("unload_all_models",))
        module.free_memory(1e30, module.get_torch_device())  # ComfyUI's own body: free_memory(1e30, device)

    module.free_memory = free_memory
    module.unload_all_models = unload_all_models
    module.get_torch_device = lambda: torch.device("cpu")
    module.get_free_memory = lambda device=None, torch_free_too=False: module.get_free_memory_of(device)
    module.minimum_inference_memory = lambda: 1000
    module.soft_empty_cache = lambda force=False: module.calls.append(("soft_empty_cache",))
    module.processing_interrupted = lambda: False
    module.throw_exception_if_processing_interrupted = lambda: None
    module.interrupt_current_processing = lambda value=True: None
    return module


def install(patch, module) -> None:
    """Make `module` importable as comfy.model_management for the duration of `patch`."""
    package = types.ModuleType("comfy")
    package.model_management = module
    patch.setitem(sys.modules, "comfy", package)
    patch.setitem(sys.modules, "comfy.model_management", module)


def with_interrupts(module):
    """Give the stand-in ComfyUI's interrupt, as comfy.model_management has it: a flag set by
    `interrupt_current_processing`, and `throw_exception_if_processing_interrupted` clearing it
    and raising `InterruptProcessingException` with no message (str() of it is empty)."""
    class InterruptProcessingException(Exception):
        pass

    flag = {"up": False}

    def interrupt_current_processing(value=True):
        flag["up"] = value

    def throw_exception_if_processing_interrupted():
        if flag["up"]:
            flag["up"] = False
            raise InterruptProcessingException()

    module.InterruptProcessingException = InterruptProcessingException
    module.interrupt_current_processing = interrupt_current_processing
    module.processing_interrupted = lambda: flag["up"]
    module.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    return module
