"""The one registry of detectors: name → class, with typed parameter specs for UIs.

Used by the NAB harness, Dagster assets, the alert engine and the Streamlit lab.
"""

from __future__ import annotations

import importlib
import types
import typing
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from detectors.base import Detector

DEFAULT = "ensemble"  # the recommended detector; also reachable as get("default")
_MODULES = ("detectors.simple", "detectors.forest", "detectors.novelty")
_REGISTRY: dict[str, type[Detector]] = {}
_loaded = False


class UnknownDetectorError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InvalidParamsError(ValueError):
    pass


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: add a detector under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"detector name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        for mod in _MODULES:
            importlib.import_module(mod)
        _loaded = True


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get(name: str) -> type[Detector]:
    _load()
    key = DEFAULT if name == "default" else name
    try:
        return _REGISTRY[key]
    except KeyError:
        raise UnknownDetectorError(f"unknown detector {name!r}; choose one of: {', '.join(names())} (or 'default')") from None


def canonical(name: str) -> str:
    return get(name).name


def validate_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validated, complete parameter dict (defaults filled); raises InvalidParamsError."""
    cls = get(name)
    try:
        return cls.Params(**params).model_dump()
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
        raise InvalidParamsError(f"invalid parameters for {cls.name}: {errs}") from None


def create(name: str, **params: Any) -> Detector:
    validate_params(name, params)
    return get(name)(**params)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return "choice"
    if annotation is type(None):
        return "none"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: FieldInfo) -> dict[str, float | None]:
    out: dict[str, float | None] = {"min": None, "max": None}
    for m in field.metadata:
        for attr, key in (("ge", "min"), ("gt", "min"), ("le", "max"), ("lt", "max")):
            val = getattr(m, attr, None)
            if val is not None:
                out[key] = val
    return out


def param_specs(name: str) -> list[dict[str, Any]]:
    """Typed parameter specs: name, type, default, bounds, choices, help."""
    cls = get(name)
    specs = []
    for pname, field in cls.Params.model_fields.items():
        ann = field.annotation
        spec: dict[str, Any] = {
            "name": pname,
            "type": _type_name(ann),
            "default": field.default,
            "bounds": _bounds(field),
            "help": field.description or "",
        }
        if typing.get_origin(ann) is typing.Literal:
            spec["choices"] = list(typing.get_args(ann))
        specs.append(spec)
    return specs


def describe() -> list[dict[str, Any]]:
    """Every detector with its summary, streaming flag and parameter specs."""
    return [
        {
            "name": n,
            "summary": get(n).summary,
            "streaming": get(n).streaming,
            "default": n == DEFAULT,
            "params": param_specs(n),
        }
        for n in names()
    ]
