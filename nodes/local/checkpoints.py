"""Local models: where they are, which family they belong to, loading them offline, and the
cache that keeps them loaded between runs.

A model is a single-file checkpoint (ComfyUI's `checkpoints` folder), a diffusers folder (its
`diffusers` folder), or an absolute path or Hugging Face hub id for users outside ComfyUI.
Single files load with no network: the diffusers layout of each architecture ships in
`configs/` and is handed to `from_single_file(config=...)`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .. import runtime

CONFIGS = Path(__file__).resolve().parent / "configs"
TOKENIZER_DIR = CONFIGS / "clip_tokenizer"

FAMILY_NAMES = {"sd15": "SD 1.5", "sdxl_base": "SDXL base", "sdxl_refiner": "SDXL refiner"}
# The offline diffusers layout each family's single files load with (tests point these at tiny ones).
CONFIG_DIRS = {family: CONFIGS / family for family in FAMILY_NAMES}
PIPELINE_CLASSES = {"sd15": "StableDiffusionPipeline", "sdxl_base": "StableDiffusionXLPipeline",
                    "sdxl_refiner": "StableDiffusionXLImg2ImgPipeline"}
SINGLE_FILE_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

MAX_PIPELINES = int(os.environ.get("SDBRIDGE_LOCAL_PIPELINES", "2"))  # base + refiner fit by default


class CheckpointError(ValueError):
    """A model that cannot be used; the message names the file, the problem and the fix."""


@dataclasses.dataclass
class Loaded:
    """A pipeline in the cache: the diffusers pipeline (shared by every branch of the graph, so
    never changed per branch), its family, the checkpoint's own scheduler config (every run
    builds its scheduler from it), and the same weights under other pipeline classes."""

    pipe: Any
    family: str
    scheduler_config: dict
    variants: dict = dataclasses.field(default_factory=dict, repr=False)

    def variant(self, class_name: str):
        """The same weights under another pipeline class (txt2img <-> img2img), made once."""
        if type(self.pipe).__name__ == class_name:
            return self.pipe
        if class_name not in self.variants:
            import diffusers

            self.variants[class_name] = getattr(diffusers, class_name).from_pipe(self.pipe)
        return self.variants[class_name]


@dataclasses.dataclass(frozen=True)
class LocalPipeline:
    """What travels between local nodes as SDBRIDGE_PIPELINE: a light handle (source, family and
    the LoRA stack this branch asked for). The weights live in the cache, so ComfyUI keeping a
    node's output does not keep them in memory; after a release, the next use loads them again."""

    source: str
    family: str
    loras: tuple = ()  # (path, scale) pairs, applied at generation time

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES[self.family]

    @property
    def loaded(self) -> Loaded:
        return _loaded(self.source)

    @property
    def pipe(self):
        return self.loaded.pipe

    @property
    def scheduler_config(self) -> dict:
        return self.loaded.scheduler_config

    def variant(self, class_name: str):
        return self.loaded.variant(class_name)

    def with_loras(self, loras) -> LocalPipeline:
        return dataclasses.replace(self, loras=self.loras + tuple(loras))


# ---------------------------------------------------------------- finding models

def model_choices() -> list[str]:
    """The loader's list: "checkpoints/<file>" and "diffusers/<folder>" entries."""
    files = [f"checkpoints/{name}" for name in runtime.model_filenames("checkpoints")
             if name.lower().endswith(SINGLE_FILE_SUFFIXES + PICKLE_SUFFIXES)]
    folders = [f"diffusers/{name}" for name in runtime.model_filenames("diffusers") if _is_diffusers_folder(name)]
    return files + folders


def _is_diffusers_folder(name: str) -> bool:
    path = runtime.model_path("diffusers", name)
    return path is not None and os.path.isfile(os.path.join(path, "model_index.json"))


def lora_choices() -> list[str]:
    """LoRA files in ComfyUI's `loras` folder that SD Bridge opens (.safetensors)."""
    return [name for name in runtime.model_filenames("loras") if name.lower().endswith(SINGLE_FILE_SUFFIXES)]


