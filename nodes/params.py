"""Parameters declared once, as data.

A `Param` holds everything the pack knows about one input: its name (the provider's own name),
type, default, range or choices, and tooltip. ComfyUI's INPUT_TYPES, the validation that runs
before any credit is spent, and the values a request is built from all derive from it.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

KINDS = ("STRING", "INT", "FLOAT", "BOOLEAN", "COMBO", "IMAGE")


class ValidationError(InputError):
    """A bad input value; the message names the input, the problem and the fix."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    tooltip: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    multiple_of: int | None = None
    choices: tuple = ()
    optional: bool = False          # listed under "optional": may be absent or unlinked
    multiline: bool = False
    nonempty: bool = False          # a STRING that must hold more than white space
    seed: bool = False              # gets ComfyUI's control_after_generate widget
    open_choices: bool = False      # a COMBO whose saved value may be outside today's list
    json_object: bool = False       # a STRING that must hold a JSON object
    pattern_help: str = ""          # for STRINGs checked by `check`: what a good value looks like
    check: Any = field(default=None, compare=False)  # extra check: value -> message or None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: unknown kind {self.kind!r}")
        if self.kind == "COMBO" and not self.choices:
            raise ValueError(f"{self.name}: a COMBO needs choices")

    @property
    def needs_own_check(self) -> bool:
        """True when ComfyUI's own min/max/combo check would be wrong or too weak for this
        input, so the pack's validator must see it."""
        return bool(self.nonempty or self.json_object or self.check or self.multiple_of or self.open_choices)

    # ---- ComfyUI input spec
    def input_spec(self) -> tuple:
        options: dict[str, Any] = {"tooltip": self.tooltip}
        if self.kind == "COMBO":
            if self.default is not None:
                options["default"] = self.default
            return (list(self.choices), options)
        if self.kind == "IMAGE":
            return ("IMAGE", options)
        if self.default is not None:
            options["default"] = self.default
        if self.kind in ("INT", "FLOAT"):
            for key in ("min", "max", "step"):
                value = getattr(self, key)
                if value is not None:
                    options[key] = value
            if self.multiple_of and self.step is None:
                options["step"] = self.multiple_of
            if self.kind == "FLOAT" and self.step is not None:
                options["round"] = self.step
            if self.seed:
                options["control_after_generate"] = True
        if self.kind == "STRING":
            options["multiline"] = self.multiline
        return (self.kind, options)

    # ---- checking and normalising one value
    def normalize(self, value: Any) -> Any:
        """The value in its proper Python type, or ValidationError naming the fix."""
        kind = self.kind
        if kind == "IMAGE":
            shape = tuple(getattr(value, "shape", ()))
            if len(shape) != 4:
                raise ValidationError(f"{self.name}: expected an IMAGE; connect an image output")
            if 0 in shape:
                raise ValidationError(f"{self.name}: the image batch is empty ({'x'.join(map(str, shape))}); "
                                      "connect a node that outputs at least one image")
            if shape[-1] not in (1, 3, 4):
                raise ValidationError(f"{self.name}: an image with {shape[-1]} channels; connect an RGB image "
                                      "(1, 3 or 4 channels)")
            return value
        if kind == "BOOLEAN":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise ValidationError(f"{self.name}: {_shown(value)} is not true or false")
        if isinstance(value, str):
            _check_text(self.name, value)
        if kind == "STRING":
            if not isinstance(value, str):
                raise ValidationError(f"{self.name}: expected text, got {type(value).__name__}")
            if self.nonempty and not value.strip():
                raise ValidationError(f"{self.name}: must not be empty. {self.tooltip}")
            if self.json_object:
                _parse_json_object(self.name, value)
            self._run_check(value)
            return value
        if kind == "COMBO":
            for choice in self.choices:  # exact match, then a saved int/str mismatch
                if value == choice or (str(value) == str(choice) and not isinstance(value, bool)):
                    return choice
            if self.open_choices and isinstance(value, str) and value.strip():
                self._run_check(value)
                return value
            shown = ", ".join(str(c) for c in self.choices[:16])
            more = f" (and {len(self.choices) - 16} more)" if len(self.choices) > 16 else ""
            raise ValidationError(f"{self.name}: {_shown(value)} is not allowed. Pick one of: {shown}{more}")
        number = _as_number(self.name, value, integer=(kind == "INT"))
        if self.min is not None and number < self.min or self.max is not None and number > self.max:
            raise ValidationError(
                f"{self.name}: {number} is out of range; use a value from {_fmt(self.min)} to {_fmt(self.max)}"
            )
        if self.multiple_of and number % self.multiple_of:
            low = number - number % self.multiple_of
            raise ValidationError(
                f"{self.name}: {number} is not a multiple of {self.multiple_of}; "
                f"use {low} or {low + self.multiple_of}"
            )
        self._run_check(number)
        return number

    def _run_check(self, value: Any) -> None:
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValidationError(f"{self.name}: {problem}")


