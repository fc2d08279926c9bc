"""The one module that touches ComfyUI's runtime.

Everything the pack needs from ComfyUI (model folders, the user directory, progress bars,
interrupts, messages to the frontend, device choice) goes through here. Each function works
outside ComfyUI too, with a plain fallback, so the pack imports and is tested without it.
ComfyUI modules are imported on first use, never at import time of the pack.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("sdbridge")


@functools.cache
def _comfy(module: str) -> Any | None:
    """ComfyUI's module `module`, or None when the pack runs outside ComfyUI (cached: this is
    asked several times a second while a request waits)."""
    try:
        return importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any failure means "not inside a working ComfyUI"
        return None


# ---------------------------------------------------------------- interrupt

class Interrupted(Exception):
    """Raised outside ComfyUI when a run is interrupted (inside, ComfyUI's own type is raised)."""


_interrupt_flag = threading.Event()  # the fallback flag, for scripts and tests

# ComfyUI clears its interrupt flag in the first worker that raises, so the other requests of a
# prompt would never see it. The pack latches each interrupt it sees: every run begun before it
# (a node's hosted work, with all its requests) counts as interrupted from then on.
_interrupts_seen = 0
_run_token: contextvars.ContextVar[int | None] = contextvars.ContextVar("sdbridge_run", default=None)


def request_interrupt(value: bool = True) -> None:
    """Ask running work to stop (outside ComfyUI; inside, the UI's Cancel button does this)."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.interrupt_current_processing(value)
    if value:
        _interrupt_flag.set()
    else:
        _interrupt_flag.clear()


def begin_run() -> int:
    """Mark the start of one node's work (in this task's context) and return its token: an
    interrupt seen later by any of the prompt's work stops this run too."""
    token = _interrupts_seen
    _run_token.set(token)
    return token


def current_run() -> int | None:
    """The token of the run this code belongs to (None outside a run)."""
    return _run_token.get()


def _flag_set() -> bool:
    mm = _comfy("comfy.model_management")
    if mm is not None and mm.processing_interrupted():
        return True
    return _interrupt_flag.is_set()


def interrupted(token: int | None = None) -> bool:
    """True when the user interrupted: ComfyUI's flag is up, or an interrupt was seen since the
    run `token` (default: this context's run) began."""
    if _flag_set():
        return True
    token = current_run() if token is None else token
    return token is not None and token < _interrupts_seen


def raise_if_interrupted(token: int | None = None) -> None:
    """Raise the interrupt ComfyUI expects (it shows "interrupted", not a traceback)."""
    global _interrupts_seen
    if not interrupted(token):
        return
    if _flag_set():
        _interrupts_seen += 1  # latch it before the flag is cleared below
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()
        stop = getattr(mm, "InterruptProcessingException", None)
        if stop is not None:  # a sibling already cleared ComfyUI's flag
            raise stop()
    _interrupt_flag.clear()
    raise Interrupted("Processing interrupted")


def current_prompt_id() -> str | None:
    """The id of the prompt ComfyUI is running in this context (None outside ComfyUI or in an
    older ComfyUI without an execution context)."""
    utils = _comfy("comfy_execution.utils")
    getter = getattr(utils, "get_executing_context", None)
    context = getter() if getter is not None else None
    prompt_id = getattr(context, "prompt_id", None)
    return str(prompt_id) if prompt_id else None


# ---------------------------------------------------------------- folders

def user_directory() -> Path:
    """ComfyUI's user directory, or $SDBRIDGE_USER_DIR / ~/.config/sdbridge outside it."""
    override = os.environ.get("SDBRIDGE_USER_DIR")
    if override:
        return Path(override)
    fp = _comfy("folder_paths")
    if fp is not None:
        return Path(fp.get_user_directory())
    return Path.home() / ".config" / "sdbridge"


def output_directory() -> Path:
    """ComfyUI's output folder (where Save Image writes), or the user directory's output/ outside it."""
    fp = _comfy("folder_paths")
    if fp is not None and not os.environ.get("SDBRIDGE_USER_DIR"):
        return Path(fp.get_output_directory())
    return user_directory() / "output"


def model_filenames(kind: str) -> list[str]:
    """Files ComfyUI lists for a model folder kind ("checkpoints", "loras", "diffusers")."""
    fp = _comfy("folder_paths")
    if fp is None:
        folder = os.environ.get(f"SDBRIDGE_{kind.upper()}_DIR")
        if not folder or not os.path.isdir(folder):
            return []
        if kind == "diffusers":  # a diffusers model is a folder holding model_index.json
            found = (index.parent for index in Path(folder).rglob("model_index.json"))
        else:
            found = (p for p in Path(folder).rglob("*") if p.is_file())
        return sorted(str(p.relative_to(folder)).replace(os.sep, "/") for p in found)
    if kind == "diffusers":
        # ComfyUI lists files; a diffusers model is a folder holding model_index.json.
        names = set()
        for root in fp.get_folder_paths("diffusers"):
            for index in Path(root).rglob("model_index.json"):
                names.add(str(index.parent.relative_to(root)).replace(os.sep, "/"))
        return sorted(names)
    return list(fp.get_filename_list(kind))


