"""Distributed lock, sidecar metadata labels and the configuration API through localdapr, with the
official SDK as the client (raw gRPC and HTTP where the SDK cannot send the request)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import redis
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._response import UnlockResponseStatus
from dapr.proto import api_service_v1, api_v1

from localdapr.sidecar import SidecarOptions
from localdapr.testing import SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, unique, write

pytestmark = [
    pytest.mark.sidecar,
    pytest.mark.filterwarnings("ignore:The Distributed Lock API is an Alpha"),
]

LOCK_PROFILES = ("in-memory", "redis")


def start(folder: Path, app_id: str) -> SidecarThread:
    return SidecarThread(
        SidecarOptions(app_id=app_id, resources_paths=[folder], registry_dir=folder / "reg")
    ).start()


def lock_component(profile: str, request: pytest.FixtureRequest, key_prefix: str = "") -> str:
    metadata = {"keyPrefix": key_prefix} if key_prefix else {}
    if profile == "redis":
        metadata["redisHost"] = request.getfixturevalue("redis_url")
    return component("lockstore", f"lock.{profile}", metadata)


@pytest.fixture(params=LOCK_PROFILES)
def lock_sidecar(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SidecarThread]:
    write(tmp_path / "res", "lock.yaml", lock_component(str(request.param), request))
    sc = start(tmp_path / "res", unique("lock-app"))
    try:
        yield sc
    finally:
        sc.stop()


@pytest.fixture
def client(lock_sidecar: SidecarThread, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(lock_sidecar.http_port))
    with DaprClient(address=lock_sidecar.grpc_address) as c:
        yield c


def rpc_error(call: object, *args: object) -> DaprGrpcError:
    """The SDK raises a bare grpc.RpcError from its lock methods; DaprGrpcError reads its details."""
    with pytest.raises(grpc.RpcError) as info:
        call(*args)  # type: ignore[operator]
    return DaprGrpcError(info.value)


# ---------------------------------------------------------------------------------------- locks
def test_owner_rules_and_unlock_statuses(client: DaprClient) -> None:
    resource = unique("order")
    assert client.try_lock("lockstore", resource, "alice", 60).success
    assert not client.try_lock("lockstore", resource, "bob", 60)
    assert client.unlock("lockstore", resource, "bob").status == UnlockResponseStatus.lock_belongs_to_others
    assert client.unlock("lockstore", resource, "alice").status == UnlockResponseStatus.success
    assert client.unlock("lockstore", resource, "alice").status == UnlockResponseStatus.lock_does_not_exist
    with client.try_lock("lockstore", resource, "bob", 60) as held:  # unlocked when the block ends
        assert held
    assert client.try_lock("lockstore", resource, "carol", 60)


def test_lease_expires(client: DaprClient) -> None:
    resource = unique("lease")
    assert client.try_lock("lockstore", resource, "alice", 2)
    assert not client.try_lock("lockstore", resource, "bob", 2)
    wait_until(
        lambda: client.try_lock("lockstore", resource, "bob", 60).success, timeout=10, what="lease over"
    )
    assert client.unlock("lockstore", resource, "alice").status == UnlockResponseStatus.lock_belongs_to_others


def test_lock_errors_are_daprds(client: DaprClient, lock_sidecar: SidecarThread) -> None:
    missing = rpc_error(client.try_lock, "nolock", "r", "alice", 10)
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert missing.details() == "lock nolock is not found"
    assert missing.error_code() == "DAPR_LOCK_NOT_FOUND"
    illegal = rpc_error(client.try_lock, "lockstore", "a||b", "alice", 10)
    assert illegal.code() == grpc.StatusCode.INTERNAL and illegal.error_code() == "DAPR_LOCK_TRY_LOCK_FAILED"
    assert "can't contain '||'" in illegal.status_details().error_info["metadata"]["error"]
    assert rpc_error(client.unlock, "lockstore", "a||b", "alice").error_code() == "DAPR_LOCK_UNLOCK_FAILED"
    # Requests the SDK refuses before sending them, sent raw.
    with grpc.insecure_channel(lock_sidecar.grpc_address) as channel:
        stub = api_service_v1.DaprStub(channel)
        for request, reason in [
            (
                api_v1.TryLockRequest(store_name="lockstore", lock_owner="o", expiry_in_seconds=5),
                "RESOURCE_ID_EMPTY",
            ),
            (
                api_v1.TryLockRequest(store_name="lockstore", resource_id="r", expiry_in_seconds=5),
                "OWNER_EMPTY",
            ),
            (
                api_v1.TryLockRequest(store_name="lockstore", resource_id="r", lock_owner="o"),
                "EXPIRY_NOT_POSITIVE",
            ),
        ]:
            err = rpc_error(stub.TryLockAlpha1, request)
            assert (
                err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.error_code() == f"DAPR_LOCK_{reason}"
            )
            resource = err.status_details().resource_info
            assert resource["resource_type"] == "lock" and resource["resource_name"] == "lockstore"


def test_lock_store_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    sc = start(tmp_path / "empty", unique("nolocks"))
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
        with DaprClient(address=sc.grpc_address) as c:
            err = rpc_error(c.try_lock, "lockstore", "r", "alice", 10)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.error_code() == "DAPR_LOCK_NOT_CONFIGURED"
    finally:
        sc.stop()


def test_http_lock_api(lock_sidecar: SidecarThread) -> None:
    base = f"http://127.0.0.1:{lock_sidecar.http_port}/v1.0-alpha1"
    resource = unique("http")
    body = {"resourceId": resource, "lockOwner": "alice", "expiryInSeconds": 60}
    assert httpx.post(f"{base}/lock/lockstore", json=body).json() == {"success": True}
    assert httpx.post(f"{base}/lock/lockstore", json={**body, "lockOwner": "bob"}).json() == {
        "success": False
    }
    unlock = {"resourceId": resource, "lockOwner": "bob"}
    assert httpx.post(f"{base}/unlock/lockstore", json=unlock).json() == {"status": 2}
    # protojson also reads the proto field names
    assert httpx.post(
        f"{base}/unlock/lockstore", json={"resource_id": resource, "lock_owner": "alice"}
    ).json() == {"status": 0}
    assert httpx.post(f"{base}/unlock/lockstore", json=unlock).json() == {"status": 1}
    missing = httpx.post(f"{base}/lock/nolock", json=body)
    assert missing.status_code == 400 and missing.json()["errorCode"] == "ERR_LOCK_STORE_NOT_FOUND"
    assert missing.json()["details"][0]["reason"] == "DAPR_LOCK_NOT_FOUND"
    empty = httpx.post(f"{base}/lock/lockstore", json={**body, "lockOwner": ""})
    assert empty.status_code == 400 and empty.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    bad = httpx.post(f"{base}/lock/lockstore", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["errorCode"] == "ERR_MALFORMED_REQUEST"


def test_lock_redis_layout_and_atomicity(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys as daprd writes them (`lock||<keyPrefix>||<id>` = owner, with a PX lease), and of many
    owners racing through two sidecars (two event loops, two connections) exactly one wins."""
    prefix = unique("shared").lower()
    comp = component("lockstore", "lock.redis", {"redisHost": redis_url, "keyPrefix": prefix})
    write(tmp_path / "res", "lock.yaml", comp)
    sidecars = [start(tmp_path / "res", unique("racer")) for _ in range(2)]
    server = redis.Redis.from_url(f"redis://{redis_url}")
    resource = unique("race")
    key = f"lock||{prefix}||{resource}"
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecars[0].http_port))
    clients = [DaprClient(address=sc.grpc_address) for sc in sidecars]
    try:

        def attempt(i: int) -> bool:
            return clients[i % 2].try_lock("lockstore", resource, f"owner-{i}", 30).success

        with ThreadPoolExecutor(8) as pool:
            won = [i for i, ok in enumerate(pool.map(attempt, range(16))) if ok]
        assert len(won) == 1
        assert server.get(key) == f"owner-{won[0]}".encode()
        assert 0 < server.pttl(key) <= 30_000
        loser = (won[0] + 1) % 16
        status = clients[loser % 2].unlock("lockstore", resource, f"owner-{loser}").status
        assert status == UnlockResponseStatus.lock_belongs_to_others and server.exists(key)
        status = clients[won[0] % 2].unlock("lockstore", resource, f"owner-{won[0]}").status
        assert status == UnlockResponseStatus.success and not server.exists(key)
        meta = httpx.get(f"http://127.0.0.1:{sidecars[0].http_port}/v1.0/metadata").json()
        assert {"name": "lockstore", "type": "lock.redis", "version": "v1", "capabilities": []} in meta[
            "components"
        ]
    finally:
        for c in clients:
            c.close()
        server.delete(key)
        server.close()
        for sc in sidecars:
            sc.stop()


