"""SD Bridge: hosted (Segmind, SinkIn) and local (diffusers) Stable Diffusion nodes for ComfyUI
with one parameter surface. ComfyUI reads the three names below."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
