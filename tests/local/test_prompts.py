"""A1111 prompt syntax and long prompts -> embeddings (nodes/local/prompts.py), checked against
diffusers' own encode_prompt on tiny random-weight SD 1.5, SDXL base and SDXL refiner pipelines."""

from __future__ import annotations

import copy
import math
import re
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import reference_prompt_parser

from sdbridge.nodes.local.prompts import (
    BREAK,
    WEIGHT_LIMIT,
    PromptTooComplex,
    encode_prompts,
    parse_prompt_attention,
)

# The documents' own prompts (seeds/), syntax included.
RV_PROMPT = ("((selfie)) photo of an american girl and guy, smiling, (yosemite:1.3), mountains, wearing a backpack, "
             "red top, hiking jacket, rocks, river, wood, analog style (look at viewer:1.2) (skin texture), close up, "
             "cinematic light, ((night sky:1.2)), (milkiway:1.4), sidelighting, Fujiflim XT3, DSLR, 50mm, "
             "(long windblown hair)")
RV_NEGATIVE = "(worst quality, low quality, illustration, 3d, 2d, painting, cartoons, sketch), open mouth"
PLAIN = "a photo of an astronaut riding a horse on mars, highly detailed"
# 40 words of one token each: 40 tokens, and 100 of them make two chunks.
LONG_PLAIN = " ".join(["red", "blue", "green", "cat", "dog"] * 20)

R = 1.1


# ---------------------------------------------------------------- parser

@pytest.mark.parametrize(("text", "expected"), [
    ("a ((selfie)) b", [("a ", 1.0), ("selfie", R * R), (" b", 1.0)]),
    ("(yosemite:1.3), mountains", [("yosemite", 1.3), (", mountains", 1.0)]),
    ("((night sky:1.2))", [("night sky", 1.2 * R)]),
    ("[word] x", [("word", 1 / R), (" x", 1.0)]),
    ("[[word]]", [("word", 1 / R / R)]),
    ("([a:1.5)]", [("a", 1.5 / R)]),
    (r"\(literal\) \[too\] back\\slash", [(r"(literal) [too] back\slash", 1.0)]),
    (r"a \q b", [("a q b", 1.0)]),  # a lone backslash vanishes, as in A1111
    ("a BREAK b", [("a", 1.0), BREAK, ("b", 1.0)]),
    ("BREAKfast, a BREAK", [("BREAKfast, a", 1.0), BREAK]),
    ("(a BREAK b)", [("a", R), BREAK, ("b", R)]),
    # Malformed: unbalanced, stray closers, bad weights, weights outside round brackets.
    ("(open", [("open", R)]),
    ("[open", [("open", 1 / R)]),
    ("close) and]", [("close) and]", 1.0)]),
    ("(a:bad)", [("a:bad", R)]),
    ("(a:1.2.3)", [("a:1.2.3", R)]),
    ("(a:.)", [("a:.", R)]),
    ("a:1.3) b", [("a:1.3) b", 1.0)]),
    ("[a:1.3)]", [("a:1.3)", 1 / R)]),
    ("(a:-1)", [("a", -1.0)]),
    ("(a: 2 )", [("a", 2.0)]),
    ("((a:" + "9" * 400 + "))", [("a:" + "9" * 400, R * R)]),  # not a finite number
    ("(a:999999)", [("a", WEIGHT_LIMIT)]),
    ("(a)(b)", [("ab", R)]),
    ("", [("", 1.0)]),
    ("()[]", [("", 1.0)]),
])
def test_parse_reads_a1111_syntax(text, expected):
    parsed = parse_prompt_attention(text)
    assert [fragment[0] for fragment in parsed] == [fragment[0] for fragment in expected]
    assert [fragment[1] for fragment in parsed] == pytest.approx([fragment[1] for fragment in expected])


def test_parse_documents_prompt():
    parsed = dict(parse_prompt_attention(RV_PROMPT))
    assert parsed["selfie"] == pytest.approx(1.21)
    assert parsed["yosemite"] == pytest.approx(1.3)
    assert parsed["night sky"] == pytest.approx(1.32)
    assert parsed["long windblown hair"] == pytest.approx(1.1)
    assert " photo of an american girl and guy, smiling, " in parsed


PIECES = ["(", ")", "[", "]", ":", "\\", "BREAK", " BREAK ", "1.3", ".", "9", "word", " ", "é", "😀", "\n", ",", "x"]
prompt_text = st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=40).map("".join)
SYNTAX_CHARS = re.compile(r"[()\[\]\\]")
BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*")


