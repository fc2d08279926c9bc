"""The help pages ComfyUI's node library shows (web/docs/<NodeId>.md): one for every node, each
what tools/make_docs.py writes from the declarations today."""

from __future__ import annotations

import sys

from conftest import PACK, ROOT

sys.path.insert(0, str(ROOT / "tools"))
import make_docs  # noqa: E402  (tools/ is not a package)

DOCS = ROOT / "web" / "docs"


def test_every_node_has_an_up_to_date_help_page():
    expected = make_docs.pages(PACK.NODE_CLASS_MAPPINGS, PACK.NODE_DISPLAY_NAME_MAPPINGS)
    assert {path.name for path in DOCS.glob("*.md")} == set(expected)
    for name, text in expected.items():
        assert (DOCS / name).read_text(encoding="utf-8") == text, f"{name} is out of date: run tools/make_docs.py"


def test_a_page_names_every_input_its_default_and_the_key_it_needs():
    node = PACK.NODE_CLASS_MAPPINGS["SDBridgeSinkInImg2Img"]
    page = (DOCS / "SDBridgeSinkInImg2Img.md").read_text(encoding="utf-8")
    for param in node.PARAMS:
        assert f"| `{param.name}` |" in page
    assert "| `steps` | 1 to 50 | `30` |" in page and "SINKIN_API_KEY" in page
    assert "example_workflows/sinkin_img2img_controlnet.json" in page
    local = (DOCS / "SDBridgeLocalSDXLRefiner.md").read_text(encoding="utf-8")
    assert "| `refiner_pipeline` | a SDBRIDGE_PIPELINE (link) | (optional) |" in local and "no key, no credits" in local
