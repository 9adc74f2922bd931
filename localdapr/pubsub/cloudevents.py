"""CloudEvents 1.0 envelopes built the way daprd builds them on publish (contract section 2.2)."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from localdapr.telemetry.tracing import current_traceparent

CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json"


def _now_rfc3339(epoch: float | None = None) -> str:
    ts = datetime.fromtimestamp(epoch if epoch is not None else time.time(), UTC)
    return ts.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _traceparent() -> str:
    """The publish call's span (daprd puts the span of the publish request on the event), else new."""
    return current_traceparent() or f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def is_raw(metadata: dict[str, str]) -> bool:
    """`rawPayload` parsed like Go's ParseBool (key is case-sensitive)."""
    return metadata.get("rawPayload", "").lower() in ("1", "t", "true")


def build_envelope(
    *,
    data: bytes,
    content_type: str,
    topic: str,
    pubsub_name: str,
    source_app_id: str,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """The CloudEvent daprd would put on the broker for a (non-raw) publish."""
    content_type = content_type or "text/plain"
    if content_type.startswith(CLOUDEVENT_CONTENT_TYPE):
        event = json.loads(data)
        if not isinstance(event, dict):
            raise ValueError("a CloudEvent payload must be a JSON object")
        event.setdefault("id", metadata.get("cloudevent.id") or str(uuid.uuid4()))
        event.setdefault("source", "Dapr")
        event.setdefault("type", "com.dapr.event.sent")
        event.setdefault("specversion", "1.0")
    else:
        trace = metadata.get("cloudevent.traceparent") or _traceparent()
        event = {
            "id": metadata.get("cloudevent.id") or str(uuid.uuid4()),
            "source": metadata.get("cloudevent.source") or source_app_id,
            "type": metadata.get("cloudevent.type") or "com.dapr.event.sent",
            "specversion": metadata.get("cloudevent.specversion") or "1.0",
            "datacontenttype": content_type,
            "traceid": metadata.get("cloudevent.traceid") or trace,
            "traceparent": trace,
            "tracestate": metadata.get("cloudevent.tracestate", ""),
        }
        if content_type.startswith("application/json") or content_type.endswith("+json"):
            try:
                event["data"] = json.loads(data) if data else None
            except json.JSONDecodeError as exc:
                raise ValueError(f"data is not valid JSON for datacontenttype {content_type}: {exc}") from exc
        elif content_type.startswith("text/"):
            event["data"] = data.decode("utf-8", errors="replace")
        else:
            event["data_base64"] = base64.b64encode(data).decode()
    event["topic"] = topic
    event["pubsubname"] = pubsub_name
    event["time"] = _now_rfc3339()
    event.setdefault("traceparent", _traceparent())
    event.setdefault("traceid", event["traceparent"])
    ttl = metadata.get("ttlInSeconds") or metadata.get("ttl")
    if ttl:
        event["expiration"] = _now_rfc3339(time.time() + int(ttl))
    return event


def wrap_raw(data: bytes, topic: str, pubsub_name: str) -> dict[str, Any]:
    """How daprd wraps a raw broker payload for a subscription with rawPayload: true."""
    return {
        "id": str(uuid.uuid4()),
        "specversion": "1.0",
        "datacontenttype": "application/octet-stream",
        "source": "Dapr",
        "type": "com.dapr.event.sent",
        "topic": topic,
        "pubsubname": pubsub_name,
        "data_base64": base64.b64encode(data).decode(),
    }


def expired(event: dict[str, Any]) -> bool:
    raw = event.get("expiration")
    if not raw:
        return False
    try:
        when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return False
    return when.timestamp() < time.time()
