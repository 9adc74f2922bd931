"""CloudEvent envelopes, state key prefixes, the run template and resiliency parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from localdapr.errors import ComponentError, DaprError
from localdapr.launch.runfile import load_run_template
from localdapr.pubsub.cloudevents import build_envelope, expired, is_raw, wrap_raw
from localdapr.resiliency import CircuitBreaker, Resiliency, RetryPolicy
from localdapr.state.keys import key_prefix, logical_key, physical_key


def envelope(data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> dict:
    return build_envelope(
        data=data,
        content_type=content_type,
        topic="t",
        pubsub_name="ps",
        source_app_id="pub",
        metadata=metadata or {},
    )


def test_json_envelope_has_daprd_fields() -> None:
    ev = envelope(b'{"a": 1}', "application/json")
    assert ev["data"] == {"a": 1}
    assert ev["source"] == "pub" and ev["type"] == "com.dapr.event.sent" and ev["specversion"] == "1.0"
    assert ev["topic"] == "t" and ev["pubsubname"] == "ps" and ev["datacontenttype"] == "application/json"
    assert ev["id"] and ev["time"].endswith("Z") and ev["traceparent"].startswith("00-")


def test_default_content_type_is_text() -> None:
    ev = envelope(b'{"a": 1}', "")
    assert ev["data"] == '{"a": 1}' and ev["datacontenttype"] == "text/plain"


def test_binary_goes_to_data_base64_and_overrides_apply() -> None:
    ev = envelope(b"\x00\xff", "application/octet-stream", {"cloudevent.id": "fixed", "cloudevent.type": "x"})
    assert base64.b64decode(ev["data_base64"]) == b"\x00\xff"
    assert ev["id"] == "fixed" and ev["type"] == "x"


def test_cloudevent_payload_is_kept_and_topic_overwritten() -> None:
    own = {
        "id": "mine",
        "source": "gw",
        "type": "reading",
        "specversion": "1.0",
        "data": {"v": 2},
        "topic": "x",
    }
    ev = envelope(json.dumps(own).encode(), "application/cloudevents+json")
    assert ev["id"] == "mine" and ev["source"] == "gw" and ev["topic"] == "t" and ev["data"] == {"v": 2}


def test_invalid_json_is_refused() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        envelope(b"{nope", "application/json")


def test_ttl_sets_expiration_and_raw_wrapping() -> None:
    assert not expired(envelope(b"1", "application/json", {"ttlInSeconds": "60"}))
    assert expired({"expiration": "2000-01-01T00:00:00Z"})
    assert (
        is_raw({"rawPayload": "true"}) and is_raw({"rawPayload": "T"}) and not is_raw({"RawPayload": "true"})
    )
    raw = wrap_raw(b"abc", "t", "ps")
    assert (
        base64.b64decode(raw["data_base64"]) == b"abc"
        and raw["datacontenttype"] == "application/octet-stream"
    )


def test_key_prefix_strategies() -> None:
    assert key_prefix("appid", "app", "store") == "app"
    assert key_prefix("", "app", "store") == "app"
    assert key_prefix("name", "app", "store") == "store"
    assert key_prefix("none", "app", "store") == ""
    assert key_prefix("namespace", "app", "store", "prod") == "prod.app"
    assert key_prefix("custom", "app", "store") == "custom"
    assert physical_key("app", "k", "store") == "app||k" and physical_key("", "k", "store") == "k"
    assert logical_key("app", "app||k") == "k"
    with pytest.raises(DaprError, match=r"can't contain '\|\|'") as bad:
        physical_key("app", "a||b", "store")
    assert bad.value.reason == "DAPR_STATE_ILLEGAL_KEY" and bad.value.violations == [("a||b", str(bad.value))]


def test_run_template_paths_and_errors(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "components").mkdir()
    (tmp_path / "dapr.yaml").write_text(
        "version: 1\ncommon:\n  resourcesPath: ./components\n  env: {A: '1', B: common}\n"
        "apps:\n  - appDirPath: ./svc\n    appPort: 8001\n    command: [python, -m, x]\n    env: {B: app}\n"
        "    replicas: 2\n"
    )
    template = load_run_template(tmp_path / "dapr.yaml")
    app = template.apps[0]
    assert app.app_id == "svc" and app.app_port == 8001 and app.replicas == 2
    assert app.resources_paths == [(tmp_path / "components").resolve()]
    assert app.env == {"A": "1", "B": "app"}
    (tmp_path / "dapr.yaml").write_text("version: 1\napps:\n  - appID: x\n    command: [a]\n")
    with pytest.raises(ComponentError, match="appDirPath"):
        load_run_template(tmp_path / "dapr.yaml")
    (tmp_path / "dapr.yaml").write_text("version: 2\napps: []\n")
    with pytest.raises(ComponentError, match="version"):
        load_run_template(tmp_path / "dapr.yaml")


def test_resiliency_policies_and_breaker() -> None:
    doc = {
        "kind": "Resiliency",
        "spec": {
            "policies": {
                "timeouts": {"fast": "2s"},
                "retries": {"three": {"policy": "constant", "duration": "100ms", "maxRetries": 3}},
                "circuitBreakers": {"cb": {"trip": "consecutiveFailures > 2", "timeout": "30s"}},
            },
            "targets": {"apps": {"inference": {"timeout": "fast", "retry": "three", "circuitBreaker": "cb"}}},
        },
    }
    res = Resiliency.from_documents([doc], "equipment")
    policy = res.for_app("inference")
    assert policy.timeout == 2.0
    assert policy.retry is not None and list(policy.retry.delays()) == [0.1, 0.1, 0.1]
    assert res.for_app("other").retry is None
    breaker = policy.breaker
    assert isinstance(breaker, CircuitBreaker)
    for _ in range(3):
        breaker.record(False)
    assert breaker.state == "open" and not breaker.allow()
    exp = RetryPolicy(policy="exponential", max_interval=1, max_retries=5, jitter=lambda low, high: high)
    assert list(exp.delays()) == [0.75, 1, 1, 1, 1]  # 0.5 s +50%, then 0.75 s +50% capped
    scoped = Resiliency.from_documents([{**doc, "scopes": ["someone"]}], "equipment")
    assert scoped.for_app("inference").timeout is None
