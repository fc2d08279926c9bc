"""A1111 prompt syntax -> text-encoder embeddings for diffusers pipelines.

The documents' own prompts use AUTOMATIC1111's emphasis syntax (`((selfie))`, `(yosemite:1.3)`,
`[word]`, `BREAK`) and are often longer than CLIP's 77 tokens, which diffusers' `encode_prompt`
neither reads nor accepts. Here a prompt is parsed into weighted fragments, tokenized in
75-token chunks (each wrapped in BOS/EOS and padded to 77, as A1111 does), encoded chunk by chunk,
emphasized A1111's original way (scale the token embeddings, restore the mean), and the chunks are
concatenated along the sequence. A prompt without syntax encodes exactly as `encode_prompt` does.
"""

from __future__ import annotations

import math
import re

ROUND_BRACKET_FACTOR = 1.1  # "(word)"
SQUARE_BRACKET_FACTOR = 1 / 1.1  # "[word]"
# Weights this large only give noise; the limit keeps nested or absurd weights (and the float32
# emphasis maths) finite.
WEIGHT_LIMIT = 1000.0
BREAK = ("BREAK", -1.0)

# One syntax element per match, tried in this order. A lone backslash is dropped, as A1111 does.
_ELEMENT = re.compile(r"""
    \\(?P<escaped>[()\[\]\\])?             # \( \) \[ \] \\ are literal; a lone \ vanishes
  | (?P<weight>:\s*(?P<number>[+-]?[.\d]+)\s*\))   # ":1.3)" closes a round bracket with that weight
  | (?P<bracket>[()\[\]])
  | (?P<text>[^\\()\[\]:]+|:)
""", re.VERBOSE)
# BREAK splits plain text only where it stands as a word; the spaces around it go with it.
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*")


def _bounded(weight: float) -> float:
    return max(-WEIGHT_LIMIT, min(WEIGHT_LIMIT, weight))


