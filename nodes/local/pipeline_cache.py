"""Loading local models offline, and the cache that keeps them loaded between runs.

Single files load with no network: the diffusers layout of each architecture ships in
`configs/` and is handed to `from_single_file(config=...)`. What travels between nodes is a
light `LocalPipeline` handle; the weights live only in this cache, so releasing it (ComfyUI's
"Unload models") frees them even while ComfyUI keeps node outputs.

The cache gives way to ComfyUI's own models: when ComfyUI's model management needs memory on
a device and has unloaded what it could of its own, the least recently used pipelines there are
dropped until it has enough ("Unload models" and POST /free drop them all); before a pipeline
loads, ComfyUI is asked to make room for it.

A running generation keeps what it holds (`holding`): a pipeline in use is never dropped in the
middle of a run (dropping it would free nothing, since the run still refers to it, and the run's
next step would load a second copy, or switch LoRAs on the copy and not on the pipeline it runs).
"Unload models" arriving meanwhile drops everything else at once, and what the run holds as soon
as the run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .. import runtime
from .model_files import FAMILY_NAMES, CheckpointError, detect_family, weights_bytes

CONFIGS = Path(__file__).resolve().parent / "configs"
TOKENIZER_DIR = CONFIGS / "clip_tokenizer"
# The offline diffusers layout each family's single files load with (tests point these at tiny ones).
CONFIG_DIRS = {family: CONFIGS / family for family in FAMILY_NAMES}
PIPELINE_CLASSES = {"sd15": "StableDiffusionPipeline", "sdxl_base": "StableDiffusionXLPipeline",
                    "sdxl_refiner": "StableDiffusionXLImg2ImgPipeline"}

MAX_PIPELINES = int(os.environ.get("SDBRIDGE_LOCAL_PIPELINES", "2"))  # base + refiner fit by default


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
    runtime.make_room(weights_bytes(source, dtype.itemsize), device)
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
_held: dict[tuple, int] = {}  # cache key -> runs using that pipeline now
_release_after: set[tuple] = set()  # held pipelines an unload asked for: dropped when their runs end


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
    return _entry(source)[1]


def _entry(source: str) -> tuple[tuple, Loaded]:
    """(its cache key, the cached pipeline for `source`) when the same file (same modification
    time) was loaded on the same device and dtype; otherwise loaded now, dropping the least
    recently used beyond MAX_PIPELINES (never one a run holds). When loading runs out of memory,
    the cache is emptied (but for what runs hold) and it tries once more."""
    import torch

    device = runtime.torch_device()
    dtype = runtime.torch_dtype(device)
    key = _cache_key(source, device, dtype)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return key, _cache[key]
        idle = [k for k in _cache if k not in _held]
        if len(_cache) >= max(MAX_PIPELINES, 1) and idle:
            for old in idle[:len(_cache) - max(MAX_PIPELINES, 1) + 1]:
                del _cache[old]
            _return_memory()  # before the next one loads into the same room
        install_hooks()
        try:
            loaded = _load(source, device, dtype)
        except (MemoryError, torch.OutOfMemoryError):
            loaded = None  # tried again below: inside this block the failed attempt's frames still hold its weights
        if loaded is None:
            _release_locked()
            loaded = _load(source, device, dtype)
        _cache[key] = loaded
        return key, loaded


@contextlib.contextmanager
def holding(*handles: LocalPipeline | None):
    """The loaded pipelines of `handles` (None stays None), kept for the whole run: neither
    "Unload models" nor ComfyUI's need for memory drops them until the block ends; an unload
    that came meanwhile is applied then."""
    keys, found = [], []
    with _lock:
        try:
            for handle in handles:
                if handle is None:
                    found.append(None)
                    continue
                key, loaded = _entry(handle.source)
                _held[key] = _held.get(key, 0) + 1
                keys.append(key)
                found.append(loaded)
        except BaseException:
            _let_go(keys)
            raise
    try:
        yield tuple(found)
    finally:
        _let_go(keys)


def _let_go(keys: list[tuple]) -> None:
    with _lock:
        dropped = 0
        for key in keys:
            _held[key] -= 1
            if _held[key] == 0:
                del _held[key]
                if key in _release_after:
                    _release_after.discard(key)
                    dropped += _cache.pop(key, None) is not None
        if dropped:
            _return_memory()


def release_pipelines() -> int:
    """Drop every cached pipeline (ComfyUI's "Unload models" and POST /free call this through
    the hooks below); returns how many."""
    with _lock:
        return _release_locked()


def _release_locked() -> int:
    """Drop every pipeline no run holds now, and those it holds when their runs end."""
    _release_after.update(key for key in _cache if key in _held)
    idle = [key for key in _cache if key not in _held]
    for key in idle:
        del _cache[key]
    if idle:
        _return_memory()
    return len(idle)


def give_way(memory_required: float, device) -> int:
    """ComfyUI's model management needs `memory_required` bytes on `device` and has unloaded
    what it could of its own models: drop ours there, least recently used first, while it is
    still short (all of them for "Unload models"), but never one a run holds (dropping it frees
    nothing while the run lasts). Returns how many were dropped."""
    dropped = 0
    with _lock:
        if memory_required >= runtime.UNLOAD_EVERYTHING:  # "Unload models": what runs hold goes after them
            _release_after.update(key for key in _cache if key in _held and (device is None or key[2] == str(device)))
        while True:
            here = [key for key in _cache if (device is None or key[2] == str(device)) and key not in _held]
            if not here or (memory_required < runtime.UNLOAD_EVERYTHING
                            and runtime.free_bytes(device) >= memory_required):
                break
            del _cache[here[0]]
            dropped += 1
            _return_memory()
    return dropped


def _return_memory() -> None:
    """Free what the dropped pipelines held now (their modules refer to each other in cycles,
    which only the collector breaks), and hand it back to the system."""
    gc.collect()
    runtime.return_freed_memory()


def install_hooks() -> None:
    """Tie the cache to ComfyUI's model management (checked at every load: cheap, and it puts
    the hooks back should ComfyUI have restored its functions)."""
    runtime.on_models_unloaded(release_pipelines)
    runtime.on_memory_needed(give_way)


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