def _is_subsequence(short: str, long: str) -> bool:
    remaining = iter(long)
    return all(char in remaining for char in short)


@settings(max_examples=400, deadline=None)
@given(prompt_text)
def test_parse_never_fails_and_only_removes_syntax(text):
    parsed = parse_prompt_attention(text)
    assert parsed
    texts = [fragment[0] for fragment in parsed if fragment != BREAK]
    assert all(math.isfinite(weight) and abs(weight) <= WEIGHT_LIMIT for _, weight in parsed)
    # The parser only ever deletes characters (syntax, BREAK with its spaces, lone backslashes).
    assert _is_subsequence("".join(texts), text)
    # Adjacent fragments never share a weight (they are merged) and none is empty.
    plain = [fragment for fragment in parsed if fragment != BREAK]
    assert all(fragment[0] for fragment in plain) or parsed == [("", 1.0)]
    assert all(a[1] != b[1] for a, b in zip(parsed, parsed[1:], strict=False) if BREAK not in (a, b))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([p for p in PIECES if ":" not in p and "BREAK" not in p]) | st.text(
    alphabet=st.characters(exclude_characters=":0-B"), max_size=4), max_size=40).map("".join))
def test_parse_keeps_all_text_without_weights_or_breaks(text):
    """Without ':' (no explicit weights) and without BREAK, the fragments hold exactly the input's
    text with brackets and backslashes removed; and with no '-' or '0' every weight is positive."""
    parsed = parse_prompt_attention(text)
    joined = "".join(fragment[0] for fragment in parsed)
    assert SYNTAX_CHARS.sub("", joined) == SYNTAX_CHARS.sub("", text)
    assert all(weight > 0 for _, weight in parsed)


# ---------------------------------------------------------------- encoding

@pytest.fixture(scope="module")
def pipes():
    from support import tiny_pipelines

    base = tiny_pipelines.build_sdxl_base()
    return {"sd15": tiny_pipelines.build_sd15(), "sdxl_base": base,
            "sdxl_refiner": tiny_pipelines.build_sdxl_refiner(base)}


