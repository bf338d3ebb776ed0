"""Dataclasses from JSON objects with every key and value checked against the type hints;
a mismatch names the key, the type it must have and the fix."""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from typing import Any

from speechkit.errors import SpeechkitError


def typed_dataclass(cls: type, data: Any, key: str, source: str) -> Any:
    """A spec dataclass from a JSON object: no unknown or missing keys, every value typed."""
    if not isinstance(data, dict):
        raise SpeechkitError(f"{source}: {key} must be an object (a mapping), not {describe_json(data)}")
    known = {f.name: f for f in fields(cls)}
    prefix = f"{key}." if key else ""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SpeechkitError(f"{source}: unknown key {prefix}{unknown[0]} (known: "
                             f"{', '.join(sorted(known))}); remove or rename it")
    missing = [n for n, f in known.items() if n not in data
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise SpeechkitError(f"{source}: missing required key {prefix}{missing[0]}; add it")
    hints = typing.get_type_hints(cls)
    return cls(**{k: typed_value(v, hints[k], f"{prefix}{k}", source) for k, v in data.items()})


def typed_value(value: Any, hint: Any, key: str, source: str) -> Any:
    """`value` checked against a type hint (str, int, float, bool, X | None, list, dict,
    a spec dataclass); a mismatch names the key and the type it must have."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return typed_value(value, inner, key, source)
    if is_dataclass(hint):
        return typed_dataclass(hint, value, key, source)
    if origin is list:
        if not isinstance(value, list):
            wrong_type(value, "a list", key, source)
        return [typed_value(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            wrong_type(value, "an object (a mapping)", key, source)
        return {k: typed_value(v, args[1], f"{key}.{k}", source) for k, v in value.items()}
    if hint is bool and not isinstance(value, bool):
        wrong_type(value, "true or false", key, source)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        wrong_type(value, "a whole number", key, source)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            wrong_type(value, "a finite number", key, source)
        return float(value)
    if hint is str and not isinstance(value, str):
        wrong_type(value, "a string", key, source)
    return value


def wrong_type(value: Any, expected: str, key: str, source: str) -> typing.NoReturn:
    raise SpeechkitError(f"{source}: {key} must be {expected}, not {describe_json(value)}")


def describe_json(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return f"{names.get(type(value), type(value).__name__)} ({json.dumps(value)[:40]})"
