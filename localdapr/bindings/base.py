"""The interfaces every binding implements (components-contrib's bindings.InputBinding / OutputBinding).

An output binding lists its `operations` (the runtime refuses any other before calling it) and
answers `invoke`: a response, or None when it has nothing to return (daprd then answers HTTP 204).
A failed invocation raises BindingError; the response attached to it, if any, still reaches the
caller's metadata (the http binding reports the status and headers of a 404 that way).

An input binding's `read(handler)` delivers events to `handler` until the read task is cancelled.
One instance may be shared by several sidecars of one process (the component factory shares
identical components), so each `read` call runs its own independent loop. The handler returns the
app's answer and raises when the app did not take the event; what that means (retry, drop, ignore)
is the binding's own choice, as in daprd.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from localdapr.components.spec import ComponentSpec


@dataclass(slots=True)
class InvokeRequest:
    operation: str
    data: bytes = b""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class InvokeResponse:
    data: bytes = b""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ReadEvent:
    """One input event: the payload and the metadata daprd sends to the app as headers."""

    data: bytes = b""
    metadata: dict[str, str] = field(default_factory=dict)


EventHandler = Callable[[ReadEvent], Awaitable[bytes]]


class BindingError(Exception):
    """An invocation failed; `response` is what the binding still returns alongside the error."""

    def __init__(self, message: str, response: InvokeResponse | None = None) -> None:
        super().__init__(message)
        self.response = response


class OutputBinding(abc.ABC):
    operations: tuple[str, ...] = ()

    @classmethod
    @abc.abstractmethod
    def from_spec(cls, spec: ComponentSpec) -> OutputBinding:
        """Validate the component's metadata; raise ComponentError naming the field."""

    async def init(self) -> None:  # noqa: B027 - optional hook
        """Connect or prepare; raise an Exception with a clear message on failure."""

    @abc.abstractmethod
    async def invoke(self, request: InvokeRequest) -> InvokeResponse | None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class InputBinding(abc.ABC):
    @classmethod
    @abc.abstractmethod
    def from_spec(cls, spec: ComponentSpec) -> InputBinding:
        """Validate the component's metadata; raise ComponentError naming the field."""

    async def init(self) -> None:  # noqa: B027 - optional hook
        """Connect or prepare; raise an Exception with a clear message on failure."""

    @abc.abstractmethod
    async def read(self, handler: EventHandler) -> None:
        """Deliver events to `handler` until cancelled."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