def _diffusers(pipe, prompt, negative_prompt=None, num_images_per_prompt=1):
    """diffusers' own encode_prompt, as a dict shaped like encode_prompts' answer."""
    with torch.no_grad():
        if getattr(pipe, "text_encoder_2", None) is None:
            embeds = pipe.encode_prompt(prompt, "cpu", num_images_per_prompt, True, negative_prompt)
            return dict(zip(("prompt_embeds", "negative_prompt_embeds"), embeds, strict=True))
        embeds = pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=num_images_per_prompt,
                                    do_classifier_free_guidance=True, negative_prompt=negative_prompt)
    return dict(zip(("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                     "negative_pooled_prompt_embeds"), embeds, strict=True))


def _ours(pipe, prompt, negative_prompt="", num_images_per_prompt=1):
    return encode_prompts(pipe, prompt, negative_prompt, device="cpu", num_images_per_prompt=num_images_per_prompt)


FAMILIES = ("sd15", "sdxl_base", "sdxl_refiner")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("prompt", "negative_prompt"), [
    (PLAIN, "blurry, low quality"),
    ("", "nude, disfigured, blurry"),
    ("cat", None),  # our empty negative = diffusers' "no negative prompt"
    (" ".join(["cat"] * 75), None),  # exactly one full chunk
])
def test_unweighted_prompts_equal_diffusers(pipes, family, prompt, negative_prompt):
    pipe = pipes[family]
    ours = _ours(pipe, prompt, negative_prompt or "", num_images_per_prompt=2)
    theirs = _diffusers(pipe, prompt, negative_prompt, num_images_per_prompt=2)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-6, msg=key)


def test_sdxl_base_empty_negative_is_zeros_refiner_encodes_it(pipes):
    base = _ours(pipes["sdxl_base"], PLAIN)
    assert not base["negative_prompt_embeds"].any() and not base["negative_pooled_prompt_embeds"].any()
    refiner = _ours(pipes["sdxl_refiner"], PLAIN)
    assert refiner["negative_prompt_embeds"].abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_long_prompt_is_chunked(pipes, family):
    pipe = pipes[family]
    ours = _ours(pipe, LONG_PLAIN, "blurry")
    truncated = _diffusers(pipe, LONG_PLAIN, "blurry")  # diffusers keeps the first 75 tokens
    assert ours["prompt_embeds"].shape[1] == 2 * 77
    assert ours["negative_prompt_embeds"].shape == ours["prompt_embeds"].shape
    torch.testing.assert_close(ours["prompt_embeds"][:, :77], truncated["prompt_embeds"], rtol=0, atol=1e-6)
    second = _diffusers(pipe, " ".join(LONG_PLAIN.split()[75:]), "")["prompt_embeds"]
    torch.testing.assert_close(ours["prompt_embeds"][:, 77:], second, rtol=0, atol=1e-6)
    # The short negative is padded with chunks of the empty prompt.
    empty = _diffusers(pipe, "", "")["prompt_embeds"]
    torch.testing.assert_close(ours["negative_prompt_embeds"][:, :77], truncated["negative_prompt_embeds"],
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(ours["negative_prompt_embeds"][:, 77:], empty, rtol=0, atol=1e-6)
    if "pooled_prompt_embeds" in ours:  # from the first chunk, as A1111
        torch.testing.assert_close(ours["pooled_prompt_embeds"], truncated["pooled_prompt_embeds"], rtol=0, atol=1e-6)


def test_long_negative_pads_the_prompt(pipes):
    ours = _ours(pipes["sdxl_base"], "cat", LONG_PLAIN + " " + LONG_PLAIN)
    assert ours["prompt_embeds"].shape == ours["negative_prompt_embeds"].shape == (1, 3 * 77, 32 + 64)


@pytest.mark.parametrize("family", FAMILIES)
def test_break_starts_a_new_chunk(pipes, family):
    pipe = pipes[family]
    ours = _ours(pipe, "a red cat BREAK a blue dog")["prompt_embeds"]
    assert ours.shape[1] == 2 * 77
    torch.testing.assert_close(ours[:, :77], _diffusers(pipe, "a red cat")["prompt_embeds"], rtol=0, atol=1e-6)
    torch.testing.assert_close(ours[:, 77:], _diffusers(pipe, "a blue dog")["prompt_embeds"], rtol=0, atol=1e-6)


def _a1111_emphasis(hidden, weights):
    """The reference: scale each token by its weight, then restore the chunk's mean."""
    scaled = hidden * torch.tensor(weights)[None, :, None]
    return scaled * (hidden.mean() / scaled.mean())


def test_emphasis_scales_tokens_and_keeps_the_mean(pipes):
    from diffusers import StableDiffusionPipeline

    # A fresh encoder's final layer norm gives every token a mean of zero, which no emphasis can
    # restore; a trained one has a bias.
    text_encoder = copy.deepcopy(pipes["sd15"].text_encoder)
    torch.manual_seed(0)
    final_norm = next(module for name, module in text_encoder.named_modules() if name.endswith("final_layer_norm"))
    final_norm.bias.data = torch.randn(text_encoder.config.hidden_size)
    pipe = StableDiffusionPipeline(**{**pipes["sd15"].components, "text_encoder": text_encoder})
    plain = _diffusers(pipe, "a red cat")["prompt_embeds"]
    weights = [1.0, 1.0, 1.5, 1.0] + [1.0] * 73  # BOS, "a", "red" x1.5, "cat", EOS and padding
    ours = _ours(pipe, "a (red:1.5) cat")["prompt_embeds"]
    torch.testing.assert_close(ours, _a1111_emphasis(plain, weights))
    assert ours.mean().item() == pytest.approx(plain.mean().item(), rel=1e-5)
    same = _ours(pipe, "(a red cat:1.0)")["prompt_embeds"]
    assert torch.equal(same, plain)


def test_sdxl_emphasis_applies_to_each_encoder_and_not_to_pooled(pipes):
    pipe = pipes["sdxl_base"]
    plain = _diffusers(pipe, "a red cat", "")
    ours = _ours(pipe, "a [red] cat", "")
    weights = [1.0, 1.0, 1 / R, 1.0] + [1.0] * 73
    width = pipe.text_encoder.config.hidden_size
    expected = torch.cat([_a1111_emphasis(plain["prompt_embeds"][..., :width], weights),
                          _a1111_emphasis(plain["prompt_embeds"][..., width:], weights)], dim=-1)
    torch.testing.assert_close(ours["prompt_embeds"], expected)
    torch.testing.assert_close(ours["pooled_prompt_embeds"], plain["pooled_prompt_embeds"], rtol=0, atol=1e-6)


def test_pipe_without_text_encoder_is_refused():
    class NoEncoders:
        tokenizer = text_encoder = None

    with pytest.raises(ValueError, match="no tokenizer and text encoder"):
        encode_prompts(NoEncoders(), "cat", "", device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_pipelines_take_the_embeddings(pipes, family):
    """The documents' long, weighted prompts drive each real pipeline call. The embeddings already
    hold one row per image, so the pipeline is told one image per prompt."""
    pipe = pipes[family]
    kwargs = _ours(pipe, RV_PROMPT + " BREAK " + RV_PROMPT, RV_NEGATIVE, num_images_per_prompt=2)
    options = dict(num_inference_steps=2, output_type="latent", num_images_per_prompt=1,
                   generator=torch.Generator().manual_seed(0))
    if family == "sdxl_refiner":
        options.update(image=torch.zeros(2, 4, 8, 8), strength=0.5)
    else:
        options.update(height=64, width=64)
    latents = pipe(**kwargs, **options).images
    assert latents.shape == (2, 4, 8, 8) and torch.isfinite(latents).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=prompt_text, negative_prompt=prompt_text)
def test_encoding_never_fails(pipes, prompt, negative_prompt):
    for family in ("sd15", "sdxl_base"):
        ours = _ours(pipes[family], prompt, negative_prompt)
        assert ours["prompt_embeds"].shape == ours["negative_prompt_embeds"].shape
        assert ours["prompt_embeds"].shape[1] % 77 == 0
        assert all(torch.isfinite(tensor).all() for tensor in ours.values())


# ---------------------------------------------------------------- linear parsing

def _same(text: str) -> None:
    """The linear parser gives the reference parser's fragments, bit for bit."""
    assert parse_prompt_attention(text) == reference_prompt_parser.parse_prompt_attention(text), text


@settings(max_examples=1500, deadline=None)
@given(prompt_text)
def test_the_linear_parser_matches_the_reference_on_any_prompt(text):
    _same(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["(", ")", "[", "]", "(a", "[a", "a)", "a]", ":1.5)", ":0)", ":-2)", " ", "  ",
                                 "BREAK", "x", "\\(", ":"]), max_size=200).map("".join))
