"""SD Bridge: hosted (Segmind, SinkIn) and local (diffusers) Stable Diffusion nodes for ComfyUI
with one parameter surface. ComfyUI imports this file: it reads the three names below, and this is
where the pack is wired in (nodes/setup.py)."""

from .nodes import setup as _setup

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = _setup.mappings()
WEB_DIRECTORY = "./web"

_setup.setup()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
