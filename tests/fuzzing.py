"""Hypothesis strategies for node inputs, shared by the fuzz tests: a valid value for each
declared param, and anything at all (what a queue-API script could send instead)."""

from __future__ import annotations

from hypothesis import strategies as st

ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(-10**16, 10**16), st.floats(allow_nan=True),
                     st.text(max_size=12))


def valid_value(param):
    """Values `param` accepts: its choices, a number in range (on its multiple), a boolean, or text
    (non-blank where it must be)."""
    if param.kind == "COMBO":
        return st.sampled_from(param.choices)
    if param.kind == "INT":
        step = param.multiple_of or 1
        return st.integers(int(param.min) // step, int(param.max) // step).map(lambda n: n * step)
    if param.kind == "FLOAT":
        return st.floats(param.min, param.max)
    if param.kind == "BOOLEAN":
        return st.booleans()
    text = st.text(max_size=40)
    return text.filter(str.strip) if param.nonempty else text
