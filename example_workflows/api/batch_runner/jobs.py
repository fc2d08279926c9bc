"""A batch: one workflow and a list of jobs, each the workflow with its overrides applied.

Overrides name an input as the command line does: NAME sets it on every node that has it,
NODE_ID.NAME on one node; linked inputs cannot be overridden. The jobs come from --set (every
job), --batch FILE.jsonl (one job per line: {"prompt": "...", "seed": 7}) and --seeds (one job
per seed); --batch and --seeds together make every line with every seed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    index: int                         # 1-based, its line in the manifest
    overrides: dict                    # what this job changes (the --set ones included)
    prompt: dict = field(repr=False)   # the workflow with them applied


def parse_set(item: str) -> tuple[str, object]:
    """NAME=VALUE; VALUE is read as JSON when it parses (7, 0.5, true) and as text otherwise."""
    name, sep, text = item.partition("=")
    if not sep or not name:
        raise SystemExit(f"--set needs NAME=VALUE, got {item!r}")
    try:
        return name, json.loads(text)
    except ValueError:
        return name, text


def apply_values(prompt: dict, overrides: dict, origin: str = "--set") -> dict:
    for name, value in overrides.items():
        node_id, _, field_name = str(name).rpartition(".")
        targets = [node_id] if node_id else list(prompt)
        changed = 0
        for target in targets:
            inputs = prompt.get(target, {}).get("inputs", {})
            if field_name in inputs and not isinstance(inputs[field_name], list):
                inputs[field_name] = value
                changed += 1
        if not changed:
            raise SystemExit(f"{origin} {name}: no node in this workflow has a widget input named {field_name!r}")
    return prompt


def apply_overrides(prompt: dict, overrides: list[str]) -> dict:
    """The --set NAME=VALUE strings applied to `prompt` (in place, returned)."""
    return apply_values(prompt, dict(parse_set(item) for item in overrides))


def parse_seeds(text: str) -> list[int]:
    """"100-119" (both ends included) or "7,9,12" or a mix: "1-3,10"."""
    seeds: list[int] = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last) if sep else int(first)
        except ValueError:
            raise SystemExit(f"--seeds takes numbers and ranges such as 100-119 or 7,9,12, got {text!r}") from None
        if high < low or high - low >= 100_000:
            raise SystemExit(f"--seeds {part.strip()}: give a range from low to high, at most 100000 seeds")
        seeds.extend(range(low, high + 1))
    return seeds


def read_batch(path: Path) -> list[tuple[int, dict]]:
    """(line number, override object) per line; blank lines and lines starting with # are skipped."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise SystemExit(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise SystemExit(f"{path}:{number}: each line is an object of overrides, e.g. {{\"seed\": 7}}")
        rows.append((number, row))
    if not rows:
        raise SystemExit(f"{path}: no jobs in it")
    return rows


def build(workflow: dict, sets: list[str], batch: Path | None = None, seeds: str | None = None) -> list[Job]:
    """Every job of the batch, each checked against the workflow before anything is sent."""
    common = dict(parse_set(item) for item in sets)
    rows = read_batch(batch) if batch else [(0, {})]
    seed_rows = [{"seed": seed} for seed in parse_seeds(seeds)] if seeds else [{}]
    jobs = []
    for number, row in rows:
        for seed_row in seed_rows:
            prompt = apply_values(copy.deepcopy(workflow), common)
            apply_values(prompt, row, f"{batch.name if batch else ''} line {number}:")
            apply_values(prompt, seed_row, "--seeds")
            jobs.append(Job(len(jobs) + 1, {**common, **row, **seed_row}, prompt))
    return jobs


def node_types(workflow: dict) -> set[str]:
    return {node["class_type"] for node in workflow.values() if isinstance(node, dict) and "class_type" in node}