def resolve(model: str, path_or_hub_id: str = "") -> str:
    """The path (or hub id) a loader input points at."""
    given = path_or_hub_id.strip()
    if given:
        if os.path.isabs(given) or given.startswith(("~", ".")):
            path = os.path.expanduser(given)
            if not os.path.exists(path):
                raise CheckpointError(f"'{given}' does not exist. Give the full path of a .safetensors file or of "
                                      "a diffusers folder (the one holding model_index.json).")
            return path
        if re.fullmatch(r"[\w.-]+/[\w.-]+", given):
            return given  # a hub id
        raise CheckpointError(f"'{given}' is neither an absolute path nor a hub id such as "
                              "'stabilityai/stable-diffusion-xl-base-1.0'.")
    kind, _, name = model.partition("/")
    if kind not in ("checkpoints", "diffusers") or not name:
        raise CheckpointError(f"'{model}' is not a model from the list. Put checkpoints in ComfyUI's "
                              "models/checkpoints folder (diffusers folders in models/diffusers) and refresh.")
    path = runtime.model_path(kind, name)
    if path is None:
        raise CheckpointError(f"'{name}' is not in ComfyUI's models/{kind} folder any more. Put it back, "
                              "or pick another model and refresh the page.")
    return path


# ---------------------------------------------------------------- families

def detect_family(source: str) -> str:
    """The family of a single file (from its weights' names and shapes) or a diffusers folder
    (from its model_index.json and UNet config). Unknown or unsupported families are errors."""
    if os.path.isdir(source):
        return _folder_family(Path(source))
    name = os.path.basename(source)
    if name.lower().endswith(PICKLE_SUFFIXES):
        raise CheckpointError(
            f"'{name}' is a pickle checkpoint, which can run code when it is loaded, so SD Bridge does not open "
            "it. Download the .safetensors version from the model's page instead.")
    if not name.lower().endswith(SINGLE_FILE_SUFFIXES):
        raise CheckpointError(f"'{name}' is not a .safetensors checkpoint or a diffusers folder.")
    return _file_family(source)


def _file_family(path: str) -> str:
    from safetensors import safe_open

    name = os.path.basename(path)
    try:
        with safe_open(path, "pt") as handle:
            keys = set(handle.keys())
            conv_in = "model.diffusion_model.input_blocks.0.0.weight"
            in_channels = handle.get_slice(conv_in).get_shape()[1] if conv_in in keys else None
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise CheckpointError(f"'{name}' could not be read ({exc}). The file is damaged or incomplete: "
                              "download it again.") from None
    if in_channels is None:
        raise CheckpointError(f"'{name}' holds no Stable Diffusion UNet. It may be a LoRA (use SD Bridge Load "
                              "LoRA), a VAE or an embedding rather than a full checkpoint.")
    if in_channels != 4:
        raise CheckpointError(f"'{name}' is an inpainting or other {in_channels}-channel model; SD Bridge loads "
                              "plain SD 1.5 and SDXL checkpoints only.")
    if "conditioner.embedders.1.model.positional_embedding" in keys:
        return "sdxl_base"
    if "conditioner.embedders.0.model.positional_embedding" in keys:
        return "sdxl_refiner"
    if "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys:
        return "sd15"
    if any(key.startswith("cond_stage_model.model.") for key in keys):
        raise CheckpointError(f"'{name}' is a Stable Diffusion 2.x checkpoint; SD Bridge loads SD 1.5 and SDXL.")
    raise CheckpointError(f"'{name}' is not an SD 1.5, SDXL base or SDXL refiner checkpoint (no text encoder "
                          "SD Bridge recognises).")


