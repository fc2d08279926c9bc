"""A batch: one workflow and a list of jobs, each the workflow with its overrides applied.

Overrides name an input as the command line does: NAME sets it on every node that has it,
NODE_ID.NAME on one node; linked inputs cannot be overridden. The jobs come from --set (every
job), --batch FILE.jsonl (one job per line: {"prompt": "...", "seed": 7}) and --seeds (one job
per seed); --batch and --seeds together make every line with every seed.

Whatever is wrong with them raises `BadInput`: one line naming the problem and the fix, exit 2,
before anything is sent.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path


class BadInput(SystemExit):
    """A command line, workflow or batch file the runner cannot use: `str()` says why and what to
    do. Exits with 2 (argparse's code for a bad command line) when nobody catches it."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass
class Job:
    index: int                         # 1-based, its line in the manifest
    overrides: dict                    # what this job changes (the --set ones included)
    prompt: dict = field(repr=False)   # the workflow with them applied


def parse_set(item: str) -> tuple[str, object]:
    """NAME=VALUE; VALUE is read as JSON when it parses (7, 0.5, true) and as text otherwise."""
    name, sep, text = item.partition("=")
    if not sep or not name:
        raise BadInput(f"--set needs NAME=VALUE, got {item!r}")
    try:
        return name, json.loads(text)
    except (ValueError, RecursionError):
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
            raise BadInput(f"{origin} {name}: no node in this workflow has a widget input named {field_name!r}")
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
            raise BadInput(f"--seeds takes numbers and ranges such as 100-119 or 7,9,12, got {text!r}") from None
        if high < low or high - low >= 100_000:
            raise BadInput(f"--seeds {part.strip()}: give a range from low to high, at most 100000 seeds")
        seeds.extend(range(low, high + 1))
    return seeds


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file the user named, or BadInput saying what is wrong with it."""
    if not path.exists():
        raise BadInput(f"{what} {path}: no such file; check the path")
    if path.is_dir():
        raise BadInput(f"{what} {path}: is a folder; give a file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{what} {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise BadInput(f"{what} {path}: cannot be read ({exc.strerror or exc}); check its permissions") from None


def parse_batch(text: str, name: str = "batch") -> list[tuple[int, dict]]:
    """(line number, override object) per line; blank lines and lines starting with # are skipped."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(line)
            json.dumps(row)  # what will be sent: a value too deep to send again is refused here
        except RecursionError:
            raise BadInput(f"{name}:{number}: nested too deeply; each line is a flat object of overrides") from None
        except ValueError as exc:
            raise BadInput(f"{name}:{number}: not JSON ({exc}); each line is an object such as "
                           '{"seed": 7}') from None
        if not isinstance(row, dict):
            raise BadInput(f"{name}:{number}: each line is an object of overrides, e.g. {{\"seed\": 7}}")
        rows.append((number, row))
    if not rows:
        raise BadInput(f"{name}: no jobs in it; write one object of overrides per line")
    return rows


def read_batch(path: Path) -> list[tuple[int, dict]]:
    return parse_batch(read_text(path, "--batch"), str(path))


def read_workflow(path: Path) -> dict:
    """An API-format workflow (the editor's Export (API)), or BadInput saying what it is instead."""
    try:
        workflow = json.loads(read_text(path, "workflow"))
    except RecursionError:
        raise BadInput(f"workflow {path}: nested too deeply to be a workflow") from None
    except ValueError as exc:
        raise BadInput(f"workflow {path}: not JSON ({exc}); give an API-format workflow (*.json)") from None
    if isinstance(workflow, dict) and "nodes" in workflow and "links" in workflow:
        raise BadInput(f"workflow {path}: this is the editor's format; save it with Workflow > Export (API)")
    if not isinstance(workflow, dict) or not workflow or not all(
            isinstance(node, dict) and isinstance(node.get("class_type"), str)
            and isinstance(node.get("inputs", {}), dict) for node in workflow.values()):
        raise BadInput(f"workflow {path}: not an API-format workflow (an object of nodes, each with class_type "
                       "and inputs); save it with Workflow > Export (API)")
    return workflow


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
