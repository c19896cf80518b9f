"""A small name -> factory registry, one per extension point (ops, strategies, weightings, datasets).

Names map to factories, never to instances, so only what is asked for gets built.
"""

from __future__ import annotations

import warnings
from typing import Callable, Generic, Iterator, TypeVar

from .errors import NasforgeError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; unknown names raise a one-line error listing the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` registers the decorated factory under ``name``."""

        def deco(obj: T) -> T:
            if name in self._entries:
                warnings.warn(f"{self.kind} {name!r} registered twice; the later definition wins", stacklevel=2)
            self._entries[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise NasforgeError(f"unknown {self.kind} {name!r}; choose one of: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