def _folder_family(folder: Path) -> str:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"'{folder.name}' is not a readable diffusers folder ({exc}). It needs "
                              "model_index.json and unet/config.json.") from None
    class_name = index.get("_class_name", "")
    if unet.get("in_channels", 4) != 4:
        raise CheckpointError(f"'{folder.name}' is an inpainting or other special model; SD Bridge loads plain "
                              "SD 1.5 and SDXL models only.")
    if class_name.startswith("StableDiffusionXL"):
        return "sdxl_refiner" if not (index.get("text_encoder") or [None])[0] else "sdxl_base"
    if class_name.startswith("StableDiffusion") and "XL" not in class_name:
        if unet.get("cross_attention_dim") == 1024:
            raise CheckpointError(f"'{folder.name}' is a Stable Diffusion 2.x model; SD Bridge loads SD 1.5 and SDXL.")
        return "sd15"
    raise CheckpointError(f"'{folder.name}' is a {class_name or 'unknown'} model; SD Bridge loads SD 1.5, SDXL base "
                          "and SDXL refiner models.")


# ---------------------------------------------------------------- loading

def _tokenizers(family: str) -> dict:
    from transformers import CLIPTokenizer

    result = {}
    if family in ("sd15", "sdxl_base"):
        result["tokenizer"] = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    if family in ("sdxl_base", "sdxl_refiner"):
        # SDXL's second tokenizer pads with "!" where the first pads with <|endoftext|>.
        result["tokenizer_2"] = CLIPTokenizer.from_pretrained(TOKENIZER_DIR, pad_token="!")
    return result


def _load_to_cpu(source: str, family: str, dtype):
    import diffusers

    cls = getattr(diffusers, PIPELINE_CLASSES[family])
    if os.path.isfile(source):
        return cls.from_single_file(source, config=str(CONFIG_DIRS[family]), local_files_only=True, dtype=dtype,
                                    **_tokenizers(family))
    extra = {"safety_checker": None, "requires_safety_checker": False} if family == "sd15" else {}
    return cls.from_pretrained(source, dtype=dtype, **extra)


def _download(hub_id: str) -> str:
    """A hub id's files in the local Hugging Face cache (the only network use, at the user's request)."""
    import diffusers

    try:
        return diffusers.DiffusionPipeline.download(hub_id)
    except Exception as exc:  # noqa: BLE001 - hub and network errors come in many types
        raise CheckpointError(f"'{hub_id}' could not be downloaded from the Hugging Face hub ({exc}). Check the id "
                              "and your connection, or download the model and give its folder.") from None


def _load(source: str, device, dtype) -> Loaded:
    import torch

    if not os.path.exists(source):
        source = _download(source)
    family = detect_family(source)
    try:
        pipe = _load_to_cpu(source, family, dtype)
    except (MemoryError, torch.OutOfMemoryError):
        raise  # the cache makes room and tries again
    except Exception as exc:  # noqa: BLE001 - shape mismatches, missing keys, damaged files
        raise CheckpointError(f"'{os.path.basename(source)}' looks like {FAMILY_NAMES[family]} but could not be "
                              f"loaded ({type(exc).__name__}: {exc}). The file may be damaged or a variant SD Bridge "
                              "does not support.") from None
    if family != "sd15" and dtype == torch.float16:
        # SDXL's VAE overflows in fp16 (NaN, black images): decode in fp32, as diffusers does when asked.
        pipe.vae.register_to_config(force_upcast=True)
    _share_identical_components(pipe, device, dtype)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return Loaded(pipe=pipe, family=family, scheduler_config=dict(pipe.scheduler.config))


# ---------------------------------------------------------------- cache

_cache: OrderedDict[tuple, Loaded] = OrderedDict()
_lock = threading.RLock()  # re-entrant: ComfyUI may unload models while a load holds it


def _cache_key(source: str, device, dtype) -> tuple:
    if os.path.isdir(source):
        stamp = os.stat(os.path.join(source, "model_index.json")).st_mtime_ns
    elif os.path.isfile(source):
        info = os.stat(source)
        stamp = (info.st_mtime_ns, info.st_size)
    else:
        stamp = None  # a hub id
    return (os.path.realpath(source) if os.path.exists(source) else source, stamp, str(device), str(dtype))


