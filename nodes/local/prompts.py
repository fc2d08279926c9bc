"""A1111 prompt syntax -> text-encoder embeddings for diffusers pipelines.

The documents' own prompts use AUTOMATIC1111's emphasis syntax (`((selfie))`, `(yosemite:1.3)`,
`[word]`, `BREAK`) and are often longer than CLIP's 77 tokens, which diffusers' `encode_prompt`
neither reads nor accepts. Here a prompt is parsed into weighted fragments, tokenized in
75-token chunks (each wrapped in BOS/EOS and padded to 77, as A1111 does), encoded chunk by chunk,
emphasized A1111's original way (scale the token embeddings, restore the mean), and the chunks are
concatenated along the sequence. A prompt without syntax encodes exactly as `encode_prompt` does.
"""

from __future__ import annotations

import bisect
import math
import re

from ..errors import InputError

ROUND_BRACKET_FACTOR = 1.1  # "(word)"
SQUARE_BRACKET_FACTOR = 1 / 1.1  # "[word]"
# Weights this large only give noise; the limit keeps nested or absurd weights (and the float32
# emphasis maths) finite.
WEIGHT_LIMIT = 1000.0
BREAK = ("BREAK", -1.0)

# The syntax elements, tried in this order; everything between them is plain text (a ':' that
# starts no weight included). A lone backslash is dropped, as A1111 does.
_SYNTAX = re.compile(r"""(
    \\[()\[\]\\]?                                   # \( \) \[ \] \\ are literal; a lone \ vanishes
  | :\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)\s*\)                # ":1.3)" closes a round bracket with that weight
  | [()\[\]]
)""", re.VERBOSE)
_WEIGHT = re.compile(r":\s*(?P<number>[+-]?[.\d]+)\s*\)")
# BREAK splits plain text only where it stands as a word; the spaces around it go with it. Only
# the first space of a run may start a match (or BREAK itself, right after the spaces a previous
# match took), so a long run of spaces is read once: a bare "\s*\bBREAK" rescans the run from each
# of its spaces, which is quadratic.
_BREAK_WORD = re.compile(r"(?<!\s)\s*\bBREAK\b\s*|\bBREAK\b\s*")
# How much weighting work one prompt may ask for (bracket closings times the stretches of text
# they weight); beyond it the prompt is refused with a clear message instead of hanging the worker.
WORK_LIMIT = 2_000_000


class PromptTooComplex(InputError):
    """A prompt whose brackets would take too long to weight; the message says what to change."""


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


