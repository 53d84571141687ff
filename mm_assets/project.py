"""Where the project lives, and the error every config problem raises (shared by all config modules)."""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "pipeline.yaml"

_NUMBER = re.compile(r"[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?")
_EXPONENT = re.compile(r"(?P<mantissa>[-+]?[\d.]+)[eE](?P<exponent>[-+]?\d+)")


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key path."""


class ConfigSection(BaseModel):
    """Base of a config section: unknown keys are errors; strict types (a quoted "2" or YAML's string "1e-3" is
    refused; ints still pass as floats); frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def type_hint(error: Mapping[str, Any]) -> str:
    """What to write instead, for a pydantic type error on a strict config model ("" when there is nothing to add).

    Config models do not coerce: a quoted "2" is not an int, and PyYAML (YAML 1.1) reads `1e-3` as a string.
    """
    kind, value = error.get("type"), error.get("input")
    if kind in ("int_type", "float_type") and isinstance(value, str) and _NUMBER.fullmatch(value):
        fixed = _yaml_float(value)
        if fixed != value:
            return f"YAML reads {value} as a string (its floats need a dot and a signed exponent): write {fixed}"
        return f"a quoted number is a string: write {value} without quotes"
    if kind == "int_type" and isinstance(value, float) and value.is_integer():
        return f"write a whole number: {int(value)}"
    if kind == "bool_type":
        return "write true or false" + (", without quotes" if isinstance(value, str) else "")
    if kind == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"YAML read this value as the number {value!r}: put it in quotes"
    return ""


def _yaml_float(number: str) -> str:
    """`number` as YAML 1.1 reads a float: 1e-3 -> 1.0e-3, 1.0e3 -> 1.0e+3; numbers without exponent unchanged."""
    exp = _EXPONENT.fullmatch(number)
    if not exp:
        return number
    mantissa = exp["mantissa"] if "." in exp["mantissa"] else exp["mantissa"] + ".0"
    sign = "" if exp["exponent"][0] in "+-" else "+"
    return f"{mantissa}e{sign}{exp['exponent']}"
