"""Dapr errors as daprd reports them: an error code, an HTTP status and a gRPC status code."""

from __future__ import annotations

import grpc


class DaprError(Exception):
    """An API error with daprd's code, message, HTTP status and gRPC status."""

    def __init__(self, code: str, message: str, http_status: int, grpc_status: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.grpc_status = grpc_status

    def to_json(self) -> dict[str, str]:
        return {"errorCode": self.code, "message": self.message}


class ComponentError(Exception):
    """A component or resource file localdapr cannot use; the message names the file and the field."""


def state_store_not_found(name: str) -> DaprError:
    return DaprError(
        "ERR_STATE_STORE_NOT_FOUND",
        f"state store {name} is not found",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def state_store_not_configured() -> DaprError:
    return DaprError(
        "ERR_STATE_STORE_NOT_CONFIGURED",
        "state store is not configured",
        500,
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def pubsub_not_found(name: str) -> DaprError:
    return DaprError(
        "ERR_PUBSUB_NOT_FOUND", f"pubsub {name} is not found", 404, grpc.StatusCode.INVALID_ARGUMENT
    )


def pubsub_not_configured() -> DaprError:
    return DaprError(
        "ERR_PUBSUB_NOT_CONFIGURED",
        "no pubsub is configured",
        400,
        grpc.StatusCode.FAILED_PRECONDITION,
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
