"""A sidecar's binding components: the directions each serves, where its input events go, and output
invocations checked and reported the way daprd's binding processor and APIs report them.

Direction (`direction` metadata, any case, e.g. "input", "output", "input, output"): absent means
every direction the component type implements; present means only those it names. An input binding
whose direction names "input" is read without asking the app; otherwise the app is asked first
(`OPTIONS /<route>`, see delivery.py). `route` metadata replaces the default route, the component name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from localdapr.bindings.base import BindingError, InputBinding, InvokeRequest, InvokeResponse, OutputBinding
from localdapr.bindings.gocompat import decode_json, marshal_json
from localdapr.components.spec import ComponentSpec
from localdapr.errors import DaprError, malformed
from localdapr.resiliency import TargetPolicy

log = logging.getLogger("localdapr.bindings")

INPUT, OUTPUT = "input", "output"


class OutputBindingError(DaprError):
    """ERR_INVOKE_OUTPUT_BINDING, carrying the metadata the binding returned with its error."""

    def __init__(self, name: str, reason: str, binding_metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(
            "ERR_INVOKE_OUTPUT_BINDING",
            f"error invoking output binding {name}: {reason}",
            500,
            grpc.StatusCode.INTERNAL,
        )
        self.binding_metadata = dict(binding_metadata or {})  # DaprError.metadata is the ErrorInfo's


@dataclass(slots=True)
class LoadedBinding:
    spec: ComponentSpec
    instance: Any
    input: bool
    output: bool
    explicit_input: bool  # the direction names "input": read without asking the app
    route: str

    @classmethod
    def of(cls, spec: ComponentSpec, instance: Any) -> LoadedBinding:
        directions = _directions(spec)
        supports_input = isinstance(instance, InputBinding)
        supports_output = isinstance(instance, OutputBinding)
        if directions is not None:
            unknown = directions - {INPUT, OUTPUT}
            unsupported = {d for d, ok in ((INPUT, supports_input), (OUTPUT, supports_output)) if not ok}
            # daprd silently ignores both; a warning makes the typo or the mismatch findable.
            if unknown:
                log.warning(
                    "%s: component %r: direction names %s, which is neither input nor output; ignored",
                    spec.file,
                    spec.name,
                    ", ".join(sorted(unknown)),
                )
            if directions & unsupported:
                log.warning(
                    "%s: component %r: %s is not an %s binding; that direction is ignored",
                    spec.file,
                    spec.name,
                    spec.type,
                    " or ".join(sorted(directions & unsupported)),
                )
        return cls(
            spec=spec,
            instance=instance,
            input=supports_input and (directions is None or INPUT in directions),
            output=supports_output and (directions is None or OUTPUT in directions),
            explicit_input=directions is not None and INPUT in directions,
            route=spec.metadata.get("route") or spec.name,
        )

    @property
    def capabilities(self) -> list[str]:
        return (["INPUT_BINDING"] if self.input else []) + (["OUTPUT_BINDING"] if self.output else [])


def _directions(spec: ComponentSpec) -> set[str] | None:
    found: set[str] | None = None
    for key, value in spec.metadata.items():
        if key.lower() == "direction":
            found = (found or set()) | {part.strip().lower() for part in value.split(",")}
    return found


async def invoke_output(
    bindings: Mapping[str, LoadedBinding],
    name: str,
    request: InvokeRequest,
    policy: TargetPolicy | None = None,
) -> InvokeResponse | None:
    """Check the request as daprd's SendToOutputBinding does, then invoke the binding under the
    `components.<name>.outbound` policy: each attempt within its timeout, a failed one retried, the
    breaker counting every attempt. A refused request (unknown binding or operation) is not retried."""
    if not request.operation:
        raise OutputBindingError(name, "operation field is missing from request")
    loaded = bindings.get(name)
    if loaded is None or not loaded.output:
        raise OutputBindingError(name, f"couldn't find output binding {name}")
    operations = loaded.instance.operations
    if request.operation not in operations:
        raise OutputBindingError(
            name,
            f"binding {name} does not support operation {request.operation}. "
            f"supported operations:{' '.join(operations)}",
        )
    policy = policy or TargetPolicy()
    delays = policy.retry.delays() if policy.retry else iter(())
    while True:
        if policy.breaker is not None and not policy.breaker.allow():
            raise OutputBindingError(name, "circuit breaker is open")
        try:
            async with asyncio.timeout(policy.timeout):
                response = await loaded.instance.invoke(request)
        except Exception as exc:  # a binding's own failure is reported to the caller, as daprd does
            if policy.breaker is not None:
                policy.breaker.record(False)
            delay = next(delays, None)
            if delay is not None:
                await asyncio.sleep(delay)
                continue
            if isinstance(exc, BindingError):
                metadata = exc.response.metadata if exc.response else None
                raise OutputBindingError(name, str(exc), metadata) from exc
            if isinstance(exc, TimeoutError):
                raise OutputBindingError(name, "timeout waiting for the binding") from exc
            raise OutputBindingError(name, str(exc) or type(exc).__name__) from exc
        if policy.breaker is not None:
            policy.breaker.record(True)
        return response


# ---------------------------------------------------------------------------------- API adapters
def request_from_http(raw: bytes) -> InvokeRequest:
    """`POST /v1.0/bindings/<name>` body {"data", "metadata", "operation"}, decoded as daprd does.

    `data` is any JSON value and reaches the binding re-encoded by Go's encoding/json: a JSON string
    arrives with its quotes (bindings such as localstorage un-quote it), an absent one as `null`.
    """
    try:
        body = decode_json(raw)
    except ValueError as exc:
        raise malformed(f"failed deserializing HTTP body: {exc}") from exc
    if not isinstance(body, dict):
        raise malformed("failed deserializing HTTP body: the body must be a JSON object")
    # Go matches JSON keys to struct fields case-insensitively; the last matching key wins.
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key.lower() in ("data", "metadata", "operation"):
            fields[key.lower()] = value
    operation = fields.get("operation")
    if operation is not None and not isinstance(operation, str):
        raise malformed("failed deserializing HTTP body: operation must be a string")
    metadata = fields.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str | None) for v in metadata.values()):
        raise malformed("failed deserializing HTTP body: metadata must be an object of strings")
    return InvokeRequest(
        operation=operation or "",
        data=marshal_json(fields.get("data")),
        metadata={k: v or "" for k, v in metadata.items()},
    )


def metadata_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    """A binding's response metadata as the HTTP API's `metadata.<key>` headers."""
    return {f"metadata.{k}": v for k, v in metadata.items()}


def grpc_call_metadata(pairs: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """The caller's gRPC metadata, which daprd adds to the binding's metadata (for trace context),
    with reserved keys renamed as daprd renames them (`grpc-x` -> `dapr-x`, `:path` -> `dapr-path`)."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if not isinstance(value, str):
            continue  # binary (-bin) entries
        if key in (":method", ":scheme", ":path", ":authority"):
            key = "dapr-" + key[1:]
        elif key.startswith("grpc-"):
            key = "dapr-" + key[5:]
        out[key] = value
    return out
