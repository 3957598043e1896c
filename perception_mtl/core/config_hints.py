"""Short config error messages: the closest valid keys for a misspelt key (stdlib difflib) and,
for a value of the wrong type, the key, the value and the type the schema declares."""
from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from typing import Any, Union


def schema_keys(schema: type, prefix: str = "") -> list[str]:
    """Every dotted key of the dataclass `schema`, sections included ("train", "train.steps")."""
    keys = []
    for name, tp in typing.get_type_hints(schema).items():
        key = f"{prefix}{name}"
        keys.append(key)
        if dataclasses.is_dataclass(tp):
            keys += schema_keys(tp, f"{key}.")
    return keys


def schema_type(schema: type, key: str) -> Any:
    """The declared type of the dotted `key` (list indices dropped) in `schema`, or None."""
    node: Any = schema
    for part in re.sub(r"\[\d+\]", "", key).split("."):
        hints = typing.get_type_hints(node) if dataclasses.is_dataclass(node) else {}
        if part not in hints:
            return None
        node = hints[part]
    return node


def type_words(tp: Any) -> str:
    """`tp` as a user writes it: int, list[int], str or null, a section of keys."""
    if dataclasses.is_dataclass(tp):
        return "a section of keys (e.g. {key: value}), not a single value"
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Union and type(None) in args:
        return " or ".join(type_words(a) for a in args if a is not type(None)) + " or null"
    if isinstance(tp, type) and not args:
        return tp.__name__
    return str(tp).replace("typing.", "")


def unknown_key(schema: type, key: str) -> str:
    """"unknown key 'train.stesp'; did you mean train.steps?", else the keys of its section."""
    valid = schema_keys(schema)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.8)
    if close:
        return f"unknown key '{key}'; did you mean {' or '.join(close)}?"
    section = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [k for k in valid if "." in k and k.rsplit(".", 1)[0] == section] if section in valid else \
        [k for k in valid if "." not in k]
    return f"unknown key '{key}'; valid keys{f' under {section}' if section in valid else ''}: {', '.join(siblings)}"


def wrong_type(schema: type, key: str, value: Any, detail: str) -> str:
    """"train.steps must be int, got 'abc'"; `detail` (OmegaConf's first line) where the key is
    not found in the schema (inside a list of sections, OmegaConf names the key without its path)."""
    key = re.sub(r"\[\d+\]$", "", key)
    tp = schema_type(schema, key)
    return f"{key} must be {type_words(tp)}, got {value!r}" if tp is not None else f"{key}: {detail}"
