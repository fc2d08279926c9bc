"""Declared params: specs, normalisation, and fuzzing of the validators."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdbridge.nodes.params import Param, ValidationError, input_types, normalize_all, resolve_seed

WIDTH = Param("img_width", "INT", "Width.", default=1024, min=512, max=2048, multiple_of=8)
SCALE = Param("guidance_scale", "FLOAT", "Guidance.", default=7.5, min=1.0, max=25.0, step=0.1)
SIZE = Param("img_height", "COMBO", "Height.", default=512, choices=(512, 768))
OPEN = Param("model_id", "COMBO", "Model.", default="a (x1)", choices=("a (x1)",), open_choices=True)
TEXT = Param("prompt", "STRING", "What to render.", default="", nonempty=True, multiline=True)
FLAG = Param("refiner", "BOOLEAN", "Refine.", default=True)
ALL = (WIDTH, SCALE, SIZE, OPEN, TEXT, FLAG)


def test_input_spec_shapes():
    spec = input_types(ALL, {"unique_id": "UNIQUE_ID"})
    assert spec["required"]["img_width"] == ("INT", {"tooltip": "Width.", "default": 1024, "min": 512,
                                                     "max": 2048, "step": 8})
    assert spec["required"]["guidance_scale"][1]["round"] == 0.1
    assert spec["required"]["img_height"] == ([512, 768], {"tooltip": "Height.", "default": 512})
    assert spec["required"]["prompt"][1]["multiline"] is True
    assert spec["hidden"] == {"unique_id": "UNIQUE_ID"}


@pytest.mark.parametrize("param, value, expected", [
    (WIDTH, "1024", 1024), (WIDTH, 1024.0, 1024), (SCALE, 7, 7.0), (SCALE, "7.5", 7.5),
    (SIZE, "768", 768), (SIZE, 512, 512), (OPEN, "b (y2)", "b (y2)"), (FLAG, "false", False),
    (TEXT, " a cat ", " a cat "),
])
def test_normalize_accepts_queue_api_spellings(param, value, expected):
    result = param.normalize(value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("param, value, words", [
    (WIDTH, True, "expected a number"), (WIDTH, "wide", "is not a number"), (WIDTH, 1000.5, "not a whole number"),
    (WIDTH, 520 + 4, "not a multiple of 8; use 520 or 528"), (WIDTH, 4096, "out of range; use a value from 512 to 2048"),
    (SCALE, float("nan"), "not a finite number"), (SCALE, None, "expected a number"),
    (SIZE, 640, "640 is not allowed. Pick one of: 512, 768"), (OPEN, "", "is not allowed"),
    (TEXT, "\n\t ", "must not be empty"), (TEXT, 5, "expected text"), (FLAG, 1, "is not true or false"),
])
def test_normalize_refuses_with_the_fix(param, value, words):
    with pytest.raises(ValidationError) as caught:
        param.normalize(value)
    assert str(caught.value).startswith(param.name + ": ") and words in str(caught.value)


def test_missing_required_value_is_named():
    with pytest.raises(ValidationError, match="prompt: missing"):
        normalize_all((WIDTH, TEXT), {"img_width": 512})
    with pytest.raises(ValidationError, match="prompt: has no value"):
        normalize_all((WIDTH, TEXT), {"img_width": 512, "prompt": None}, partial=True)
    assert normalize_all(ALL, {"img_width": 512}, partial=True) == {"img_width": 512}


def test_random_seed_is_drawn_up_to_the_seed_params_own_max():
    small = (WIDTH, Param("seed", "INT", "Seed.", default=-1, min=-1, max=10, seed=True))
    seeds = {resolve_seed(small, {"img_width": 512, "seed": -1}) for _ in range(200)}
    assert seeds <= set(range(11)) and len(seeds) > 5
    assert resolve_seed(small, {"seed": 42}) == 42


ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["512", "7.5", "true", "1e400", "0x10", " 8 ", "", "b (y2)"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ALL), ANYTHING)
def test_fuzz_normalize_gives_a_valid_value_or_a_clear_error(param, value):
    try:
        result = param.normalize(value)
    except ValidationError as exc:
        assert str(exc).startswith(param.name + ": ") and len(str(exc)) < 400
        return
    # Whatever is accepted is a valid value of the declared kind, and normalising is stable.
    assert param.normalize(result) == result
    if param.kind == "INT":
        assert type(result) is int and param.min <= result <= param.max and result % param.multiple_of == 0
    elif param.kind == "FLOAT":
        assert type(result) is float and math.isfinite(result) and param.min <= result <= param.max
    elif param.kind == "COMBO" and not param.open_choices:
        assert result in param.choices
    elif param.kind == "STRING":
        assert isinstance(result, str) and result.strip()
    elif param.kind == "BOOLEAN":
        assert isinstance(result, bool)


# ---------------------------------------------------------------- values that would reach a library

JSON_PARAM = Param("parameters", "STRING", "a JSON object", default="{}", json_object=True)


@pytest.mark.parametrize(("text", "words"), [
    ('{"a": NaN}', "NaN is not a JSON number"), ('{"a": -Infinity}', "-Infinity is not a JSON number"),
    ('{"a": 1e400}', "1e400 is out of range"), ('{"a": ' + "9" * 5000 + "}", "a number with 5,000 digits is out of range"),
    ("[" * 100_000, "nested too deeply"), ('{"a": ' * 5000 + "1" + "}" * 5000, "nested too deeply"),
])
def test_json_parameters_that_would_reach_the_http_library_are_refused(text, words):
    with pytest.raises(ValidationError, match=words):
        JSON_PARAM.normalize(text)


@pytest.mark.parametrize(("value", "words"), [
    (10**400, "a number with 401 digits is out of range"), ("9" * 5000, "is not a finite number|is not a number"),
    ("x" * 1_000_000, r"\(1,000,002 characters\) is not a number"),
])
def test_huge_numbers_are_refused_with_a_short_message(value, words):
    with pytest.raises(ValidationError, match=words) as caught:
        Param("guidance_scale", "FLOAT", "t", default=1.0, min=0.0, max=25.0).normalize(value)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(("value", "words"), [("a\x00b", "NUL character"), ("a\ud800b", "lone surrogate")])
def test_text_a_library_would_choke_on_is_refused(value, words):
    for param in (Param("prompt", "STRING", "t", default=""),
                  Param("model", "COMBO", "t", choices=("a",), open_choices=True)):
        with pytest.raises(ValidationError, match=words):
            param.normalize(value)


@pytest.mark.parametrize(("shape", "words"), [((0, 8, 8, 3), "the image batch is empty"),
                                              ((1, 0, 8, 3), "the image batch is empty"),
                                              ((1, 8, 8, 5), "an image with 5 channels"),
                                              ((8, 8, 3), "expected an IMAGE")])
def test_images_a_node_cannot_send_are_refused(shape, words):
    import torch

    with pytest.raises(ValidationError, match=words):
        Param("image", "IMAGE", "t").normalize(torch.zeros(shape))
