"""Dapr errors as daprd reports them: an error code, an HTTP status and a gRPC status code.

Where daprd builds an error with dapr/kit's rich error model, it also carries a `google.rpc.ErrorInfo`
(reason, domain `dapr.io`, metadata), and sometimes a `ResourceInfo` and a `BadRequest` field
violation. Both APIs report them alike: gRPC in the status details (what the SDK's
`DaprGrpcError.error_code()` reads), HTTP in the JSON body's `details`, in kit's JSON layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message as protobuf_message
from google.rpc import error_details_pb2, status_pb2

DOMAIN = "dapr.io"
_TYPE_PREFIX = "type.googleapis.com/"


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    type: str
    name: str
    owner: str = ""
    description: str = ""


class DaprError(Exception):
    """An API error with daprd's code, message, HTTP status and gRPC status (and rich details)."""

    def __init__(
        self,
        code: str,
        message: str,
        http_status: int,
        grpc_status: grpc.StatusCode,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        resource: ResourceInfo | None = None,
        violations: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.grpc_status = grpc_status
        self.reason = reason  # ErrorInfo.reason; "" = an error daprd reports without rich details
        self.metadata = dict(metadata) if metadata else None
        self.resource = resource
        self.violations = list(violations)  # BadRequest field violations: (field, description)

    def details(self) -> list[protobuf_message.Message]:
        """The status details, in the order daprd's error builders add them."""
        out: list[protobuf_message.Message] = []
        if self.violations:
            out.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                        for f, d in self.violations
                    ]
                )
            )
        if self.resource is not None:
            r = self.resource
            out.append(
                error_details_pb2.ResourceInfo(
                    resource_type=r.type, resource_name=r.name, owner=r.owner, description=r.description
                )
            )
        if self.reason:
            out.append(error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata))
        return out

    def to_status(self) -> status_pb2.Status:
        """The `google.rpc.Status` to abort a gRPC call with (grpc_status.rpc_status.to_status)."""
        status = status_pb2.Status(code=self.grpc_status.value[0], message=self.message)
        for detail in self.details():
            status.details.add().Pack(detail)
        return status

    def to_json(self) -> dict[str, Any]:
        """The HTTP body: dapr/kit's `{errorCode, message, details}` (no `details` without them)."""
        body: dict[str, Any] = {"errorCode": self.code, "message": self.message}
        details = [_detail_json(d) for d in self.details()]
        if details:
            body["details"] = details
        return body


def _detail_json(detail: protobuf_message.Message) -> dict[str, Any]:
    # dapr/kit writes each detail with Go field names (snake case), not protojson's camel case.
    out: dict[str, Any] = {"@type": _TYPE_PREFIX + detail.DESCRIPTOR.full_name}
    if isinstance(detail, error_details_pb2.ErrorInfo):
        out.update(reason=detail.reason, domain=detail.domain, metadata=dict(detail.metadata) or None)
    elif isinstance(detail, error_details_pb2.ResourceInfo):
        out.update(
            resource_type=detail.resource_type,
            resource_name=detail.resource_name,
            owner=detail.owner,
            description=detail.description,
        )
    elif isinstance(detail, error_details_pb2.BadRequest):
        out["field_violations"] = [
            {"field": v.field, "description": v.description} for v in detail.field_violations
        ]
    return out


class ComponentError(Exception):
    """A component or resource file localdapr cannot use; the message names the file and the field."""


def _app(app_id: str) -> dict[str, str] | None:
    return {"appID": app_id} if app_id else None


def state_store_not_found(name: str, app_id: str) -> DaprError:
    return DaprError(
        "ERR_STATE_STORE_NOT_FOUND",
        f"state store {name} is not found",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        reason="DAPR_STATE_NOT_FOUND",
        metadata=_app(app_id),
    )


def state_store_not_configured(name: str, app_id: str) -> DaprError:
    return DaprError(
        "ERR_STATE_STORE_NOT_CONFIGURED",
        f"state store {name} is not configured",
        500,
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="DAPR_STATE_NOT_CONFIGURED",
        metadata=_app(app_id),
    )


def state_illegal_key(store: str, key: str) -> DaprError:
    message = f"input key/keyPrefix '{key}' can't contain '||'"
    return DaprError(
        "ERR_MALFORMED_REQUEST",
        message,
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        reason="DAPR_STATE_ILLEGAL_KEY",
        resource=ResourceInfo("state", store),
        violations=[(key, message)],
    )


def pubsub_not_found(name: str, app_id: str) -> DaprError:
    return DaprError(
        "ERR_PUBSUB_NOT_FOUND",
        f"pubsub {name} is not found",
        404,
        grpc.StatusCode.INVALID_ARGUMENT,
        reason="DAPR_PUBSUB_NOT_FOUND",
        metadata=_app(app_id),
    )


