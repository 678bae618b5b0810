"""What sources, sinks and executors share: ``close()`` that is safe twice, and ``with``."""
from __future__ import annotations

from types import TracebackType
from typing import TypeVar

_C = TypeVar("_C", bound="Closeable")


class Closeable:
    def close(self) -> None:
        """Release what this holds; safe to call more than once."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
