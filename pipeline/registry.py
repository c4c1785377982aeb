"""A name-keyed registry of classes with one factory, shared by the face detectors and the nets."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from pipeline.errors import UsageError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """`register(name)` decorates a class; `get(name)` answers unknown names with the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator adding a class under `name` (duplicate names refused); sets `cls.name`."""

        def add(cls: T) -> T:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is already registered (by {self._classes[name].__name__})")
            cls.name = name
            self._classes[name] = cls
            return cls

        return add

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> T:
        if name not in self._classes:
            raise UsageError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._classes[name]

    def unregister(self, name: str) -> None:
        """Remove `name` (for plugins and tests that register temporary classes)."""
        self._classes.pop(name, None)
