"""Registry readiness: pyproject's [tool.comfy] names the pack, and its ComfyUI version
requirement is the range the README says was tried."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
COMFY = PYPROJECT["tool"]["comfy"]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def readme_section(title: str) -> str:
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert found, f"README has no '## {title}' section"
    return found.group(1)


def test_tool_comfy_names_the_publisher_the_pack_and_its_tags():
    assert COMFY["PublisherId"] and COMFY["DisplayName"] == "SD Bridge"
    tags = COMFY["Tags"]
    assert tags and all(isinstance(tag, str) and tag.strip() for tag in tags)
    assert len(set(tags)) == len(tags)


def test_the_comfyui_requirement_is_the_oldest_version_the_readme_says_was_tried():
    requirement = COMFY["requires-comfyui"]
    floor = re.fullmatch(r">=(\d+\.\d+\.\d+)", requirement)
    assert floor, f"requires-comfyui should be '>=X.Y.Z', got {requirement!r}"
    section = readme_section("Compatibility")
    tried = set(re.findall(r"^\| ComfyUI (\d+\.\d+\.\d+)", section, re.M))
    assert tried, "the Compatibility section lists no ComfyUI version in its table"
    assert min(tried, key=version_tuple) == floor.group(1)
    assert f'`requires-comfyui = "{requirement}"`' in section
