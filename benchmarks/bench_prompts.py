"""Benchmark of the local prompt parser on pathological prompts, against the parser it replaced
(kept in tests/support/reference_prompt_parser.py), measured in the same run.

Run: .venv/bin/python benchmarks/bench_prompts.py   (not part of the pytest run)

Prints, for each shape: the time to parse 1 MB with the linear parser (target: well under 1 s),
and both parsers on 20 kB of the same shape with their ratio.
"""

from __future__ import annotations

import time

import harness  # noqa: F401  (first: the tests' helpers and the pack, as the tests load them)
from support import reference_prompt_parser

from sdbridge.nodes.local.prompts import PromptTooComplex, parse_prompt_attention

SHAPES = {
    "spaces": lambda n: "a" + " " * n + "b",
    "spaces and BREAKs": lambda n: ("x" + " " * 5000 + "BREAK") * (n // 5006),
    "nested open (a pairs": lambda n: "(a" * (n // 2),
    "nested closed brackets": lambda n: "(" * (n // 3) + "a" + ")" * (n // 3),
    "(a[b repeated": lambda n: "(a[b" * (n // 4),
    "unmatched closings": lambda n: "a)" * (n // 2),
}


def timed(parse, text: str) -> str:
    started = time.perf_counter()
    try:
        parse(text)
    except PromptTooComplex:
        return f"{time.perf_counter() - started:.3f} s (refused as too complex)"
    return f"{time.perf_counter() - started:.3f} s"


def seconds(parse, text: str) -> float:
    started = time.perf_counter()
    try:
        parse(text)
    except PromptTooComplex:
        pass
    return time.perf_counter() - started


def main() -> None:
    for name, make in SHAPES.items():
        big, small = make(1_000_000), make(20_000)
        new, old = seconds(parse_prompt_attention, small), seconds(reference_prompt_parser.parse_prompt_attention, small)
        print(f"{name:>24}: 1 MB {timed(parse_prompt_attention, big)}; 20 kB new {new:.4f} s, "
              f"before {old:.4f} s ({old / max(new, 1e-6):.0f}x)")


if __name__ == "__main__":
    main()