def model_path(kind: str, name: str) -> str | None:
    """Absolute path of a listed model file or folder, or None when it is not there. A name saved
    on Windows ("sub\\model.safetensors") finds the same file on macOS and Linux."""
    name = name.replace("\\", "/")
    fp = _comfy("folder_paths")
    if fp is None:
        folder = os.environ.get(f"SDBRIDGE_{kind.upper()}_DIR")
        roots = [folder] if folder else []
    elif kind == "diffusers":
        roots = list(fp.get_folder_paths("diffusers"))
    else:
        return fp.get_full_path(kind, name)
    for root in roots:
        candidate = os.path.realpath(os.path.join(root, *name.split("/")))
        if _inside(candidate, os.path.realpath(root)) and os.path.exists(candidate):
            return candidate
    return None


def _inside(path: str, root: str) -> bool:
    """True when `path` lies below `root` (a name must stay inside its model folder), compared
    the way the file system compares names (case-blind on Windows)."""
    path, root = os.path.normcase(path), os.path.normcase(root)
    try:
        return path != root and os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


# ---------------------------------------------------------------- progress and messages

class ProgressBar:
    """ComfyUI's progress bar on the node when inside ComfyUI; a no-op counter outside."""

    def __init__(self, total: int, node_id: str | None = None):
        self.total = max(int(total), 1)
        self.value = 0
        utils = _comfy("comfy.utils")
        self._bar = None
        if utils is not None and hasattr(utils, "ProgressBar"):
            try:
                self._bar = utils.ProgressBar(self.total, node_id=node_id)
            except TypeError:  # ComfyUI before node_id was accepted
                self._bar = utils.ProgressBar(self.total)

    def update(self, value: int, preview: Any = None) -> None:
        """Set the absolute progress; `preview` is a PIL image shown on the node where cheap."""
        self.value = min(int(value), self.total)
        if self._bar is not None:
            self._bar.update_absolute(self.value, self.total, ("JPEG", preview, 512) if preview else None)


def _server() -> Any | None:
    server = _comfy("server")
    return getattr(getattr(server, "PromptServer", None), "instance", None)


_redactor = None  # installed by setup (keys.redaction.redact): scrubs keys from everything sent out


def set_redactor(redact) -> None:
    global _redactor
    _redactor = redact


