"""bulkSubscribe through localdapr over real Redis Streams: the official SDK publishes, an HTTP app
that declares a bulk subscription gets daprd's bulk envelope and answers per entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from dapr.clients import DaprClient

from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, unique, write

pytestmark = pytest.mark.sidecar

APP = "tests.integration.localdapr.sidecar_apps.bulk_app:app"
REPO = Path(__file__).resolve().parents[3]


def test_bulk_delivery_over_redis_streams(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = tmp_path / "res"
    write(
        res,
        "pubsub.yaml",
        component(
            "pubsub",
            "pubsub.redis",
            # concurrency 2: the bulk subscription must still let a batch of 5 fill
            {
                "redisHost": redis_url,
                "processingTimeout": "1s",
                "redeliverInterval": "300ms",
                "concurrency": "2",
            },
        ),
    )
    sub_id, prefix = unique("bulksub"), unique("t") + "-"
    app_port = free_port()
    subscriber = SidecarThread(
        SidecarOptions(app_id=sub_id, resources_paths=[res], app_port=app_port, registry_dir=tmp_path / "reg")
    ).start()
    app = AppProcess(
        APP, app_port, subscriber.options.app_env(), {"TOPIC_PREFIX": prefix}, cwd=REPO, name=sub_id
    )
    publisher: SidecarThread | None = None
    try:
        app.start()
        subscriber.wait_app_ready()
        publisher = SidecarThread(
            SidecarOptions(app_id=unique("bulkpub"), resources_paths=[res], registry_dir=tmp_path / "reg")
        ).start()
        answers = {
            "ok-1": "SUCCESS",
            "ok-2": "SUCCESS",
            "drop": "DROP",
            "again": "RETRY_ONCE",
            "ok-3": "SUCCESS",
        }
        monkeypatch.setenv("DAPR_HTTP_PORT", str(publisher.http_port))
        with DaprClient(address=publisher.grpc_address) as client:
            result = client.publish_events(
                "pubsub",
                prefix + "bulk",
                [json.dumps({"answer": a, "key": k}) for k, a in answers.items()],
                data_content_type="application/json",
            )
            assert not result.failed_entries

        def envelopes() -> list[dict[str, Any]]:
            got = httpx.get(f"http://127.0.0.1:{app_port}/received", timeout=5).json()["envelopes"]
            return list(got)

        def keys_seen() -> list[str]:
            return [e["event"]["data"]["key"] for env in envelopes() for e in env["entries"]]

        # "again" is answered RETRY once; with no dead-letter topic Redis redelivers it.
        wait_until(lambda: keys_seen().count("again") == 2, timeout=20, what="the RETRY entry redelivered")
        seen = keys_seen()
        assert sorted(set(seen)) == sorted(answers)
        assert seen.count("drop") == 1 and seen.count("ok-1") == 1  # DROP and SUCCESS are acked
        first = envelopes()[0]
        assert max(len(env["entries"]) for env in envelopes()) > 1  # batched, not one POST per event
        assert first["type"] == "com.dapr.event.sent.bulk"
        assert (first["topic"], first["pubsubname"]) == (prefix + "bulk", "pubsub")
        assert first["headers"]["content-type"].startswith("application/json")
        entry = first["entries"][0]
        assert entry["contentType"] == "application/cloudevents+json" and entry["entryId"]
        assert entry["event"]["source"] == publisher.options.app_id
    finally:
        app.stop()
        subscriber.stop()
        if publisher is not None:
            publisher.stop()