def test_the_linear_parser_matches_the_reference_on_bracket_soups(text):
    _same(text)


@pytest.mark.parametrize("text", [
    "(" * 200 + "a" + ")" * 200, "(a" * 300, "[a" * 300, "((a)b" * 100, "(a:0.5)" * 50 + "(" * 100 + "b",
    "a" + " " * 3000 + "BREAK" + " " * 3000 + "b", "(" * 80 + "a" + "]" * 80, "(a[b" * 150,
])
def test_the_linear_parser_matches_the_reference_on_deep_and_long_prompts(text):
    _same(text)


MEGABYTE_PROMPTS = {
    "spaces": "a" + " " * 1_000_000 + "b",
    "spaces and breaks": ("x" + " " * 5000 + "BREAK") * 200,
    "nested open pairs": "(a" * 500_000,
    "nested closed": "(" * 330_000 + "a" + ")" * 330_000,
    "square and round": "(a[b" * 250_000,
    "unmatched closings": "a)" * 500_000,
    "colons": ": " * 500_000,
    "digits after a colon": "(a:" + "1" * 1_000_000,
    "backslashes": "\\" * 1_000_000,
}


@pytest.mark.parametrize("name", MEGABYTE_PROMPTS)
def test_a_megabyte_prompt_never_hangs(name):
    """Each finishes or is refused with a clear message; the time is a hang detector only (the
    benchmark prints the real figures)."""
    started = time.perf_counter()
    try:
        parsed = parse_prompt_attention(MEGABYTE_PROMPTS[name])
    except PromptTooComplex as exc:
        assert "remove some brackets" in str(exc)
    else:
        assert parsed
    assert time.perf_counter() - started < 10


@settings(max_examples=25, deadline=None)
@given(unit=st.lists(st.sampled_from(["(", ")", "[", "]", "a", " ", "  ", ":1.2)", ":", "\\", "BREAK", "é"]),
                     min_size=1, max_size=8).map("".join),
       size=st.integers(1_000, 1_000_000))
def test_any_prompt_up_to_a_megabyte_parses_within_its_budget(unit, size):
    text = (unit * (size // len(unit) + 1))[:size]
    started = time.perf_counter()
    try:
        parsed = parse_prompt_attention(text)
    except PromptTooComplex:
        parsed = [("", 1.0)]
    assert time.perf_counter() - started < 5  # a budget against hangs (the benchmark prints real times)
    assert parsed and all(fragment == BREAK or abs(fragment[1]) <= WEIGHT_LIMIT for fragment in parsed)
