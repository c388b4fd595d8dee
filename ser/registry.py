"""Name → object registries with "did you mean" errors (timm-style presets register here)."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from ser.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of builders; `kind` names what it holds in error messages."""

    def __init__(self, kind: str, list_command: str | None = None):
        self.kind = kind
        self.list_command = list_command
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator: `@REG.register("name", help="one line")`."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            self._help[name] = help or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
            return obj

        return add

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else None
        if self.list_command:
            listing = f"run `{self.list_command}` for the choices"
            hint = f"{hint} {listing}" if hint else listing
        elif not hint:
            hint = "choices: " + ", ".join(self.names())
        raise UnknownNameError(f"unknown {self.kind} {name!r}", hint)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def describe(self, name: str) -> str:
        self.get(name)
        return self._help[name]
