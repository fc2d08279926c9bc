"""Tiny random-weight SD 1.5, SDXL base and SDXL refiner pipelines, saved the two ways users
have models: as diffusers folders and as single-file checkpoints in the original (LDM) layout.

diffusers only converts LDM -> diffusers, so `ldm_state_dict` writes the reverse with a small
test-only key mapping; `test_local_models` proves it by loading the file back with
diffusers' own converter and comparing every weight.

The models use the real CLIP tokenizer shipped with the pack (so the vocabulary is 49408) and
the real layouts at tiny widths; the second SDXL text encoder is wider than the first, as in
the real models (the single-file loader tells them apart by width).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = ROOT / "nodes" / "local" / "configs" / "clip_tokenizer"


# ---------------------------------------------------------------- building

def _tokenizers():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(TOKENIZER_DIR), CLIPTokenizer.from_pretrained(TOKENIZER_DIR, pad_token="!")


def _text_encoder(width: int, *, projection: bool, seed: int):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=2 * width, projection_dim=width,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                            hidden_act="gelu" if projection else "quick_gelu")
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _vae(seed: int, *, force_upcast: bool):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    # Four levels, as in the real VAE: latents are 1/8 of the image size.
    return AutoencoderKL(block_out_channels=(8, 8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=8,
                         layers_per_block=1, sample_size=64, force_upcast=force_upcast).eval()


def _unet(seed: int, **config):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
                                norm_num_groups=8, **config).eval()


def _euler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  steps_offset=1, timestep_spacing="leading")


def build_sd15():
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    tokenizer, _ = _tokenizers()
    unet = _unet(1, block_out_channels=(16, 32), attention_head_dim=4, cross_attention_dim=32,
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return StableDiffusionPipeline(vae=_vae(2, force_upcast=False), text_encoder=_text_encoder(32, projection=False, seed=3),
                                   tokenizer=tokenizer, unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def build_sdxl_base():
    from diffusers import StableDiffusionXLPipeline

    tokenizer, tokenizer_2 = _tokenizers()
    unet = _unet(4, block_out_channels=(16, 32), attention_head_dim=(2, 4), cross_attention_dim=32 + 64,
                 transformer_layers_per_block=(1, 2), use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=64 + 6 * 8,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    return StableDiffusionXLPipeline(vae=_vae(5, force_upcast=True), text_encoder=_text_encoder(32, projection=False, seed=6),
                                     text_encoder_2=_text_encoder(64, projection=True, seed=7), tokenizer=tokenizer,
                                     tokenizer_2=tokenizer_2, unet=unet, scheduler=_euler())


def build_sdxl_refiner(base):
    """A refiner sharing the base's second text encoder and VAE weights, as the real pair does."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    unet = _unet(8, block_out_channels=(16, 32), attention_head_dim=(2, 4), cross_attention_dim=64,
                 transformer_layers_per_block=2, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=64 + 5 * 8,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    return StableDiffusionXLImg2ImgPipeline(vae=base.vae, text_encoder=None, text_encoder_2=base.text_encoder_2,
                                            tokenizer=None, tokenizer_2=base.tokenizer_2, unet=unet,
                                            scheduler=_euler(), requires_aesthetics_score=True,
                                            force_zeros_for_empty_prompt=False)


# ---------------------------------------------------------------- diffusers -> LDM keys (test only)

_RESNET = {"norm1.": "in_layers.0.", "conv1.": "in_layers.2.", "time_emb_proj.": "emb_layers.1.",
           "norm2.": "out_layers.0.", "conv2.": "out_layers.3.", "conv_shortcut.": "skip_connection."}
_VAE_ATTENTION = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}


def _rename(key: str, prefixes: dict[str, str], inner: dict[str, str] | None = None) -> str | None:
    for old, new in prefixes.items():
        if key.startswith(old):
            rest = key[len(old):]
            for inner_old, inner_new in (inner or {}).items():
                if rest.startswith(inner_old):
                    rest = inner_new + rest[len(inner_old):]
                    break
            return new + rest
    return None


