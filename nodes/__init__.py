"""Gathers every family's node classes into ComfyUI's mappings (imports stay light: no
diffusers, no network)."""

from .hosted import segmind, sinkin
from .local import local_nodes
from .param_node import node_mappings

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = node_mappings(segmind.NODES + sinkin.NODES + local_nodes.NODES)

from . import routes  # noqa: E402  (after the families: the routes serve them)

routes.install()