def _shown(value: Any) -> str:
    """A value as an error message quotes it: short, whatever its size."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text):,} characters)"


def _check_text(name: str, text: str) -> None:
    """Text a library could choke on later: NUL characters, lone surrogates."""
    if "\x00" in text:
        raise ValidationError(f"{name}: contains a NUL character; remove it (it cannot be part of a name or a prompt)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{name}: contains a character that is not valid text (a lone surrogate); "
                              "retype the text") from None


def _fmt(number: float | None) -> str:
    if number is None:
        return "any"
    return str(int(number)) if float(number).is_integer() else str(number)


def _as_number(name: str, value: Any, *, integer: bool) -> int | float:
    if isinstance(value, bool):
        raise ValidationError(f"{name}: expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip()) if not integer else _int_from_text(value)
        except (ValueError, OverflowError):
            raise ValidationError(f"{name}: {_shown(value)} is not a number") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{name}: {value!r} is not a finite number")
        if integer:
            if not value.is_integer():
                raise ValidationError(f"{name}: {value!r} is not a whole number")
            return int(value)
        return value
    if isinstance(value, int):
        if integer:
            return value
        try:
            return float(value)
        except OverflowError:
            raise ValidationError(f"{name}: a number with {len(str(abs(value)))} digits is out of range") from None
    raise ValidationError(f"{name}: expected a number, got {type(value).__name__}")


def _int_from_text(text: str) -> int:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        number = float(text)
        if not number.is_integer():
            raise
        return int(number)


def _parse_json_object(name: str, text: str) -> dict:
    try:
        parsed = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                            parse_int=_short_int) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}). "
            'Write an object such as {"prompt": "a cat", "steps": 25}'
        ) from None
    except RecursionError:
        raise ValidationError(f"{name}: the JSON is nested too deeply; write a flat object of parameters") from None
    except ValueError as exc:  # NaN, Infinity, a number out of range, too many digits
        raise ValidationError(f"{name}: {exc}; write every number as a plain finite number") from None
    if not isinstance(parsed, dict):
        raise ValidationError(
            f"{name}: must be a JSON object in braces, got a JSON {type(parsed).__name__}. "
            'Write an object such as {"prompt": "a cat", "steps": 25}'
        )
    return parsed


def _no_constant(word: str):
    raise ValueError(f"{word} is not a JSON number")


def _short_int(text: str) -> int:
    if len(text.lstrip("-")) > 100:
        raise ValueError(f"a number with {len(text.lstrip('-')):,} digits is out of range")
    return int(text)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is out of range")
    return number


def parse_json_object(name: str, text: str) -> dict:
    """The dict in a JSON-object STRING input (already validated by `normalize`)."""
    return _parse_json_object(name, text)


# ---------------------------------------------------------------- tables of params

def input_types(params: Iterable[Param], hidden: Mapping[str, str] | None = None) -> dict:
    """ComfyUI's INPUT_TYPES dict for a list of params, in declaration order."""
    required: dict[str, tuple] = {}
    optional: dict[str, tuple] = {}
    for param in params:
        (optional if param.optional else required)[param.name] = param.input_spec()
    result: dict[str, dict] = {"required": required}
    if optional:
        result["optional"] = optional
    if hidden:
        result["hidden"] = dict(hidden)
    return result


def normalize_all(params: Iterable[Param], values: Mapping[str, Any], *, partial: bool = False) -> dict:
    """Every param's value normalised. With `partial`, missing values (inputs linked to other
    nodes, which ComfyUI does not pass to validation) are skipped; otherwise a missing required
    value is an error. The first problem found is raised."""
    result: dict[str, Any] = {}
    for param in params:
        if param.name not in values or (values[param.name] is None and param.optional):
            if param.optional or partial:
                continue
            raise ValidationError(f"{param.name}: missing. {param.tooltip}")
        if values[param.name] is None:  # present but null, e.g. from a queue-API script
            raise ValidationError(f"{param.name}: has no value (null). {param.tooltip}")
        result[param.name] = param.normalize(values[param.name])
    return result


def validate_inputs_classmethod(params: Iterable[Param]):
    """A VALIDATE_INPUTS classmethod whose signature names only the inputs that need the pack's
    own checks. ComfyUI passes exactly the inputs a validator names and files a failure under
    each of them, so naming all (**kwargs) would repeat one message on every widget; the others
    keep ComfyUI's own range and combo checks. The node re-checks everything when it runs, which
    also covers values linked from other nodes. The class provides PARAMS and check_together."""

    def VALIDATE_INPUTS(cls, **values):
        return validation_result(cls.PARAMS, values, cls.check_together)

    names = [p.name for p in params if p.needs_own_check]
    VALIDATE_INPUTS.__signature__ = inspect.Signature(
        [inspect.Parameter("cls", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for name in names]
    )
    return classmethod(VALIDATE_INPUTS)


def validation_result(params: Iterable[Param], values: Mapping[str, Any], extra=None) -> bool | str:
    """What a VALIDATE_INPUTS classmethod returns: True, or one message naming every problem
    (ComfyUI shows a validator's single answer, so all problems go into it)."""
    problems = []
    normalized = {}
    for param in params:
        if param.name not in values:
            continue
        try:
            normalized.update(normalize_all((param,), values, partial=True))
        except ValidationError as exc:
            problems.append(str(exc))
    if not problems and extra is not None:
        try:
            extra(normalized)
        except ValidationError as exc:
            problems.append(str(exc))
    return "; ".join(p.rstrip(".") for p in problems) if problems else True


# ---------------------------------------------------------------- seeds

def resolve_seed(params: Iterable[Param], values: Mapping[str, Any]) -> int:
    """The seed a run uses: the seed input of `params` (the one with `seed=True`) as given, or
    for its documented -1 a random seed up to that Param's own max, drawn here so the seed used
    can be reported and the image reproduced."""
    param = next(p for p in params if p.seed)
    seed = values[param.name]
    if seed == -1:
        import secrets

        return secrets.randbelow(int(param.max) + 1)
    return seed
