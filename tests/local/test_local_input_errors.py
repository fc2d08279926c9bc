"""A bad input to a local node raises InputError (a ValueError, as ComfyUI shows it), with the
words it always had: no pipeline is built, so these run without models."""

from __future__ import annotations

import pytest

from sdbridge.nodes.errors import InputError, SDBridgeError
from sdbridge.nodes.local import local_nodes
from sdbridge.nodes.local.model_files import CheckpointError
from sdbridge.nodes.local.prompts import PromptTooComplex


def test_an_unconnected_pipeline_is_an_input_error_with_its_words():
    with pytest.raises(InputError) as caught:
        local_nodes.SDBridgeLocalTxt2Img.PIPELINES[0].check(None, "SD Bridge Local Text to Image")
    assert str(caught.value) == "SD Bridge Local Text to Image: connect 'pipeline' to SD Bridge Load Checkpoint."
    assert isinstance(caught.value, ValueError)


def test_a_pipeline_from_elsewhere_is_an_input_error_with_its_words():
    with pytest.raises(InputError) as caught:
        local_nodes.SDBridgeLoadLoRA.PIPELINE_INPUT.check(object(), "SD Bridge Load LoRA")
    assert str(caught.value) == ("SD Bridge Load LoRA: 'pipeline' must come from SD Bridge Load Checkpoint "
                                 "or Load LoRA.")


def test_a_missing_checkpoint_is_an_input_error_with_its_words(tmp_path, monkeypatch):
    for kind in ("checkpoints", "diffusers", "loras"):
        (tmp_path / kind).mkdir()
        monkeypatch.setenv(f"SDBRIDGE_{kind.upper()}_DIR", str(tmp_path / kind))
    with pytest.raises(InputError) as caught:
        local_nodes.SDBridgeLoadCheckpoint().load("(unused)", str(tmp_path / "gone.safetensors"))
    assert str(caught.value).startswith(f"SD Bridge Load Checkpoint: '{tmp_path / 'gone.safetensors'}' does not exist.")


def test_the_local_layers_own_errors_are_input_errors():
    assert issubclass(CheckpointError, InputError) and issubclass(PromptTooComplex, InputError)
    assert issubclass(InputError, SDBridgeError) and issubclass(InputError, ValueError)


def test_an_unknown_scheduler_is_an_input_error_with_its_words():
    from sdbridge.nodes.local.schedulers import make_scheduler

    with pytest.raises(InputError, match=r"^Unknown scheduler 'Euler A'\. Choose one of: .*Euler a"):
        make_scheduler("Euler A", {})
