"""The sidecar's actor callbacks answered without FastAPI's routing (ASGI middleware).

`dapr.ext.fastapi.DaprActor` serves `PUT /actors/{type}/{id}/method/{name}` (and `.../method/remind/
{name}`, `.../method/timer/{name}`) as FastAPI routes: every call is matched against the app's
routes, gets a Request, its path parameters validated and an endpoint run through FastAPI's
dependency machinery before the SDK's `ActorRuntime` is reached. On the equipment app that is one
call per reading, and that machinery cost more CPU than the actor runtime's dispatch it leads to
(bench_pipeline, py-spy). This middleware takes those three paths straight to `ActorRuntime`, with
the very answers DaprActor gives (the method's serialised result, or a 500 with the SDK's error
body), and leaves every other request, deactivation and `/dapr/config` included, to the app. It is
added inside the app-token guard and the metrics middleware, so calls are still refused without
the token and counted under DaprActor's route templates.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from dapr.actor import ActorRuntime
from dapr.clients.exceptions import ERROR_CODE_UNKNOWN, DaprInternalError

from apps.common.asgi import ASGIApp, MatchedRoute, Receive, Scope, Send, read_body, send_answer

# Path segments never hold "/" (Starlette's `{param}` does not match one either).
_CALLBACK: Final = re.compile(
    r"^/actors/(?P<type>[^/]+)/(?P<id>[^/]+)/method/(?:(?P<kind>remind|timer)/)?(?P<name>[^/]+)$"
)
# DaprActor's route templates, by callback kind: the label the metrics middleware counts them under.
TEMPLATES: Final = {
    None: "/actors/{actor_type_name}/{actor_id}/method/{method_name}",
    "remind": "/actors/{actor_type_name}/{actor_id}/method/remind/{reminder_name}",
    "timer": "/actors/{actor_type_name}/{actor_id}/method/timer/{timer_name}",
}
_METHOD_CONTENT_TYPE: Final = b"application/json; utf-8"  # DaprActor's, for a method's result
_REENTRANCY_HEADER: Final = b"dapr-reentrancy-id"
_ROUTES: Final = {kind: MatchedRoute(path) for kind, path in TEMPLATES.items()}


class ActorCallShortcut:
    """ASGI middleware: actor method, reminder and timer callbacks straight to `ActorRuntime`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = None
        if scope["type"] == "http" and scope["method"] == "PUT":
            found = _CALLBACK.match(str(scope.get("path", "")))
        if found is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTES[found["kind"]]
        body = await read_body(receive)
        if body is None:
            return
        actor_type, actor_id, kind, name = found["type"], found["id"], found["kind"], found["name"]
        try:
            if kind is None:
                reentrancy = next((v for k, v in scope["headers"] if k.lower() == _REENTRANCY_HEADER), None)
                result = await ActorRuntime.dispatch(
                    actor_type,
                    actor_id,
                    name,
                    body,
                    None if reentrancy is None else reentrancy.decode("latin-1"),
                )
                await send_answer(send, 200, result, _METHOD_CONTENT_TYPE)
                return
            if kind == "remind":
                await ActorRuntime.fire_reminder(actor_type, actor_id, name, body)
                message_text = f"called reminder. actor: {actor_type}.{actor_id}, reminder: {name}"
            else:
                await ActorRuntime.fire_timer(actor_type, actor_id, name, body)
                message_text = f"called timer. actor: {actor_type}.{actor_id}, timer: {name}"
        except DaprInternalError as exc:
            await _answer_json(send, 500, exc.as_json_safe_dict())
            return
        except Exception as exc:
            await _answer_json(send, 500, {"message": repr(exc), "errorCode": ERROR_CODE_UNKNOWN})
            return
        await _answer_json(send, 200, {"message": message_text})


async def _answer_json(send: Send, status: int, content: Any) -> None:
    # As Starlette's JSONResponse renders it (DaprActor's answers are JSONResponses).
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
    await send_answer(send, status, body.encode("utf-8"), b"application/json")