def _scrubbed(value: Any) -> Any:
    if _redactor is None:
        return value
    if isinstance(value, str):
        return _redactor(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


def scrub(text: str) -> str:
    """`text` with every known key removed (by the redactor setup installed)."""
    return _scrubbed(text)


def send_event(event: str, data: dict) -> None:
    """A message to the frontend (the web extension listens for "sdbridge.*" events); keys are
    scrubbed from every text in it."""
    instance = _server()
    if instance is not None:
        instance.send_sync(event, _scrubbed(data))


def show_text(node_id: str | None, text: str, *, log_line: bool = True) -> None:
    """A status line under the node (recent ComfyUI), and the log unless `log_line` is off;
    keys are scrubbed from it."""
    text = _scrubbed(text)
    if log_line:
        log.info("%s", text)
    instance = _server()
    if instance is not None and node_id is not None and hasattr(instance, "send_progress_text"):
        instance.send_progress_text(text, node_id)


def add_routes(register) -> bool:
    """Call `register(routes)` with the server's aiohttp RouteTableDef; False outside ComfyUI."""
    instance = _server()
    if instance is None:
        return False
    register(instance.routes)
    return True


# ---------------------------------------------------------------- devices and memory

def torch_device():
    """The device ComfyUI computes on (CPU outside ComfyUI unless CUDA is present)."""
    import torch

    mm = _comfy("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_dtype(device):
    """fp16/bf16 where ComfyUI would use them on this device, fp32 on CPU."""
    import torch

    if device.type == "cpu":
        return torch.float32
    mm = _comfy("comfy.model_management")
    if mm is not None:
        if mm.should_use_bf16(device):
            return torch.bfloat16
        if mm.should_use_fp16(device):
            return torch.float16
        return torch.float32
    return torch.float16


_unload_callbacks: list = []


def on_models_unloaded(callback) -> bool:
    """Call `callback()` whenever ComfyUI unloads all its models (the "Unload models" button,
    POST /free, its out-of-memory recovery), so the pack's own caches go too. False outside
    ComfyUI. ComfyUI has no hook for this: its function is wrapped once."""
    mm = _comfy("comfy.model_management")
    if mm is None or not hasattr(mm, "unload_all_models"):
        return False
    if not getattr(mm.unload_all_models, "_sdbridge_wrapper", False):
        original = mm.unload_all_models

        @functools.wraps(original)
        def unload_all_models(*args, **kwargs):
            result = original(*args, **kwargs)
            for registered in list(_unload_callbacks):
                try:
                    registered()
                except Exception:  # noqa: BLE001 - a failing cache must not break ComfyUI's unload
                    log.exception("SD Bridge: releasing a cache after ComfyUI unloaded its models failed")
            return result

        unload_all_models._sdbridge_wrapper = True
        mm.unload_all_models = unload_all_models
    if callback not in _unload_callbacks:
        _unload_callbacks.append(callback)
    return True


UNLOAD_EVERYTHING = 1e29  # ComfyUI's unload_all_models asks free_memory for 1e30 bytes
_memory_callbacks: list = []
_making_room = threading.local()  # set while the pack itself asks ComfyUI for room


def on_memory_needed(callback) -> bool:
    """Call `callback(memory_required, device)` each time ComfyUI's model management frees
    memory for its own models (`free_memory`: before it loads a model, and for everything on
    "Unload models" and POST /free), after ComfyUI has unloaded what it could of its own. The
    callback drops the pack's models while `free_bytes(device)` is still short of
    `memory_required` (all of them when it is UNLOAD_EVERYTHING or more); when ComfyUI also
    says how much RAM it needs (`ram_required`), the callback hears that for the CPU. False outside ComfyUI
    or on a ComfyUI without `free_memory`. ComfyUI has no hook for this: its function is
    wrapped, and wrapped again should something have put the original back."""
    mm = _comfy("comfy.model_management")
    if mm is None or not callable(getattr(mm, "free_memory", None)):
        return False
    if not getattr(mm.free_memory, "_sdbridge_wrapper", False):
        original = mm.free_memory

        @functools.wraps(original)
        def free_memory(memory_required, device, *args, **kwargs):
            result = original(memory_required, device, *args, **kwargs)
            if not getattr(_making_room, "active", False):
                needs = [(memory_required, device)]
                ram = kwargs.get("ram_required")  # RAM for ComfyUI's weights (its RAM-pressure cache too)
                if isinstance(ram, (int, float)) and not isinstance(ram, bool) and ram > 0:  # ComfyUI passes None too
                    import torch

                    needs.append((ram, torch.device("cpu")))
                for registered in list(_memory_callbacks):
                    for need in needs:
                        try:
                            registered(*need)
                        except Exception:  # noqa: BLE001 - a failing cache must not break ComfyUI's loading
                            log.exception("SD Bridge: giving memory back to ComfyUI failed")
            return result

        free_memory._sdbridge_wrapper = True
        mm.free_memory = free_memory  # unload_all_models and load_models_gpu look it up at each call
    if callback not in _memory_callbacks:
        _memory_callbacks.append(callback)
    return True


def make_room(memory_required: int, device) -> None:
    """Before the pack loads a model of `memory_required` bytes: let ComfyUI unload (to its
    offload device) as many of its own models as needed for that and its inference reserve on
    `device`. The pack's own models stay (the pack's cache decides about those). No-op outside
    ComfyUI."""
    mm = _comfy("comfy.model_management")
    if mm is None or not callable(getattr(mm, "free_memory", None)):
        return
    reserve = mm.minimum_inference_memory() if hasattr(mm, "minimum_inference_memory") else 0
    _making_room.active = True
    try:
        mm.free_memory(memory_required + reserve, device)
    finally:
        _making_room.active = False


def free_bytes(device) -> float:
    """Memory free on `device` as ComfyUI counts it (RAM for the CPU); infinite when unknown."""
    mm = _comfy("comfy.model_management")
    if mm is not None and hasattr(mm, "get_free_memory"):
        return mm.get_free_memory(device)
    if device is not None and device.type == "cpu":
        try:
            import psutil

            return psutil.virtual_memory().available
        except ImportError:
            return float("inf")
    return float("inf")


def return_freed_memory() -> None:
    """After the pack dropped models: give the freed memory back, the GPU's cached blocks through
    ComfyUI (or torch outside it), and on Linux the C library's free heap pages (glibc keeps
    freed weight buffers mapped, so the process would still hold gigabytes it no longer uses)."""
    mm = _comfy("comfy.model_management")
    if mm is not None and hasattr(mm, "soft_empty_cache"):
        mm.soft_empty_cache()
    else:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (macOS, Windows, musl: their allocators have no such call)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim
