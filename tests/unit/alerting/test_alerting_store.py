"""DaprAlertingRepository: its reading of SDK errors (a conflict is retried, anything else propagates)
and its sharding."""

from __future__ import annotations

from collections import Counter

import grpc
from dapr.clients.exceptions import DaprInternalError

from apps.alerting.domain import DeadLetter, dead_letter_from
from apps.alerting.store import INDEX_SHARDS, dead_letter_shard, is_conflict, shard_of
from tests.unit.alerting.helpers import at


class Rpc(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_conflicts_are_recognised_whatever_the_sdk_wraps_them_in() -> None:
    assert is_conflict(Rpc(grpc.StatusCode.ABORTED, "failed saving state"))
    assert is_conflict(Rpc(grpc.StatusCode.INTERNAL, "error executing transaction: possible etag mismatch"))
    # The async SDK's save_state raises DaprInternalError with the message only.
    assert is_conflict(DaprInternalError("possible etag mismatch. first-write and key exists"))
    assert not is_conflict(Rpc(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert not is_conflict(DaprInternalError("state store is not configured"))


def test_the_shard_of_a_machine_is_stable_and_spreads_a_fleet() -> None:
    # The shard is part of the stored keys: every replica, restart and Python version must agree, so
    # these values are pinned (Python's own str hash changes with each process's hash seed).
    assert [shard_of(e) for e in ("engine-001", "fd001-001", "sim-00000", "a")] == [13, 50, 11, 3]
    per_shard = Counter(shard_of(f"sim-{i:05d}") for i in range(1000))
    assert set(per_shard) == set(range(INDEX_SHARDS)), "every shard in use"
    assert max(per_shard.values()) <= 2 * 1000 / INDEX_SHARDS, "no shard much hotter than the rest"


def test_redeliveries_of_a_dead_letter_share_its_shard() -> None:
    def letter(event_id: str, reason: str, seconds: float) -> DeadLetter:
        return dead_letter_from(
            {"reason": reason, "reading": {}}, "readings-deadletter", event_id, "ingestion", at(seconds)
        )

    # By the CloudEvent, not the content or the arrival time; pinned like shard_of.
    assert dead_letter_shard(letter("ev-1", "x", 0)) == dead_letter_shard(letter("ev-1", "y", 5)) == 50
    assert dead_letter_shard(letter("ev-2", "x", 0)) == 8
