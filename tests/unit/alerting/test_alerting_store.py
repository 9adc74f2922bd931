"""DaprAlertingRepository's reading of SDK errors: a conflict is retried, anything else propagates."""

from __future__ import annotations

import grpc
from dapr.clients.exceptions import DaprInternalError

from apps.alerting.store import _is_conflict


class Rpc(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_conflicts_are_recognised_whatever_the_sdk_wraps_them_in() -> None:
    assert _is_conflict(Rpc(grpc.StatusCode.ABORTED, "failed saving state"))
    assert _is_conflict(Rpc(grpc.StatusCode.INTERNAL, "error executing transaction: possible etag mismatch"))
    # The async SDK's save_state raises DaprInternalError with the message only.
    assert _is_conflict(DaprInternalError("possible etag mismatch. first-write and key exists"))
    assert not _is_conflict(Rpc(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert not _is_conflict(DaprInternalError("state store is not configured"))