def pubsub_not_configured(name: str, app_id: str) -> DaprError:
    return DaprError(
        "ERR_PUBSUB_NOT_CONFIGURED",
        f"pubsub {name} is not configured",
        400,
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="DAPR_PUBSUB_NOT_CONFIGURED",
        metadata=_app(app_id),
    )


def pubsub_outbox(app_id: str, cause: str) -> DaprError:
    """daprd's PubSubOubox: an outbox intent could not be published, so the transaction did not run."""
    return DaprError(
        "ERR_PUBLISH_OUTBOX",
        f"error while publishing outbox message: {cause}",
        500,
        grpc.StatusCode.INTERNAL,
        reason="DAPR_PUBSUB_OUTBOX",
        metadata={"appID": app_id, "error": cause},
    )


def lock_store_not_found(name: str, app_id: str) -> DaprError:
    return DaprError(
        "ERR_LOCK_STORE_NOT_FOUND",
        f"lock {name} is not found",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        reason="DAPR_LOCK_NOT_FOUND",
        metadata=_app(app_id),
    )


def lock_store_not_configured(name: str, app_id: str) -> DaprError:
    return DaprError(
        "ERR_LOCK_STORE_NOT_CONFIGURED",
        f"lock {name} is not configured",
        500,
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="DAPR_LOCK_NOT_CONFIGURED",
        metadata=_app(app_id),
    )


def lock_request_invalid(what: str, store: str, owner: str, app_id: str) -> DaprError:
    """An empty resource id or owner, or a lease that is not positive (`what` says which)."""
    message, reason = {
        "resource": ("lock resource id is empty", "DAPR_LOCK_RESOURCE_ID_EMPTY"),
        "owner": ("lock owner is empty", "DAPR_LOCK_OWNER_EMPTY"),
        "expiry": ("expiry in seconds is not positive", "DAPR_LOCK_EXPIRY_NOT_POSITIVE"),
    }[what]
    return DaprError(
        "ERR_MALFORMED_REQUEST",
        message,
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        reason=reason,
        metadata=_app(app_id),
        resource=ResourceInfo("lock", store, owner, message),
    )


def lock_failed(unlock: bool, store: str, owner: str, app_id: str, cause: Exception) -> DaprError:
    """The store failed (or refused the key): daprd keeps the cause in the ErrorInfo metadata."""
    message = "failed to release lock" if unlock else "failed to try acquiring lock"
    return DaprError(
        "ERR_UNLOCK" if unlock else "ERR_TRY_LOCK",
        message,
        500,
        grpc.StatusCode.INTERNAL,
        reason="DAPR_LOCK_UNLOCK_FAILED" if unlock else "DAPR_LOCK_TRY_LOCK_FAILED",
        metadata={"appID": app_id, "error": str(cause)},
        resource=ResourceInfo("lock", store, owner, message),
    )


def configuration_store_not_configured() -> DaprError:
    return DaprError(
        "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
        "configuration stores not configured",
        500,
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="DAPR_CONFIGURATION_STORE_NOT_CONFIGURED",
    )


def configuration_store_not_found(name: str) -> DaprError:
    return DaprError(
        "ERR_CONFIGURATION_STORE_NOT_FOUND",
        f"configuration store {name} not found",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        reason="DAPR_CONFIGURATION_STORE_NOT_FOUND",
        resource=ResourceInfo("configuration", name),
    )


def configuration_failed(subscribe: bool, name: str, keys: Sequence[str], cause: Exception) -> DaprError:
    """The store failed a get or a subscribe; the message prints the keys as Go prints a []string."""
    verb, code = ("subscribe", "SUBSCRIBE") if subscribe else ("get", "GET")
    return DaprError(
        f"ERR_CONFIGURATION_{code}",
        f"failed to {verb} [{' '.join(keys)}] from Configuration store {name}: {cause}",
        500,
        grpc.StatusCode.INVALID_ARGUMENT if subscribe else grpc.StatusCode.INTERNAL,
        reason=f"DAPR_CONFIGURATION_{code}",
        metadata={"error": str(cause)},
        resource=ResourceInfo("configuration", name),
    )


def secret_store_not_found(name: str) -> DaprError:
    return DaprError(
        "ERR_SECRET_STORE_NOT_FOUND",
        f"failed finding secret store with key {name}",
        401,
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def malformed(message: str) -> DaprError:
    return DaprError("ERR_MALFORMED_REQUEST", message, 400, grpc.StatusCode.INVALID_ARGUMENT)
