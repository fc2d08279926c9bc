"""Local checkpoints: the shipped offline configs, family detection, offline single-file
loading, the pipeline cache, component sharing between SDXL base and refiner, LoRA loading."""

from __future__ import annotations

import gc
import os
import socket
import time
import weakref

import pytest
import torch
from support import tiny_pipelines

from sdbridge.nodes.local import loras, model_files, pipeline_cache

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------- shipped configs and tokenizer

PUBLISHED = {  # parameter counts of the real models
    ("sd15", "unet"): 859_520_964,
    ("sdxl_base", "unet"): 2_567_463_684,
    ("sd15", "text_encoder"): 123_060_480,
    ("sdxl_base", "text_encoder"): 123_060_480,
    ("sdxl_base", "text_encoder_2"): 694_659_840,
    ("sdxl_refiner", "text_encoder_2"): 694_659_840,
    ("sd15", "vae"): 83_653_863,
    ("sdxl_base", "vae"): 83_653_863,
    ("sdxl_refiner", "vae"): 83_653_863,
}


@pytest.mark.parametrize(("family", "component"), sorted(PUBLISHED))
def test_shipped_architectures_have_the_published_parameter_counts(family, component):
    import diffusers
    import transformers

    folder = pipeline_cache.CONFIGS / family
    index = __import__("json").loads((folder / "model_index.json").read_text())
    library, class_name = index[component]
    cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
    with torch.device("meta"):
        if library == "diffusers":
            model = cls.from_config(cls.load_config(folder / component))
        else:
            model = cls(cls.config_class.from_pretrained(folder / component))
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[(family, component)]


def test_shipped_tokenizer_is_clips_vocabulary():
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_pipelines.TOKENIZER_DIR)
    assert len(tokenizer) == 49408
    # The ids the real openai/clip-vit-large-patch14 tokenizer gives.
    assert tokenizer("a photo of an astronaut riding a horse").input_ids == [
        49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407]
    sdxl_second = pipeline_cache._tokenizers("sdxl_base")["tokenizer_2"]
    assert sdxl_second.pad_token == "!" and tokenizer.pad_token == "<|endoftext|>"


# ---------------------------------------------------------------- the test-only LDM writer

@pytest.mark.parametrize("family", ["sd15", "sdxl_base", "sdxl_refiner"])
def test_single_file_loads_bit_identical_to_the_diffusers_folder(local_models, family):
    import diffusers

    cls = getattr(diffusers, pipeline_cache.PIPELINE_CLASSES[family])
    reference = cls.from_pretrained(local_models[family]["folder"])
    loaded = pipeline_cache.load_cached(str(local_models[family]["file"])).pipe
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(reference, name, None) is None:
            assert getattr(loaded, name, None) is None
            continue
        expected, got = getattr(reference, name).state_dict(), getattr(loaded, name).state_dict()
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected), name


# ---------------------------------------------------------------- families

@pytest.mark.parametrize("family", ["sd15", "sdxl_base", "sdxl_refiner"])
def test_family_is_read_from_files_and_folders(local_models, family):
    assert model_files.detect_family(str(local_models[family]["file"])) == family
    assert model_files.detect_family(str(local_models[family]["folder"])) == family


def test_lists_checkpoints_and_diffusers_folders(local_models):
    choices = model_files.model_choices()
    assert "tiny-sd15.safetensors" in choices  # a checkpoint by its bare name, as ComfyUI lists it
    assert "diffusers/tiny-sdxl_refiner" in choices
    assert not any(choice.endswith(".json") for choice in choices)  # files inside diffusers folders are not models
    assert model_files.lora_choices() == ["tiny-sd15-lora.safetensors", "tiny-sdxl_base-lora.safetensors"]


