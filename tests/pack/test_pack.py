"""The pack as ComfyUI sees it: mappings, the node contract, and a light import."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

from conftest import ROOT

from sdbridge.nodes.params import Param


def test_mappings_name_every_node_once(pack):
    assert set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    assert pack.WEB_DIRECTORY == "./web"
    for node_id, node in pack.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("SDBridge"), node_id
        assert node.__name__ == node_id


def test_every_node_keeps_the_classic_contract(pack):
    for node_id, node in pack.NODE_CLASS_MAPPINGS.items():
        spec = node.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"} and "required" in spec
        json.dumps(spec)  # /object_info must be able to serialise it
        assert node.CATEGORY.startswith("SD Bridge/"), node_id
        assert isinstance(node.RETURN_TYPES, tuple) and callable(getattr(node, node.FUNCTION))
        if hasattr(node, "RETURN_NAMES"):
            assert len(node.RETURN_NAMES) == len(node.RETURN_TYPES)
        assert node.DESCRIPTION
        for section in ("required", "optional"):
            for name, (kind, options) in spec.get(section, {}).items():
                assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
                if isinstance(kind, list):
                    assert options.get("default", kind[0]) in kind, f"{node_id}.{name} default not a choice"
                elif kind in ("INT", "FLOAT") and "default" in options:
                    assert options.get("min", -1e30) <= options["default"] <= options.get("max", 1e30)


def test_every_declared_default_is_valid(pack):
    for node_id, node in pack.NODE_CLASS_MAPPINGS.items():
        for param in getattr(node, "PARAMS", ()):
            assert isinstance(param, Param)
            if param.default is not None and not param.nonempty:
                assert param.normalize(param.default) == param.default, f"{node_id}.{param.name}"


def test_seed_widgets_control_after_generate(pack):
    for node_id, node in pack.NODE_CLASS_MAPPINGS.items():
        spec = node.INPUT_TYPES()
        seed = spec["required"].get("seed")
        if seed:
            assert seed[1].get("control_after_generate") is True, node_id


def test_no_widget_can_hold_a_key(pack):
    for node_id, node in pack.NODE_CLASS_MAPPINGS.items():
        names = [n for s in ("required", "optional") for n in node.INPUT_TYPES().get(s, {})]
        assert not [n for n in names if "key" in n.lower() or "token" in n.lower()], node_id


def test_async_nodes_run_off_the_event_loop(pack):
    # ComfyUI awaits coroutine functions, letting independent hosted nodes overlap.
    for node_id, node in pack.NODE_CLASS_MAPPINGS.items():
        if node.CATEGORY in ("SD Bridge/Segmind", "SD Bridge/SinkIn"):
            assert inspect.iscoroutinefunction(getattr(node, node.FUNCTION)), node_id


def test_import_is_light():
    """Importing the pack loads no diffusers, transformers or ComfyUI module and opens no socket."""
    code = f"""
import importlib.util, socket, sys
def refuse(*a, **k): raise AssertionError("network touched at import")
socket.socket.connect = refuse
spec = importlib.util.spec_from_file_location("sdbridge", {str(ROOT / "__init__.py")!r},
                                              submodule_search_locations=[{str(ROOT)!r}])
module = importlib.util.module_from_spec(spec); sys.modules["sdbridge"] = module
spec.loader.exec_module(module)
heavy = [m for m in sys.modules if m.split(".")[0] in ("diffusers", "transformers", "comfy", "folder_paths", "server")]
print(len(module.NODE_CLASS_MAPPINGS), heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    count, heavy = out.stdout.strip().split(" ", 1)
    assert int(count) >= 5 and heavy == "[]", out.stdout + out.stderr


def test_validators_name_only_inputs_that_need_the_packs_own_checks(pack):
    """ComfyUI files a validator's message under every input it names: no node takes **kwargs,
    and each named input exists and needs a check ComfyUI cannot do (non-empty, JSON, multiple
    of 8, an open catalog)."""
    for node_id, node in pack.NODE_CLASS_MAPPINGS.items():
        argspec = inspect.getfullargspec(node.VALIDATE_INPUTS)
        assert argspec.varkw is None, node_id
        named = argspec.args[1:]
        spec = node.INPUT_TYPES()
        widgets = {**spec["required"], **spec.get("optional", {})}
        params = {p.name: p for p in node.PARAMS}
        for name in named:
            assert name in widgets and params[name].needs_own_check, f"{node_id}.{name}"
        assert set(named) == {name for name, p in params.items() if p.needs_own_check}, node_id