# ------------------------------------------------------------------------------- metadata labels
def test_metadata_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SetMetadata / PUT /v1.0/metadata/{key} labels show in GetMetadata's extended metadata (and HTTP
    `extended`) of that sidecar only; daprRuntimeVersion cannot be overridden; an empty key is ignored."""
    (tmp_path / "res").mkdir()
    labelled, other = start(tmp_path / "res", unique("labelled")), start(tmp_path / "res", unique("other"))
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(labelled.http_port))
        base = f"http://127.0.0.1:{labelled.http_port}/v1.0/metadata"
        with DaprClient(address=labelled.grpc_address) as c:
            c.set_metadata("team", "maintenance")
            c.set_metadata("daprRuntimeVersion", "spoofed")
            assert httpx.put(f"{base}/region", content="eu-west").status_code == 204
            assert httpx.put(f"{base}/team", content="reliability").status_code == 204  # overwrites
            with grpc.insecure_channel(labelled.grpc_address) as channel:
                api_service_v1.DaprStub(channel).SetMetadata(api_v1.SetMetadataRequest(key="", value="x"))
            extended = c.get_metadata().extended_metadata
        assert extended["team"] == "reliability" and extended["region"] == "eu-west"
        assert extended["daprRuntimeVersion"].startswith("localdapr-") and "" not in extended
        assert httpx.get(base).json()["extended"] == extended
        assert "team" not in httpx.get(f"http://127.0.0.1:{other.http_port}/v1.0/metadata").json()["extended"]
    finally:
        labelled.stop()
        other.stop()


# --------------------------------------------------------------------------------- configuration
@pytest.fixture
def redis_server(redis_url: str) -> Iterator[redis.Redis]:
    server = redis.Redis.from_url(f"redis://{redis_url}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def config_sidecar(tmp_path: Path, redis_url: str) -> Iterator[SidecarThread]:
    write(
        tmp_path / "res",
        "config.yaml",
        component("configstore", "configuration.redis", {"redisHost": redis_url}),
    )
    sc = start(tmp_path / "res", unique("config-app"))
    try:
        yield sc
    finally:
        sc.stop()


@pytest.fixture
def config_client(config_sidecar: SidecarThread, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(config_sidecar.http_port))
    with DaprClient(address=config_sidecar.grpc_address) as c:
        yield c


@pytest.fixture
def keys(redis_server: redis.Redis) -> Iterator[list[str]]:
    """Unique key names for one test (the Redis server is shared), deleted afterwards."""
    names = [unique("cfg") for _ in range(4)]
    try:
        yield names
    finally:
        redis_server.delete(*names)


def values(items: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {k: (v.value, v.version) for k, v in items.items()}


def test_get_configuration_reads_daprds_layout(
    config_client: DaprClient, config_sidecar: SidecarThread, redis_server: redis.Redis, keys: list[str]
) -> None:
    versioned, plain, empty, hashed = keys
    redis_server.set(versioned, "100||3")
    redis_server.set(plain, "on")
    redis_server.set(empty, "")
    redis_server.hset(hashed, "data", "x")  # not a string: not a configuration item
    asked = [versioned, plain, empty, hashed, unique("missing")]
    assert values(config_client.get_configuration("configstore", asked).items) == {
        versioned: ("100", "3"),
        plain: ("on", ""),
    }
    everything = values(config_client.get_configuration("configstore", []).items)  # no keys: all of them
    assert everything[versioned] == ("100", "3") and hashed not in everything and empty not in everything
    for version in ("v1.0", "v1.0-alpha1"):
        base = f"http://127.0.0.1:{config_sidecar.http_port}/{version}/configuration/configstore"
        got = httpx.get(base, params=[("key", versioned), ("key", plain), ("metadata.any", "x")])
        assert got.status_code == 200
        assert got.json() == {versioned: {"value": "100", "version": "3"}, plain: {"value": "on"}}
        assert httpx.get(base, params={"key": empty}).status_code == 204


def test_subscribe_configuration_streams_changes_until_unsubscribed(
    config_client: DaprClient, config_sidecar: SidecarThread, redis_server: redis.Redis, keys: list[str]
) -> None:
    watched, other = keys[:2]
    updates: list[tuple[str, dict[str, tuple[str, str]]]] = []
    subscription = config_client.subscribe_configuration(
        "configstore", [watched], lambda sid, resp: updates.append((sid, values(resp.items)))
    )
    assert subscription
    redis_server.set(other, "ignored||1")
    redis_server.set(watched, "10||1")
    wait_until(lambda: updates, timeout=10, what="first change")
    redis_server.delete(watched)  # a deleted key arrives as an empty item, as contrib sends it
    wait_until(lambda: len(updates) >= 2, timeout=10, what="deletion")
    assert updates == [(subscription, {watched: ("10", "1")}), (subscription, {watched: ("", "")})]
    assert config_client.unsubscribe_configuration("configstore", subscription)
    assert not config_client.unsubscribe_configuration("configstore", subscription)  # ended already
    # Nothing can arrive any more: the sidecar forgot the subscription and left the Redis channel.
    assert (
        config_sidecar.sidecar is not None and not config_sidecar.sidecar.runtime.configurations.subscriptions
    )
    channel = f"__keyspace@0__:{watched}"
    wait_until(lambda: redis_server.pubsub_numsub(channel)[0][1] == 0, timeout=10, what="channel left")


def test_subscribe_to_every_key(
    config_client: DaprClient, redis_server: redis.Redis, keys: list[str]
) -> None:
    seen: dict[str, tuple[str, str]] = {}
    subscription = config_client.subscribe_configuration(
        "configstore", [], lambda sid, resp: seen.update(values(resp.items))
    )
    try:
        redis_server.set(keys[0], "on||7")
        wait_until(lambda: seen.get(keys[0]) == ("on", "7"), timeout=10, what="change of any key")
    finally:
        config_client.unsubscribe_configuration("configstore", subscription)


def test_keyspace_notifications_are_turned_on_keeping_other_flags(
    config_client: DaprClient, redis_server: redis.Redis, keys: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    before = redis_server.config_get("notify-keyspace-events")["notify-keyspace-events"]
    redis_server.config_set("notify-keyspace-events", "Ex")  # as an operator might have set it
    try:
        with caplog.at_level(logging.WARNING, logger="localdapr.configuration"):
            subscription = config_client.subscribe_configuration(
                "configstore", [keys[0]], lambda sid, resp: None
            )
        flags = redis_server.config_get("notify-keyspace-events")["notify-keyspace-events"]
        assert set(flags) >= set("KEg$xe"), flags
        assert "turned on Redis keyspace notifications" in caplog.text
        config_client.unsubscribe_configuration("configstore", subscription)
    finally:
        redis_server.config_set("notify-keyspace-events", before)


def test_subscriptions_end_with_their_client_and_their_sidecar(
    tmp_path: Path,
    redis_url: str,
    redis_server: redis.Redis,
    keys: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(
        tmp_path / "res",
        "config.yaml",
        component("configstore", "configuration.redis", {"redisHost": redis_url}),
    )
    sc = start(tmp_path / "res", unique("config-life"))
    channel = f"__keyspace@0__:{keys[0]}"
    try:
        assert sc.sidecar is not None
        active = sc.sidecar.runtime.configurations.subscriptions
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
        with DaprClient(address=sc.grpc_address) as c:
            assert c.subscribe_configuration("configstore", [keys[0]], lambda sid, resp: None)
        # The client closed its channel without unsubscribing: the stream ends and so does the watch.
        wait_until(lambda: not active, timeout=10, what="subscription dropped with its client")
        with DaprClient(address=sc.grpc_address) as c:
            assert c.subscribe_configuration("configstore", [keys[0]], lambda sid, resp: None)
            assert redis_server.pubsub_numsub(channel)[0][1] == 1
            sc.stop()  # the sidecar stopping ends its subscriptions at Redis
        assert redis_server.pubsub_numsub(channel)[0][1] == 0
    finally:
        sc.stop()


def test_configuration_errors_are_daprds(config_client: DaprClient, config_sidecar: SidecarThread) -> None:
    err = rpc_error(config_client.get_configuration, "nostore", ["k"])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "configuration store nostore not found"
    assert err.error_code() == "DAPR_CONFIGURATION_STORE_NOT_FOUND"
    http = httpx.get(f"http://127.0.0.1:{config_sidecar.http_port}/v1.0/configuration/nostore")
    assert http.status_code == 400 and http.json()["errorCode"] == "ERR_CONFIGURATION_STORE_NOT_FOUND"
    # No app port: the HTTP subscription has nowhere to deliver.
    nochannel = httpx.get(
        f"http://127.0.0.1:{config_sidecar.http_port}/v1.0/configuration/configstore/subscribe"
    )
    assert nochannel.status_code == 500 and nochannel.json()["errorCode"] == "ERR_APP_CHANNEL_NIL"


def test_configuration_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    sc = start(tmp_path / "empty", unique("noconfig"))
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
        with DaprClient(address=sc.grpc_address) as c:
            err = rpc_error(c.get_configuration, "configstore", ["k"])
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.details() == "configuration stores not configured"
        assert err.error_code() == "DAPR_CONFIGURATION_STORE_NOT_CONFIGURED"
    finally:
        sc.stop()


class RecordingApp:
    """An app on a free port that records the configuration updates daprd's HTTP channel POSTs."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - /dapr/config, /dapr/subscribe: nothing to offer
                self.send_response(404)
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingApp:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_http_subscription_posts_changes_to_the_app(
    tmp_path: Path, redis_url: str, redis_server: redis.Redis, keys: list[str]
) -> None:
    write(
        tmp_path / "res",
        "config.yaml",
        component("configstore", "configuration.redis", {"redisHost": redis_url}),
    )
    with RecordingApp() as app:
        sc = SidecarThread(
            SidecarOptions(
                app_id=unique("config-http"),
                resources_paths=[tmp_path / "res"],
                registry_dir=tmp_path / "reg",
                app_port=app.port,
            )
        ).start()
        try:
            sc.wait_app_ready()
            base = f"http://127.0.0.1:{sc.http_port}/v1.0/configuration/configstore"
            subscribed = httpx.get(f"{base}/subscribe", params=[("key", keys[0]), ("key", keys[1])])
            assert subscribed.status_code == 200
            subscription = subscribed.json()["id"]
            redis_server.set(keys[1], "blue||2")
            wait_until(lambda: app.posts, timeout=10, what="update POSTed to the app")
            assert app.posts == [
                (
                    f"/configuration/configstore/{keys[1]}",
                    {"id": subscription, "items": {keys[1]: {"value": "blue", "version": "2"}}},
                )
            ]
            assert httpx.get(f"{base}/{subscription}/unsubscribe").json() == {"ok": True}
            again = httpx.get(f"{base}/{subscription}/unsubscribe")
            assert again.status_code == 500
            assert again.json() == {
                "message": f"failed to unsubscribe to configuration request {subscription}: "
                f"subscription with id {subscription} does not exist"
            }
        finally:
            sc.stop()