def test_a_checkpoint_is_found_by_its_name_and_by_the_earlier_checkpoints_prefix(local_models):
    path = model_files.resolve("tiny-sd15.safetensors")
    assert path == str(local_models["sd15"]["file"])
    assert model_files.resolve("checkpoints/tiny-sd15.safetensors") == path  # workflows saved before 0.1.0
    assert model_files.resolve("diffusers/tiny-sdxl_base") == str(local_models["sdxl_base"]["folder"])
    with pytest.raises(model_files.CheckpointError, match="is not a model from the list"):
        model_files.resolve("tiny-sd15")


def test_missing_model_names_the_folder(local_models):
    with pytest.raises(model_files.CheckpointError, match="not in ComfyUI's models/checkpoints folder"):
        model_files.resolve("checkpoints/gone.safetensors")
    with pytest.raises(model_files.CheckpointError, match="does not exist"):
        model_files.resolve("", "/nowhere/model.safetensors")


def test_truncated_file_says_download_again(local_models, tmp_path):
    data = local_models["sd15"]["file"].read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(model_files.CheckpointError, match="damaged or incomplete: download it again"):
        pipeline_cache.load_cached(str(broken))


def test_pickle_checkpoints_are_refused(tmp_path):
    pickle = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}}, pickle)
    with pytest.raises(model_files.CheckpointError, match="pickle checkpoint.*safetensors version"):
        model_files.detect_family(str(pickle))


def test_a_lora_is_not_a_checkpoint(local_models):
    with pytest.raises(model_files.CheckpointError, match="no Stable Diffusion UNet.*LoRA"):
        model_files.detect_family(str(local_models["sd15"]["lora"]))


def test_unknown_family_is_an_error(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
               "cond_stage_model.model.token_embedding.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(model_files.CheckpointError, match="2.x"):
        model_files.detect_family(str(other))
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 9, 3, 3)}, str(other))
    with pytest.raises(model_files.CheckpointError, match="inpainting"):
        model_files.detect_family(str(other))


def test_shipped_config_is_used_offline_and_a_mismatch_is_clear(tiny, monkeypatch):
    """The real shipped config with the tiny weights: no network is touched (sockets refuse),
    and the mismatch is reported as an unsupported variant, not a traceback."""
    def no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    pipeline_cache.release_pipelines()
    with pytest.raises(model_files.CheckpointError, match="looks like SD 1.5 but could not be loaded"):
        pipeline_cache.load_cached(str(tiny["sd15"]["file"]))


# ---------------------------------------------------------------- cache

def test_second_load_comes_from_the_cache(local_models):
    path = str(local_models["sd15"]["file"])
    started = time.perf_counter()
    first = pipeline_cache.load_cached(path)
    first_seconds = time.perf_counter() - started
    started = time.perf_counter()
    second = pipeline_cache.load_cached(path)
    assert second.pipe is first.pipe
    assert time.perf_counter() - started < first_seconds / 100
    assert first.pipe.device.type == "cpu" and first.pipe.unet.dtype == torch.float32


def test_cache_keeps_at_most_max_and_reloads_a_changed_file(local_models, monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline_cache, "MAX_PIPELINES", 2)
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(local_models["sd15"]["file"].read_bytes())
    first = pipeline_cache.load_cached(str(copy)).pipe
    pipeline_cache.load_cached(str(local_models["sdxl_base"]["file"]))
    pipeline_cache.load_cached(str(local_models["sd15"]["folder"]))
    assert pipeline_cache.cached_count() == 2
    assert pipeline_cache.load_cached(str(copy)).pipe is not first  # the least recently used was dropped
    again = pipeline_cache.load_cached(str(copy)).pipe
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert pipeline_cache.load_cached(str(copy)).pipe is not again
    assert pipeline_cache.release_pipelines() == 2 and pipeline_cache.cached_count() == 0


def test_release_frees_the_weights_while_handles_live_on(local_models):
    handle = pipeline_cache.load_cached(str(local_models["sd15"]["file"]))  # what ComfyUI keeps as a node output
    weights = weakref.ref(handle.pipe.unet)
    assert pipeline_cache.release_pipelines() == 1
    gc.collect()
    assert weights() is None
    assert handle.pipe.unet is not None and pipeline_cache.cached_count() == 1  # the next use loads again


