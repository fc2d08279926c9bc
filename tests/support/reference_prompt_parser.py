"""The prompt parser as it was before it was made linear (quadratic on whitespace runs and deep
brackets): the reference the linear one must match, fragment for fragment and bit for bit, on
every prompt this one parses in reasonable time. Kept only for tests."""

from __future__ import annotations

import re

from sdbridge.nodes.local.prompts import (
    BREAK,
    ROUND_BRACKET_FACTOR,
    SQUARE_BRACKET_FACTOR,
    _bounded,
    _explicit_weight,
)

# One syntax element per match, tried in this order. A lone backslash is dropped, as A1111 does.
_ELEMENT = re.compile(r"""
    \\(?P<escaped>[()\[\]\\])?             # \( \) \[ \] \\ are literal; a lone \ vanishes
  | (?P<weight>:\s*(?P<number>[+-]?[.\d]+)\s*\))   # ":1.3)" closes a round bracket with that weight
  | (?P<bracket>[()\[\]])
  | (?P<text>[^\\()\[\]:]+|:)
""", re.VERBOSE)
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*")  # the quadratic one


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """The previous parser, unchanged but for this docstring (see nodes/local/prompts.py)."""
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