def _extend(pieces: list, text: str) -> None:
    """Add text to the last fragment (kept as a list of strings once it has more than one)."""
    last = pieces[-1]
    if last.__class__ is list:
        last.append(text)
    else:
        pieces[-1] = [last, text]


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) fragments with A1111's semantics.

    `(a)` multiplies by 1.1, `[a]` divides by 1.1, `(a:1.3)` multiplies by 1.3, nesting multiplies.
    Brackets left open at the end close there; a closing bracket with nothing to close is text; so is
    a weight outside round brackets. `BREAK` (a whole word, in capitals) is returned as the marker
    `BREAK` = ("BREAK", -1.0), also inside brackets. Adjacent fragments of equal weight are merged,
    empty fragments dropped; an empty prompt gives [("", 1.0)].

    Linear in the prompt's length: a bracket weights every fragment from where it opened to the
    end, so the weights are kept as runs ("blocks") of fragments that have had the same brackets
    applied in the same order, and a closing bracket touches only the last blocks. Each block's
    weight is multiplied factor by factor in closing order, as weighting each fragment would be,
    so the weights are the same to the last bit. Brackets that would take more than WORK_LIMIT
    steps raise PromptTooComplex.
    """
    pieces: list = []       # each fragment: a string, a list of strings (joined at the end), or BREAK
    starts: list[int] = []  # first fragment of each block, increasing
    weights: list[float] = []
    fresh = False           # the last block has had no bracket applied yet
    extend = False          # the next text may join the last fragment (nothing opened or closed since)
    work = 0
    open_round: list[int] = []  # fragment index where each open bracket starts
    open_square: list[int] = []

    def new_fragment(item) -> None:
        nonlocal fresh
        if not fresh:
            starts.append(len(pieces))
            weights.append(1.0)
            fresh = True
        pieces.append(item)

    def add_text(piece: str) -> None:
        nonlocal extend
        parts = _BREAK_WORD.split(piece) if "BREAK" in piece else (piece,)
        for i, part in enumerate(parts):
            if i:
                new_fragment(BREAK)
                extend = False
            if extend:
                _extend(pieces, part)
            else:
                new_fragment(part)
                extend = True


    def multiply_from(start: int, factor: float) -> None:
        nonlocal fresh, extend, work
        extend = False
        if start >= len(pieces):
            return
        fresh = False
        last = len(starts) - 1
        if start >= starts[last]:  # the common case: only (part of) the last block
            if start > starts[last]:
                starts.append(start)
                weights.append(weights[last])
                last += 1
            weight = weights[last] * factor  # _bounded, inlined
            weight = WEIGHT_LIMIT if weight > WEIGHT_LIMIT else -WEIGHT_LIMIT if weight < -WEIGHT_LIMIT else weight
            work += 1
            if last and weight == weights[last - 1]:
                del weights[last], starts[last]
            else:
                weights[last] = weight
            return
        first = bisect.bisect_right(starts, start) - 1
        if starts[first] < start:  # the bracket opened inside this block: split it
            first += 1
            starts.insert(first, start)
            weights.insert(first, weights[first - 1])
        work += len(starts) - first
        if work > WORK_LIMIT:
            raise PromptTooComplex(
                "the prompt has too many nested or repeated brackets to weight "
                f"(more than {WORK_LIMIT:,} steps); remove some brackets, or write a weight as (word:1.5)")
        for i in range(first, len(weights)):
            weights[i] = _bounded(weights[i] * factor)
        i = max(first, 1)  # neighbours that now share a weight share their future too: one block
        while i < len(weights):
            if weights[i] == weights[i - 1]:
                del weights[i], starts[i]
            else:
                i += 1

    def add_plain(piece: str) -> None:
        """Text with no syntax in it (the commonest element: its usual path is short)."""
        nonlocal fresh, extend
        if "BREAK" in piece:
            add_text(piece)
        elif extend:
            _extend(pieces, piece)
        else:
            if not fresh:
                starts.append(len(pieces))
                weights.append(1.0)
                fresh = True
            pieces.append(piece)
            extend = True

    # The prompt as [text, syntax, text, syntax, ..., text], split in one pass by the regex engine.
    parts = _SYNTAX.split(text)
    for i in range(0, len(parts) - 1, 2):
        if parts[i]:
            add_plain(parts[i])
        syntax = parts[i + 1]
        first = syntax[0]
        if first == "(":
            open_round.append(len(pieces))
            extend = False
        elif first == "[":
            open_square.append(len(pieces))
            extend = False
        elif first == ")":
            if open_round:
                multiply_from(open_round.pop(), ROUND_BRACKET_FACTOR)
            else:  # a closing bracket with nothing to close is text
                add_plain(syntax)
        elif first == "]":
            if open_square:
                multiply_from(open_square.pop(), SQUARE_BRACKET_FACTOR)
            else:
                add_plain(syntax)
        elif first == "\\":  # the escaped character, or nothing for a lone backslash
            if len(syntax) > 1:
                add_plain(syntax[1])
        else:  # ":1.3)": closes a round bracket with that weight
            weight = _explicit_weight(_WEIGHT.fullmatch(syntax)["number"])
            if weight is not None and open_round:
                multiply_from(open_round.pop(), weight)
            elif weight is not None:  # a weight outside round brackets is text
                add_plain(syntax)
            else:  # too large for a float: the ':' and the digits are text, the ')' a bracket
                add_plain(":")
                add_plain(syntax[1:-1])
                if open_round:
                    multiply_from(open_round.pop(), ROUND_BRACKET_FACTOR)
                else:
                    add_plain(")")
    if parts[-1]:
        add_plain(parts[-1])
    for start in open_round:  # brackets left open close at the end, outermost first
        multiply_from(start, ROUND_BRACKET_FACTOR)
    for start in open_square:
        multiply_from(start, SQUARE_BRACKET_FACTOR)

    merged: list = []  # [strings, weight] runs, joined at the end (no quadratic concatenation)
    ends = [*starts[1:], len(pieces)] if starts else []
    for block_start, block_end, weight in zip(starts, ends, weights, strict=True):
        for piece in pieces[block_start:block_end]:
            if piece is BREAK:
                merged.append(BREAK)
            elif not piece or (piece.__class__ is list and not any(piece)):  # empty ones are dropped first
                continue
            elif merged and merged[-1] is not BREAK and merged[-1][1] == weight:
                merged[-1][0].extend(piece) if piece.__class__ is list else merged[-1][0].append(piece)
            else:
                merged.append([piece if piece.__class__ is list else [piece], weight])
    return [run if run is BREAK else ("".join(run[0]), run[1]) for run in merged] or [("", 1.0)]


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
