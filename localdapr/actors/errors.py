"""What an actor call answers, and the actor errors as daprd gives them."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import grpc

from localdapr.actors.reminders import Registration
from localdapr.errors import DaprError

log = logging.getLogger("localdapr")


def actor_error(
    code: str, message: str, http: int = 500, rpc: grpc.StatusCode = grpc.StatusCode.INTERNAL
) -> DaprError:
    return DaprError(code, message, http, rpc)


def invoke_error(detail: str) -> DaprError:
    return actor_error("ERR_ACTOR_INVOKE_METHOD", f"error invoke actor method: {detail}")


def instance_missing() -> DaprError:
    return actor_error(
        "ERR_ACTOR_INSTANCE_MISSING", "actor instance is missing", 400, grpc.StatusCode.INTERNAL
    )


def runtime_not_found() -> DaprError:
    return actor_error(
        "ERR_ACTOR_RUNTIME_NOT_FOUND",
        "the state store is not configured to use the actor runtime. Have you set the - name: "
        'actorStateStore value: "true" in your state store component file?',
    )


@dataclass(slots=True)
class ActorReply:
    """What the caller's sidecar answers: the app's 200 body, or a Dapr error already formatted."""

    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def error(cls, err: DaprError) -> ActorReply:
        return cls(err.http_status, json.dumps(err.to_json()).encode())


def callback_failed(app_id: str, kind: str, reg: Registration, problem: str) -> None:
    """A timer or reminder fire the app did not take: logged, the schedule goes on."""
    log.warning("[%s] %s %s on %s/%s: %s", app_id, kind, reg.name, reg.actor_type, reg.actor_id, problem)
