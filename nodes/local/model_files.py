"""Local models on disk: finding them (ComfyUI's checkpoints, diffusers and loras folders, an
absolute path, or a Hugging Face hub id) and telling their family (SD 1.5, SDXL base, SDXL
refiner) from the weights' names and shapes, before anything is loaded."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .. import runtime
from ..errors import InputError

FAMILY_NAMES = {"sd15": "SD 1.5", "sdxl_base": "SDXL base", "sdxl_refiner": "SDXL refiner"}
SINGLE_FILE_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class CheckpointError(InputError):
    """A model that cannot be used; the message names the file, the problem and the fix."""


# ---------------------------------------------------------------- finding models

def model_choices() -> list[str]:
    """The loader's list: checkpoint files by the names ComfyUI gives them, then "diffusers/<folder>"
    entries. The editor offers a workflow's download links (properties.models) only for a name that
    is a widget value as it stands, so a checkpoint's value is its bare file name."""
    files = [name for name in runtime.model_filenames("checkpoints")
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
            if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "model_index.json")):
                raise CheckpointError(f"'{given}' is a folder without model_index.json. Give the diffusers model "
                                      "folder itself (the one holding model_index.json), not a folder above it.")
            return path
        if re.fullmatch(r"[\w.-]+/[\w.-]+", given):
            return given  # a hub id
        raise CheckpointError(f"'{given}' is neither an absolute path nor a hub id such as "
                              "'stabilityai/stable-diffusion-xl-base-1.0'.")
    prefix, _, rest = model.partition("/")
    if model.lower().endswith(SINGLE_FILE_SUFFIXES + PICKLE_SUFFIXES):
        kind, name = "checkpoints", model
        path = runtime.model_path(kind, name)
        if path is None and prefix == "checkpoints" and rest:  # the list's spelling before 0.1.0
            name = rest
            path = runtime.model_path(kind, name)
    elif prefix == "diffusers" and rest:
        kind, name = "diffusers", rest
        path = runtime.model_path(kind, name)
    else:
        raise CheckpointError(f"'{model}' is not a model from the list. Put checkpoints in ComfyUI's "
                              "models/checkpoints folder (diffusers folders in models/diffusers) and refresh.")
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


def weights_bytes(source: str, element_size: int) -> int:
    """About how much memory `source`'s weights take once loaded at `element_size` bytes per
    value: read from the safetensors headers of the file, or of the weight files a diffusers
    folder loads (per component, the .safetensors without a variant such as .fp16; .bin files,
    where there is nothing else, count by their size)."""
    if os.path.isfile(source):
        return _safetensors_bytes(Path(source), element_size)
    total = 0
    for folder in {path.parent for path in Path(source).rglob("*.*")}:
        tensors = sorted(folder.glob("*.safetensors"))
        plain = [path for path in tensors if path.name.count(".") == 1]
        if plain or tensors:
            total += sum(_safetensors_bytes(path, element_size) for path in plain or tensors)
        else:
            total += sum(path.stat().st_size for path in folder.glob("*.bin"))
    return total


def _safetensors_bytes(path: Path, element_size: int) -> int:
    from safetensors import safe_open

    total = 0
    try:
        with safe_open(str(path), "pt") as handle:
            for key in handle.keys():
                count = 1
                for side in handle.get_slice(key).get_shape():
                    count *= side
                total += count * element_size
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the loader, not here
        return path.stat().st_size
    return total
