"""A tiny name -> object registry with 'did you mean' errors (for datasets, perturbations, ...)."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from basics.errors import BadInput

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; unknown names raise `BadInput` with close matches."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj
        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BadInput(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self._items)})") from None

    def names(self) -> list[str]:
        return list(self._items)

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(self._items.items())