def test_refiner_shares_identical_encoder_and_vae_with_the_base(local_models):
    base = pipeline_cache.load_cached(str(local_models["sdxl_base"]["file"]))
    refiner = pipeline_cache.load_cached(str(local_models["sdxl_refiner"]["folder"]))
    assert refiner.pipe.text_encoder_2 is base.pipe.text_encoder_2
    assert refiner.pipe.vae is base.pipe.vae
    assert refiner.pipe.unet is not base.pipe.unet


def test_different_weights_are_not_shared(local_models):
    sd15 = pipeline_cache.load_cached(str(local_models["sd15"]["file"]))
    base = pipeline_cache.load_cached(str(local_models["sdxl_base"]["file"]))
    assert base.pipe.text_encoder is not sd15.pipe.text_encoder
    assert base.pipe.vae is not sd15.pipe.vae


def test_img2img_variant_shares_the_weights(local_models):
    local = pipeline_cache.load_cached(str(local_models["sd15"]["file"]))
    img2img = local.variant("StableDiffusionImg2ImgPipeline")
    assert img2img.unet is local.pipe.unet and img2img.vae is local.pipe.vae
    assert local.variant("StableDiffusionImg2ImgPipeline") is img2img


# ---------------------------------------------------------------- LoRA

def test_lora_that_does_not_fit_names_the_family(local_models):
    sd15 = pipeline_cache.load_cached(str(local_models["sd15"]["file"]))
    with pytest.raises(model_files.CheckpointError, match="does not fit this SD 1.5 model"):
        loras.load_lora(sd15, str(local_models["sdxl_base"]["lora"]))
    assert not loras._loaded_adapters(sd15.pipe)


def test_lora_loads_once_and_stays_off_until_asked_for(local_models):
    sd15 = pipeline_cache.load_cached(str(local_models["sd15"]["file"]))
    path = str(local_models["sd15"]["lora"])
    name = loras.load_lora(sd15, path)
    assert loras.load_lora(sd15, path) == name
    assert name in loras._loaded_adapters(sd15.pipe)
    with_lora = sd15.with_loras([(path, 0.5)])
    assert sd15.loras == () and with_lora.pipe is sd15.pipe
    loras.activate_loras(with_lora, with_lora.pipe)
    assert sd15.pipe.get_active_adapters() == [name]


def test_hub_id_that_cannot_be_fetched_says_what_to_do(local_models, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert model_files.resolve("", "someone/some-model") == "someone/some-model"
    with pytest.raises(model_files.CheckpointError, match="could not be downloaded.*download the model and give its folder"):
        pipeline_cache.load_cached("someone/some-model")
    with pytest.raises(model_files.CheckpointError, match="neither an absolute path nor a hub id"):
        model_files.resolve("", "not a model")


def test_out_of_memory_while_loading_empties_the_cache_and_retries(local_models, monkeypatch):
    pipeline_cache.load_cached(str(local_models["sd15"]["file"]))
    real_load, failures = pipeline_cache._load_to_cpu, []

    def fails_once(*args):
        if not failures:
            failures.append(pipeline_cache.cached_count())
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_load(*args)

    monkeypatch.setattr(pipeline_cache, "_load_to_cpu", fails_once)
    loaded = pipeline_cache.load_cached(str(local_models["sdxl_base"]["file"]))
    assert failures == [1] and loaded.family == "sdxl_base"
    assert pipeline_cache.cached_count() == 1  # the SD 1.5 model made room


def test_the_folder_above_a_diffusers_model_gets_a_clear_message(local_models):
    parent = local_models["sd15"]["folder"].parent
    with pytest.raises(model_files.CheckpointError, match="a folder without model_index.json. Give the diffusers model "
                                                          "folder itself"):
        model_files.resolve("", str(parent))
