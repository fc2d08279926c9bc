"""LoRAs on the shared local pipelines: each file loaded once under its own adapter name, and
switched on, with its scale, only for the runs of the branch that asked for it."""

from __future__ import annotations

import os

from .model_files import SINGLE_FILE_SUFFIXES, CheckpointError
from .pipeline_cache import LocalPipeline


def lora_adapter_name(path: str) -> str:
    """One adapter name per LoRA file version (a changed file loads again under a new name)."""
    import hashlib

    info = os.stat(path)
    digest = hashlib.sha1(f"{os.path.realpath(path)}|{info.st_mtime_ns}|{info.st_size}".encode()).hexdigest()
    return f"sdbridge_{digest[:16]}"


def _loaded_adapters(pipe) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def load_lora(local: LocalPipeline, path: str, pipe=None) -> str:
    """Load a LoRA file into the shared pipeline (`pipe`: the one a run holds, else the cache's)
    under its own adapter name, switched off until a run that asks for it (other branches of
    the graph keep the plain weights). A LoRA made for another family is an error that names it."""
    name = os.path.basename(path)
    if not name.lower().endswith(SINGLE_FILE_SUFFIXES):
        raise CheckpointError(f"LoRA '{name}' is not a .safetensors file; SD Bridge opens LoRAs as .safetensors only "
                              "(other formats can run code when loaded).")
    pipe = local.pipe if pipe is None else pipe
    adapter = lora_adapter_name(path)
    if adapter in _loaded_adapters(pipe):
        return adapter
    try:
        pipe.load_lora_weights(path, adapter_name=adapter)
    except Exception as exc:  # noqa: BLE001 - size mismatches, unknown key layouts, damaged files
        _forget_adapter(pipe, adapter)
        raise CheckpointError(f"LoRA '{name}' does not fit this {local.family_name} model ({type(exc).__name__}: "
                              f"{str(exc)[:300]}). Use a LoRA made for {local.family_name}.") from None
    if adapter not in _loaded_adapters(pipe):
        raise CheckpointError(f"LoRA '{name}' holds no weights this {local.family_name} model can use. Use a LoRA "
                              f"made for {local.family_name}.")
    pipe.disable_lora()
    return adapter


def _forget_adapter(pipe, adapter: str) -> None:
    """Remove what a failed load left attached."""
    if adapter in _loaded_adapters(pipe):
        pipe.delete_adapters(adapter)


def activate_loras(local: LocalPipeline, pipe) -> None:
    """Switch on exactly the LoRAs (and scales) of this branch on `pipe`, the pipeline the run
    holds (never looked up again: after an unload that would be another copy), loading any the
    cache lost."""
    if not local.loras:
        if hasattr(pipe, "get_list_adapters") and _loaded_adapters(pipe):
            pipe.disable_lora()
        return
    weights: dict[str, float] = {}
    for path, scale in local.loras:
        adapter = load_lora(local, path, pipe)
        weights[adapter] = weights.get(adapter, 0.0) + scale
    pipe.enable_lora()
    pipe.set_adapters(list(weights), adapter_weights=list(weights.values()))
