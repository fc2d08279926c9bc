"""The node shape every SD Bridge node shares, derived from its declared params.

`ParamNode`: INPUT_TYPES from PARAMS (plus any inputs that take other nodes' outputs),
a VALIDATE_INPUTS that checks what ComfyUI cannot, and the same checks again at run time.
`ImageNode`: a ParamNode that outputs images and an info JSON, with the seed -1 rule.
Hosted nodes (hosted/hosted_node.py) and local nodes (local/local_nodes.py) build on these.

A node's id is its class name and its menu name is DISPLAY_NAME: each is declared once, on the
class, and `node_mappings` derives ComfyUI's two mappings from a list of classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from .errors import InputError
from .images import as_image_tensor
from .params import Param, ValidationError, input_types, normalize_all, validate_inputs_classmethod

HIDDEN = {"unique_id": "UNIQUE_ID"}


class ParamNode:
    PARAMS: ClassVar[Sequence[Param]] = ()
    TITLE: ClassVar[str] = ""         # names the node in run-time errors
    DISPLAY_NAME: ClassVar[str] = ""  # the node menu's name (the id is the class name)
    HIDDEN_INPUTS: ClassVar[dict[str, str]] = HIDDEN  # ComfyUI's hidden inputs: name -> kind

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.VALIDATE_INPUTS = validate_inputs_classmethod(cls.PARAMS)

    @classmethod
    def INPUT_TYPES(cls):
        types = input_types(cls.editor_params(), cls.HIDDEN_INPUTS)
        links = cls.link_inputs()
        for section in ("required", "optional"):
            if links.get(section):
                types[section] = {**links[section], **types.get(section, {})}
        return types

    @classmethod
    def editor_params(cls) -> Sequence[Param]:
        """PARAMS as the editor shows them now (loaders refresh file lists here)."""
        return cls.PARAMS

    @classmethod
    def link_inputs(cls) -> dict[str, dict[str, tuple]]:
        """Inputs fed by other nodes' outputs (not widgets): {"required"|"optional": {name: spec}}."""
        return {}

    @classmethod
    def check_together(cls, values: dict) -> None:
        """Rules that span several inputs; raise ValidationError."""

    @classmethod
    def normalized(cls, values: dict) -> dict:
        """Every param checked and typed at run time (linked values never reach VALIDATE_INPUTS)."""
        try:
            result = normalize_all(cls.PARAMS, values)
            for param in cls.PARAMS:
                if param.kind == "IMAGE" and result.get(param.name) is not None:
                    result[param.name] = _image_input(param.name, result[param.name])
            cls.check_together(result)
        except ValidationError as exc:
            raise InputError(f"{cls.TITLE}: {exc}") from None
        return result


def _image_input(name: str, value):
    """An IMAGE input as a tensor, whatever array type the node before it output."""
    try:
        return as_image_tensor(value)
    except ValueError as exc:
        raise ValidationError(f"{name}: {exc}") from None


class ImageNode(ParamNode):
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "info")
    OUTPUT_TOOLTIPS = (
        "Every image made, as one batch.",
        "What the run returned besides pixels, as JSON: the seed used, time taken, and more.",
    )
    FUNCTION = "generate"

    @classmethod
    def IS_CHANGED(cls, **values):
        # A seed of -1 asks for a new random image each run; otherwise ComfyUI's cache may reuse
        # the last result instead of paying (or computing) the same image again.
        return float("nan") if str(values.get("seed")) == "-1" else ""


def with_choices(param: Param, choices: Sequence[Any], empty: str) -> Param:
    """`param` offering today's `choices` (or one entry that says why there are none)."""
    return dataclasses.replace(param, choices=tuple(choices) or (empty,))


def node_mappings(classes: Sequence[type]) -> tuple[dict[str, type], dict[str, str]]:
    """ComfyUI's NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS for `classes`: the id is
    the class name (saved workflows store it: never rename a shipped class)."""
    classes_by_id = {cls.__name__: cls for cls in classes}
    if len(classes_by_id) != len(classes):
        raise ValueError("two node classes share one id")
    return classes_by_id, {node_id: cls.DISPLAY_NAME or cls.TITLE for node_id, cls in classes_by_id.items()}
