"""Registry readiness: pyproject's [tool.comfy] is complete, its icon is a file of this repository,
the ComfyUI version requirement is the range the README says was tried, the changelog has the
current version, and the publishing workflow is the one the Comfy Registry documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
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


def test_the_icon_is_a_raw_url_of_a_file_in_this_repository():
    repository = PYPROJECT["project"]["urls"]["Repository"]
    owner_and_name = repository.removeprefix("https://github.com/").strip("/")
    prefix = f"https://raw.githubusercontent.com/{owner_and_name}/main/"
    icon = COMFY["Icon"]
    assert icon.startswith(prefix), f"Icon should be {prefix}<path>, got {icon!r}"
    path = ROOT / icon.removeprefix(prefix)
    assert path.is_file(), f"the icon {path} is not in the repository"
    assert path.suffix in (".svg", ".png", ".jpg", ".gif")  # the registry's file types
    assert path.stat().st_size < 20_000
    if path.suffix == ".svg":  # at most 800 x 400 px, the registry's limit
        width, height = (float(v) for v in re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', path.read_text()).groups())
        assert width <= 800 and height <= 400


def test_the_comfyui_requirement_is_the_oldest_version_the_readme_says_was_tried():
    requirement = COMFY["requires-comfyui"]
    floor = re.fullmatch(r">=(\d+\.\d+\.\d+)", requirement)
    assert floor, f"requires-comfyui should be '>=X.Y.Z', got {requirement!r}"
    section = readme_section("Compatibility")
    tried = set(re.findall(r"^\| ComfyUI (\d+\.\d+\.\d+)", section, re.M))
    assert tried, "the Compatibility section lists no ComfyUI version in its table"
    assert min(tried, key=version_tuple) == floor.group(1)
    assert f'`requires-comfyui = "{requirement}"`' in section


def test_the_changelog_has_the_current_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(PYPROJECT['project']['version'])}\b", changelog, re.M)


def test_the_publishing_workflow_runs_the_registry_action_when_pyproject_changes_on_main():
    workflow = (ROOT / ".github" / "workflows" / "publish_action.yml").read_text(encoding="utf-8")
    assert "uses: Comfy-Org/publish-node-action@" in workflow
    assert "personal_access_token: ${{ secrets.REGISTRY_ACCESS_TOKEN }}" in workflow
    assert re.search(r"branches:\s*\n\s*- main\b", workflow)
    assert re.search(r'paths:\s*\n\s*- "pyproject.toml"', workflow)
