"""Typed sections <-> flat ``key = value`` tables, derived from the fields alone (no key table).

Flower's run config (``[tool.flwr.app.config]``, ``flwr run --run-config``) and the ``--set`` option
of the commands are flat tables of scalars. A typed config becomes one mechanically:

* the key is the field path in kebab case joined by dots: ``train.weight-decay``, ``cohort.n-ecgs``;
* a nested section recurses; a scalar (bool, int, float, str, a literal, a path) stays itself;
* ``None`` is ``""`` (TOML has no null); a tuple of scalars is its items joined by commas;
* anything else (a tuple of hospital specs) is JSON text.

:func:`parse` reverses this for every field, rejects an unknown key with the list of the known
ones, and leaves a missing key to its default; pydantic then checks every value and names the
setting of a bad one.
"""

from __future__ import annotations

import difflib
import json
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

FlatValue = bool | int | float | str
FlatConfig = dict[str, FlatValue]
M = TypeVar("M", bound=BaseModel)
_SCALARS = (bool, int, float, str, Path)


class UnknownSettingError(KeyError):
    """A flat key that names no setting."""

    def __str__(self) -> str:
        return str(self.args[0])


def kebab(name: str) -> str:
    return name.replace("_", "-")


def union_args(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_scalar(tp: Any) -> bool:
    return (isinstance(tp, type) and issubclass(tp, _SCALARS)) or typing.get_origin(tp) is typing.Literal


def section_of(annotation: Any) -> type[BaseModel] | None:
    """The model class of a nested section (a field whose type is one model, not optional)."""
    args = union_args(annotation)
    return args[0] if len(args) == 1 and _is_model(args[0]) else None


def _scalar_tuple(annotation: Any) -> bool:
    """``tuple[X, ...]`` or ``tuple[X, Y, Z]`` of scalars (optionally ``| None``)."""
    for tp in union_args(annotation):
        if typing.get_origin(tp) is tuple:
            return all(a is Ellipsis or _is_scalar(a) for a in typing.get_args(tp))
    return False


def _optional(annotation: Any) -> bool:
    return type(None) in union_args(annotation)


def fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, tuple[str, ...], Any]]:
    """Every leaf setting of ``model``: ``(flat key, field path, annotation)``, in declaration order."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{kebab(name)}"
        section = section_of(info.annotation)
        if section is not None:
            for sub_key, path, ann in fields(section, f"{key}."):
                yield sub_key, (name, *path), ann
        else:
            yield key, (name,), info.annotation


def _flat_value(value: Any, annotation: Any) -> FlatValue:
    if value is None:
        return ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list) and _scalar_tuple(annotation):
        return ",".join(str(v) for v in value)
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps([v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value])


def flatten(config: BaseModel) -> FlatConfig:
    """Every setting of ``config`` as one flat ``{key: scalar}`` table (see the module docstring)."""
    out: FlatConfig = {}
    for key, path, annotation in fields(type(config)):
        value: Any = config
        for part in path:
            value = getattr(value, part)
        out[key] = _flat_value(value, annotation)
    return out


def _typed_value(key: str, raw: Any, annotation: Any) -> Any:
    """A flat value as the field expects it; pydantic converts and checks the rest."""
    if isinstance(raw, str):
        if raw == "" and _optional(annotation):
            return None
        if _scalar_tuple(annotation):
            return tuple(v.strip() for v in raw.split(",") if v.strip())
        if not any(_is_scalar(tp) for tp in union_args(annotation) if tp is not type(None)):
            try:
                return json.loads(raw)
            except json.JSONDecodeError as err:
                raise ValueError(f"{key}: expected JSON, got {raw!r} ({err})") from None
    return raw


def known_keys(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(key for key, _, _ in fields(model))


def _unknown(model: type[BaseModel], keys: list[str]) -> UnknownSettingError:
    known = known_keys(model)
    hints = []
    for k in keys:
        close = difflib.get_close_matches(k, known, n=1)
        hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return UnknownSettingError(f"unknown setting(s) {', '.join(hints)}; known settings: {', '.join(known)}")


def nested(model: type[BaseModel], flat: Mapping[str, Any]) -> dict[str, Any]:
    """The nested dict of the flat table's settings (missing ones absent); an unknown key is an error."""
    by_key = {key: (path, ann) for key, path, ann in fields(model)}
    unknown = [k for k in flat if k not in by_key]
    if unknown:
        raise _unknown(model, unknown)
    out: dict[str, Any] = {}
    for key, raw in flat.items():
        path, annotation = by_key[key]
        d = out
        for part in path[:-1]:
            d = d.setdefault(part, {})
        d[path[-1]] = _typed_value(key, raw, annotation)
    return out


def over_defaults(model: type[BaseModel], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` laid over the defaults of ``model``'s sections.

    A section whose default is not its class's default (PTB-XL's ``ingest`` standardises per record)
    keeps its other settings when only one of them is given.
    """
    out = dict(given)
    for name, info in model.model_fields.items():
        if not isinstance(out.get(name), Mapping):
            continue
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            out[name] = merge(default.model_dump(), out[name])
        section = section_of(info.annotation)
        if section is not None:
            out[name] = over_defaults(section, out[name])
    return out


def parse(model: type[M], flat: Mapping[str, Any]) -> M:
    """``model`` from a flat table (the inverse of :func:`flatten`); missing keys take the defaults."""
    return model.model_validate(over_defaults(model, nested(model, flat)))


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` laid over it, nested dicts merged key by key."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def differences(a: Any, b: Any, where: str = "") -> list[tuple[str, Any, Any]]:
    """Where two nested dicts (settings as JSON) differ: (dotted key, value in ``a``, value in ``b``), keys sorted."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in differences(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))]
    return [] if a == b else [(where, a, b)]


def override(config: M, flat: Mapping[str, Any]) -> M:
    """``config`` with the flat table's settings changed (the rest as they are)."""
    updated = merge(config.model_dump(), nested(type(config), flat))
    return type(config).model_validate(updated)


def parse_assignment(text: str) -> tuple[str, FlatValue]:
    """``"train.lr=0.001"`` -> ``("train.lr", 0.001)``: the value as TOML, else as plain text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    if not isinstance(parsed, bool | int | float | str):
        parsed = value
    return key.strip(), parsed


def toml_table(flat: Mapping[str, FlatValue]) -> str:
    """The flat table as TOML ``key = value`` lines (what ``[tool.flwr.app.config]`` holds)."""

    def value(v: FlatValue) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return json.dumps(v)  # a TOML basic string is a JSON string

    return "\n".join(f"{k} = {value(v)}" for k, v in flat.items())
