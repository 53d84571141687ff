"""What every config model shares: the strict base class, the one YAML reader, the one error formatter and the
error they raise; and where the project lives (relative paths in a config resolve against its project)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "pipeline.yaml"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # an environment variable's name

_NUMBER = re.compile(r"[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?")
_EXPONENT = re.compile(r"(?P<mantissa>[-+]?[\d.]+)[eE](?P<exponent>[-+]?\d+)")


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key path."""


class Section(BaseModel):
    """A config section: unknown keys are errors, values are frozen, and nothing is coerced (a quoted "2" or
    YAML's string "1e-3" is an error; ints still pass as floats)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def no_control(value: str, what: str) -> str:
    """`value` when it holds no newline or control character (it reaches a script or a log line)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{what} {value!r} contains a newline or control character")
    return value


def read_yaml(path: Path) -> Any:
    """A YAML file's contents; ConfigError naming the file when it is missing or not YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def format_errors(err: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem, `<prefix><key path>: <message> (got <value>); <what to write instead>`."""
    lines: list[str] = []
    for e in err.errors():
        # Pydantic names union members in the location (e.g. `int` / `literal['from_shards']`); drop them.
        loc = [str(p) for p in e["loc"]]
        loc = [p for p in loc if not (p.startswith(("literal[", "constrained-")) or p in {"int", "float", "str"})]
        where = prefix + ".".join(loc) if loc else "<top level>"
        hidden = e["type"] == "missing" or not loc or (e.get("ctx") or {}).get("hide_input")
        got = "" if hidden else f" (got {e.get('input')!r})"
        hint = type_hint(e)
        line = f"{where}: {e['msg'].removeprefix('Value error, ')}{got}" + (f"; {hint}" if hint else "")
        if line not in lines:
            lines.append(line)
    return lines


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