def _explicit_weight(number: str) -> float | None:
    """The weight in "(word:1.3)", or None when the digits and dots do not make a finite number
    (then the ':' and the digits read as text and the ')' closes with 1.1, as in '(word:bad)')."""
    try:
        value = float(number)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) fragments with A1111's semantics.

    `(a)` multiplies by 1.1, `[a]` divides by 1.1, `(a:1.3)` multiplies by 1.3, nesting multiplies.
    Brackets left open at the end close there; a closing bracket with nothing to close is text; so is
    a weight outside round brackets. `BREAK` (a whole word, in capitals) is returned as the marker
    `BREAK` = ("BREAK", -1.0), also inside brackets. Adjacent fragments of equal weight are merged,
    empty fragments dropped; an empty prompt gives [("", 1.0)].
    """
    fragments: list[list] = []  # [text, weight]; a BREAK marker is the tuple itself, never weighted
    open_round: list[int] = []  # index in `fragments` where each open bracket starts
    open_square: list[int] = []

    def add_text(piece: str) -> None:
        for i, part in enumerate(_BREAK_WORD.split(piece)):
            if i:
                fragments.append(BREAK)
            fragments.append([part, 1.0])

    def multiply_from(start: int, factor: float) -> None:
        for fragment in fragments[start:]:
            if fragment is not BREAK:
                fragment[1] = _bounded(fragment[1] * factor)

    position = 0
    while position < len(text):
        match = _ELEMENT.match(text, position)
        position = match.end()
        if match["weight"] is not None:
            weight = _explicit_weight(match["number"])
            if weight is None or not open_round:
                if weight is None:  # re-read from just after the ':'
                    position = match.start() + 1
                    add_text(":")
                else:
                    add_text(match[0])
                continue
            multiply_from(open_round.pop(), weight)
        elif match["bracket"] == "(":
            open_round.append(len(fragments))
        elif match["bracket"] == "[":
            open_square.append(len(fragments))
        elif match["bracket"] == ")" and open_round:
            multiply_from(open_round.pop(), ROUND_BRACKET_FACTOR)
        elif match["bracket"] == "]" and open_square:
            multiply_from(open_square.pop(), SQUARE_BRACKET_FACTOR)
        elif match[0].startswith("\\"):
            add_text(match["escaped"] or "")
        else:  # plain text, a lone ':' or a closing bracket with nothing to close
            add_text(match[0])
    for start in open_round:
        multiply_from(start, ROUND_BRACKET_FACTOR)
    for start in open_square:
        multiply_from(start, SQUARE_BRACKET_FACTOR)

    merged: list[tuple[str, float]] = []
    for fragment in fragments:
        if fragment is BREAK:
            merged.append(BREAK)
        elif fragment[0]:
            if merged and merged[-1] is not BREAK and merged[-1][1] == fragment[1]:
                merged[-1] = (merged[-1][0] + fragment[0], fragment[1])
            else:
                merged.append((fragment[0], fragment[1]))
    return merged or [("", 1.0)]


# ---------------------------------------------------------------- tokens in chunks

def _chunks(tokenizer, prompt: str) -> list[tuple[list[int], list[float]]]:
    """The prompt as (token ids, weights) chunks of the tokenizer's full length (77): BOS, up to
    75 tokens, EOS, padding. BREAK ends a chunk early; there is always at least one chunk."""
    size = tokenizer.model_max_length - 2
    fragments = parse_prompt_attention(prompt)
    texts = [fragment[0] for fragment in fragments if fragment != BREAK]
    token_lists = iter(tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
                       if texts else ())

    chunks: list[tuple[list[int], list[float]]] = []
    tokens: list[int] = []
    weights: list[float] = []

    def close_chunk() -> None:
        padding = size - len(tokens)
        chunks.append(([tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * padding,
                       [1.0, *weights, 1.0] + [1.0] * padding))
        tokens.clear()
        weights.clear()

    for fragment in fragments:
        if fragment == BREAK:
            close_chunk()
            continue
        for token in next(token_lists):
            if len(tokens) == size:
                close_chunk()
            tokens.append(token)
            weights.append(fragment[1])
    if tokens or not chunks:
        close_chunk()
    return chunks


def _pad_chunks(chunks: list, count: int, tokenizer) -> list:
    """Longer with chunks of the empty prompt, as A1111 pads the shorter of prompt and negative."""
    return chunks + _chunks(tokenizer, "") * (count - len(chunks))


# ---------------------------------------------------------------- embeddings

def _emphasize(hidden, weights):
    """A1111's original emphasis, per chunk: scale each token's embedding by its weight, then
    rescale the chunk so its mean is what it was."""
    import torch

    for row in range(hidden.shape[0]):
        if bool((weights[row] == 1.0).all()):
            continue  # leaves unweighted chunks bit-identical to diffusers
        chunk = hidden[row].float()
        original_mean = chunk.mean()
        chunk = chunk * weights[row, :, None]
        restored = chunk * (original_mean / chunk.mean())
        if torch.isfinite(restored).all():  # a mean of (nearly) zero cannot be restored
            chunk = restored
        hidden[row] = chunk.to(hidden.dtype)
    return hidden


def _encode_chunks(text_encoder, chunk_lists: list[list], *, penultimate: bool, device):
    """Encode every chunk of every prompt in one batch. Returns, per prompt, the hidden states
    [1, chunks*77, width] and the pooled output of its first chunk (None without a projection)."""
    import torch

    rows = [chunk for chunks in chunk_lists for chunk in chunks]
    ids = torch.tensor([tokens for tokens, _ in rows], dtype=torch.long, device=device)
    weights = torch.tensor([w for _, w in rows], dtype=torch.float32, device=device)
    output = text_encoder(ids, output_hidden_states=penultimate)
    hidden = output.hidden_states[-2] if penultimate else output.last_hidden_state
    hidden = _emphasize(hidden.clone(), weights)
    pooled = getattr(output, "text_embeds", None)

    results, start = [], 0
    for chunks in chunk_lists:
        rows_of_prompt = hidden[start:start + len(chunks)]
        results.append((rows_of_prompt.reshape(1, -1, hidden.shape[-1]),
                        None if pooled is None else pooled[start:start + 1]))
        start += len(chunks)
    return results


def encode_prompts(pipe, prompt: str, negative_prompt: str, *, device, num_images_per_prompt: int = 1) -> dict:
    """Keyword arguments for the pipeline call in place of prompt/negative_prompt:
    prompt_embeds, negative_prompt_embeds and, for SDXL (base or refiner), the pooled pair.

    SD 1.5 uses the last hidden state of its encoder; SDXL the penultimate hidden state of each
    encoder, concatenated, and the pooled output of the first chunk of text_encoder_2. An empty
    negative prompt reads as "no negative prompt": zeros where the pipeline's
    force_zeros_for_empty_prompt says so (SDXL base), else the encoding of "".
    The tensors already hold num_images_per_prompt rows: call the pipeline with num_images_per_prompt=1.
    """
    import torch

    encoders = [(tokenizer, encoder) for tokenizer, encoder in
                ((getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)),
                 (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None)))
                if tokenizer is not None and encoder is not None]
    if not encoders:
        raise ValueError(f"{type(pipe).__name__} has no tokenizer and text encoder to encode the prompt with.")
    is_sdxl = getattr(pipe, "text_encoder_2", None) is not None
    zero_negative = is_sdxl and not negative_prompt.strip() and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
    prompts = [prompt] if zero_negative else [prompt, negative_prompt]

    chunk_lists = [[_chunks(tokenizer, text) for text in prompts] for tokenizer, _ in encoders]
    count = max(len(chunks) for per_encoder in chunk_lists for chunks in per_encoder)
    with torch.no_grad():
        encoded = [_encode_chunks(encoder, [_pad_chunks(chunks, count, tokenizer) for chunks in per_encoder],
                                  penultimate=is_sdxl, device=device)
                   for (tokenizer, encoder), per_encoder in zip(encoders, chunk_lists, strict=True)]

    dtype = encoders[-1][1].dtype
    embeds = [torch.cat([per_encoder[i][0].to(dtype) for per_encoder in encoded], dim=-1)
              for i in range(len(prompts))]
    pooled = [encoded[-1][i][1] for i in range(len(prompts))]
    if zero_negative:
        embeds.append(torch.zeros_like(embeds[0]))
        pooled.append(torch.zeros_like(pooled[0]))

    def batch(tensor):
        return tensor.to(device=device, dtype=dtype).repeat_interleave(num_images_per_prompt, dim=0)

    result = {"prompt_embeds": batch(embeds[0]), "negative_prompt_embeds": batch(embeds[1])}
    if is_sdxl:
        result["pooled_prompt_embeds"] = batch(pooled[0])
        result["negative_pooled_prompt_embeds"] = batch(pooled[1])
    return result