def _unet_to_ldm(state: dict, config) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    per_level = config.layers_per_block + 1
    levels = len(config.block_out_channels)
    resnets, others = {}, {}
    for i in range(levels):
        for j in range(config.layers_per_block):
            resnets[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{per_level * i + j + 1}.0."
            others[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{per_level * i + j + 1}.1."
        others[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{per_level * (i + 1)}.0.op."
        for j in range(per_level):
            resnets[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{per_level * i + j}.0."
            others[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{per_level * i + j}.1."
        has_attention = config.up_block_types[i].startswith("CrossAttn")
        others[f"up_blocks.{i}.upsamplers.0."] = f"output_blocks.{per_level * i + per_level - 1}.{2 if has_attention else 1}."
    resnets.update({"mid_block.resnets.0.": "middle_block.0.", "mid_block.resnets.1.": "middle_block.2."})
    others["mid_block.attentions.0."] = "middle_block.1."
    layers = {**DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"], **DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"]}
    result = {}
    for key, value in state.items():
        new = layers.get(key) or _rename(key, resnets, _RESNET) or _rename(key, others)
        assert new is not None, f"no LDM name for UNet key {key}"
        result["model.diffusion_model." + new] = value
    return result


def _vae_to_ldm(state: dict, config) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    levels = len(config.block_out_channels)
    prefixes, attention = {}, {}
    for part in ("encoder", "decoder"):
        prefixes[f"{part}.mid_block.resnets.0."] = f"{part}.mid.block_1."
        prefixes[f"{part}.mid_block.resnets.1."] = f"{part}.mid.block_2."
        attention[f"{part}.mid_block.attentions.0."] = f"{part}.mid.attn_1."
    for i in range(levels):
        prefixes[f"encoder.down_blocks.{i}.resnets."] = f"encoder.down.{i}.block."
        prefixes[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
        prefixes[f"decoder.up_blocks.{i}.resnets."] = f"decoder.up.{levels - 1 - i}.block."
        prefixes[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{levels - 1 - i}.upsample."
    layers = {**DIFFUSERS_TO_LDM_MAPPING["vae"]}
    result = {}
    for key, value in state.items():
        new = layers.get(key)
        if new is None and (new := _rename(key, attention, _VAE_ATTENTION)) is not None:
            if value.ndim == 2:  # LDM's VAE attention uses 1x1 convolutions
                value = value[:, :, None, None]
        new = new or _rename(key, prefixes)
        assert new is not None, f"no LDM name for VAE key {key}"
        result["first_stage_model." + new.replace(".conv_shortcut.", ".nin_shortcut.")] = value
    return result


def _clip_to_ldm(state: dict, prefix: str) -> dict:
    return {prefix + (key if key.startswith("text_model.") else "text_model." + key): value
            for key, value in state.items() if not key.endswith("position_ids")}


def _open_clip_to_ldm(state: dict, prefix: str) -> dict:
    state = {key.removeprefix("text_model."): value for key, value in state.items()}
    result = {prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
              prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
              prefix + "ln_final.weight": state.pop("final_layer_norm.weight"),
              prefix + "ln_final.bias": state.pop("final_layer_norm.bias"),
              prefix + "text_projection": state.pop("text_projection.weight").T.contiguous()}
    state.pop("embeddings.position_ids", None)
    layers = {key.split(".")[2] for key in state if key.startswith("encoder.layers.")}
    names = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    for layer in layers:
        old, new = f"encoder.layers.{layer}.", f"{prefix}transformer.resblocks.{layer}."
        for kind in ("weight", "bias"):
            result[f"{new}attn.in_proj_{kind}"] = torch.cat(
                [state.pop(f"{old}self_attn.{p}_proj.{kind}") for p in "qkv"])
            for diffusers_name, ldm_name in names.items():
                result[f"{new}{ldm_name}.{kind}"] = state.pop(f"{old}{diffusers_name}.{kind}")
    assert not state, f"no LDM name for text encoder keys {sorted(state)}"
    return result


def ldm_state_dict(pipe, family: str) -> dict:
    """The pipeline's weights under the key names of the original single-file checkpoints."""
    result = {**_unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config),
              **_vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config)}
    if family == "sd15":
        result.update(_clip_to_ldm(pipe.text_encoder.state_dict(), "cond_stage_model.transformer."))
    elif family == "sdxl_base":
        result.update(_clip_to_ldm(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        result.update(_open_clip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    else:
        result.update(_open_clip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.0.model."))
    return {key: value.contiguous() for key, value in result.items()}


# ---------------------------------------------------------------- saved models

@functools.cache
def tiny_models(root: str) -> dict[str, dict[str, Path]]:
    """Each family saved once per test session under `root`:
    {family: {"folder": diffusers folder, "file": single-file .safetensors, "lora": a LoRA file
    (SD 1.5 and SDXL base)}}."""
    from safetensors.torch import save_file

    base = build_sdxl_base()
    pipes = {"sd15": build_sd15(), "sdxl_base": base, "sdxl_refiner": build_sdxl_refiner(base)}
    result = {}
    for family, pipe in pipes.items():
        folder = Path(root) / "diffusers" / f"tiny-{family}"
        pipe.save_pretrained(folder, safe_serialization=True)
        file = Path(root) / "checkpoints" / f"tiny-{family}.safetensors"
        file.parent.mkdir(parents=True, exist_ok=True)
        save_file(ldm_state_dict(pipe, family), str(file))
        result[family] = {"folder": folder, "file": file}
    for family in ("sd15", "sdxl_base"):
        result[family]["lora"] = write_lora(pipes[family], Path(root) / "loras" / f"tiny-{family}-lora.safetensors",
                                            seed=11)
    return result


def write_lora(pipe, path: Path, seed: int) -> Path:
    """A small random LoRA on the UNet attention of `pipe`'s architecture (the pipeline itself
    is left as it was), saved in diffusers' LoRA format."""
    import copy

    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = copy.deepcopy(pipe.unet)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    torch.manual_seed(seed)
    state = {key: torch.randn_like(value) * 0.5 for key, value in get_peft_model_state_dict(unet).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(save_directory=str(path.parent), unet_lora_layers=state, weight_name=path.name)
    return path
