"""A name-keyed registry of nets and one factory, in the style of timm's `register_model`/`create_model`."""
from __future__ import annotations

from torch import nn

from pipeline.errors import UsageError
from pipeline.registry import Registry

_MODELS: Registry[type[nn.Module]] = Registry("net")
register_model = _MODELS.register  # class decorator: @register_model("name"); duplicate names refused
model_names = _MODELS.names
model_class = _MODELS.get  # unknown names are answered with the known ones


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the net registered as `name` with `kwargs` (e.g. depths, widths, input_size)."""
    cls = model_class(name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"net {name!r} cannot be built with {kwargs}: {exc}") from None
