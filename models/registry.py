"""A name-keyed registry of nets and one factory, in the style of timm's `register_model`/`create_model`."""
from __future__ import annotations

from typing import Callable

from torch import nn

from pipeline.errors import UsageError

_MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a net to the registry under `name` (duplicates refused)."""

    def add(cls):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].__name__})")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return add


def model_names() -> list[str]:
    return sorted(_MODELS)


def model_class(name: str) -> type[nn.Module]:
    """The class registered as `name`; unknown names are answered with the known ones."""
    if name not in _MODELS:
        raise UsageError(f"unknown net {name!r}; choose one of: {', '.join(model_names())}")
    return _MODELS[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the net registered as `name` with `kwargs` (e.g. depths, widths, input_size)."""
    cls = model_class(name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"net {name!r} cannot be built with {kwargs}: {exc}") from None