def load_cached(source: str) -> LocalPipeline:
    """A handle on the loaded pipeline for `source` (loading it now unless cached)."""
    return LocalPipeline(source=source, family=_loaded(source).family)


def _loaded(source: str) -> Loaded:
    """The cached pipeline for `source` when the same file (same modification time) was loaded
    on the same device and dtype; otherwise loaded now, dropping the least recently used beyond
    MAX_PIPELINES. When loading runs out of memory, the cache is emptied and it tries once more."""
    import torch

    device = runtime.torch_device()
    dtype = runtime.torch_dtype(device)
    key = _cache_key(source, device, dtype)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        while len(_cache) >= max(MAX_PIPELINES, 1):
            _cache.popitem(last=False)
        runtime.on_models_unloaded(release_pipelines)  # ComfyUI's "Unload models" frees ours too
        runtime.free_memory_hint()
        try:
            loaded = _load(source, device, dtype)
        except (MemoryError, torch.OutOfMemoryError):
            _release_locked()
            loaded = _load(source, device, dtype)
        _cache[key] = loaded
        return loaded


def release_pipelines() -> int:
    """Drop every cached pipeline (ComfyUI's "unload models" can call this); returns how many."""
    with _lock:
        return _release_locked()


def _release_locked() -> int:
    count = len(_cache)
    _cache.clear()
    gc.collect()
    runtime.free_memory_hint()
    return count


def cached_count() -> int:
    return len(_cache)


def _share_identical_components(pipe, device, dtype) -> None:
    """SDXL base and refiner ship the same second text encoder and VAE: when a cached pipeline
    holds a module with identical weights, use that one instead of a second copy."""
    for other in list(_cache.values()):
        for name in ("text_encoder_2", "vae", "text_encoder"):
            mine, theirs = getattr(pipe, name, None), getattr(other.pipe, name, None)
            if mine is None or theirs is None or mine is theirs or type(mine) is not type(theirs):
                continue
            if theirs.dtype == dtype and theirs.device.type == device.type and _same_weights(mine, theirs):
                pipe.register_modules(**{name: theirs})


def _same_weights(a, b) -> bool:
    import torch

    state_a, state_b = a.state_dict(), b.state_dict()
    if state_a.keys() != state_b.keys():
        return False
    return all(state_a[k].shape == state_b[k].shape and torch.equal(state_a[k], state_b[k].to(state_a[k].device))
               for k in state_a)


# ---------------------------------------------------------------- LoRA

def lora_adapter_name(path: str) -> str:
    """One adapter name per LoRA file version (a changed file loads again under a new name)."""
    import hashlib

    info = os.stat(path)
    digest = hashlib.sha1(f"{os.path.realpath(path)}|{info.st_mtime_ns}|{info.st_size}".encode()).hexdigest()
    return f"sdbridge_{digest[:16]}"


def _loaded_adapters(pipe) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def load_lora(local: LocalPipeline, path: str) -> str:
    """Load a LoRA file into the shared pipeline under its own adapter name, switched off until
    a run that asks for it (other branches of the graph keep the plain weights). A LoRA made
    for another family is an error that names it."""
    name = os.path.basename(path)
    if not name.lower().endswith(SINGLE_FILE_SUFFIXES):
        raise CheckpointError(f"LoRA '{name}' is not a .safetensors file; SD Bridge opens LoRAs as .safetensors only "
                              "(other formats can run code when loaded).")
    pipe = local.pipe
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


def activate_loras(local: LocalPipeline) -> None:
    """Switch on exactly the LoRAs (and scales) of this branch, loading any the cache lost."""
    pipe = local.pipe
    if not local.loras:
        if hasattr(pipe, "get_list_adapters") and _loaded_adapters(pipe):
            pipe.disable_lora()
        return
    weights: dict[str, float] = {}
    for path, scale in local.loras:
        adapter = load_lora(local, path)
        weights[adapter] = weights.get(adapter, 0.0) + scale
    pipe.enable_lora()
    pipe.set_adapters(list(weights), adapter_weights=list(weights.values()))
