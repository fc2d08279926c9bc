"""Gathers the node mappings of each family (imports stay light: no diffusers, no network)."""

from .hosted import segmind, sinkin
from .local import nodes as local_nodes

_FAMILIES = (segmind, sinkin, local_nodes)

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _family in _FAMILIES:
    NODE_CLASS_MAPPINGS.update(_family.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_family.NODE_DISPLAY_NAME_MAPPINGS)

from . import routes  # noqa: E402  (after the families: the routes serve them)

routes.install()
