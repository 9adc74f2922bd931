"""Component profiles and `doctor`: which servers a profile's components need, and whether they answer.

A profile is a folder of component files beside the run template: `components/<name>/`, and the name
`redis` for `components/` itself (the profile `dapr init` sets up). `vigil up --profile NAME` is short
for `--resources components/<name>`.

`doctor` reads the profile's component files, resolves their metadata the way the sidecar does
(`secretKeyRef` through the profile's local secret stores, `envRef`), and for each server a component
connects to (Redis, PostgreSQL, RabbitMQ, an MQTT broker) makes one real connection with the
component's own settings: PostgreSQL runs `SELECT 1` (so a wrong password or database shows), RabbitMQ
opens an AMQP connection, MQTT waits for the CONNACK, Redis answers PING. Nothing is created or
written. The exit code is 1 when any server is down, naming each with its error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from localdapr.components.factory import component_class
from localdapr.components.spec import ComponentSpec, load_resources
from localdapr.errors import ComponentError

PROBE_TIMEOUT = 5.0
REDIS_PROFILE = "redis"  # components/ itself


def profile_names(root: Path) -> list[str]:
    """The profiles beside a run template (`root` is its folder)."""
    components = root / "components"
    found = [REDIS_PROFILE] if any(components.glob("*.yaml")) else []
    if components.is_dir():
        found += sorted(p.name for p in components.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
    return found


def profile_path(root: Path, name: str) -> Path:
    """The folder of profile `name`; a ComponentError listing the profiles when there is none."""
    folder = root / "components" if name == REDIS_PROFILE else root / "components" / name
    if name in ("", ".", "..") or "/" in name or not folder.is_dir():
        known = ", ".join(profile_names(root)) or "none"
        raise ComponentError(f"no profile {name!r}: expected a folder {folder} (profiles here: {known})")
    return folder


@dataclass
class Server:
    kind: str  # Redis, PostgreSQL, RabbitMQ, MQTT
    address: str
    probe: Callable[[], Awaitable[None]]
    components: list[str] = field(default_factory=list)
    problem: str | None = None


def resolve(folder: Path) -> list[ComponentSpec]:
    """Every component of the folder with its metadata resolved, as a sidecar would (any app id)."""
    specs = load_resources([folder]).components
    secrets = {}
    for spec in specs:
        if spec.building_block == "secretstores":
            spec.metadata = {e.name: e.value or "" for e in spec.entries}
            store = component_class(spec).from_spec(spec)
            asyncio.run(store.init())  # local stores only read their file or the environment
            secrets[spec.name] = store
    for spec in specs:
        if spec.building_block == "secretstores":
            continue
        resolved: dict[str, str] = {}
        for entry in spec.entries:
            if entry.secret_ref is not None:
                store = secrets.get(spec.secret_store or "")
                if store is None:
                    raise spec.fail(
                        f"metadata field {entry.name!r}: secret store {spec.secret_store!r} not found"
                    )
                name, key = entry.secret_ref
                try:
                    values = store.get(name)
                except Exception as exc:
                    raise spec.fail(f"metadata field {entry.name!r}: {exc}") from None
                resolved[entry.name] = values.get(key or name, next(iter(values.values()), ""))
            elif entry.env_ref is not None:
                resolved[entry.name] = os.environ.get(entry.env_ref, "")
            else:
                resolved[entry.name] = entry.value or ""
        spec.metadata = resolved
    return specs


def servers(specs: list[ComponentSpec]) -> list[Server]:
    """The servers the components connect to, one entry per server with the components using it."""
    found: dict[tuple[str, str], Server] = {}
    for spec in specs:
        server = _server_of(spec)
        if server is not None:
            found.setdefault((server.kind, server.address), server).components.append(spec.name)
    return list(found.values())


def _server_of(spec: ComponentSpec) -> Server | None:
    # Settings are parsed by the component classes themselves, so doctor reads them as the sidecar does.
    kind = spec.type
    if kind in ("state.redis", "pubsub.redis", "lock.redis", "configuration.redis"):
        from localdapr.redisconn import RedisConnections

        redis = RedisConnections.from_spec(spec)

        async def ping() -> None:
            try:
                await redis.connect()
            finally:
                await redis.close()

        return Server("Redis", redis.address, ping)
    if kind == "state.postgresql":
        import psycopg

        from localdapr.state.postgres import PostgresSettings

        settings = PostgresSettings.from_spec(spec)

        async def select_one() -> None:
            async with await psycopg.AsyncConnection.connect(settings.conninfo, connect_timeout=5) as conn:
                await conn.execute("SELECT 1")

        return Server("PostgreSQL", settings.address, select_one)
    if kind == "pubsub.rabbitmq":
        import aio_pika

        from localdapr.pubsub.rabbitmq import RabbitMQBroker

        rabbit = RabbitMQBroker.from_spec(spec).settings

        async def amqp() -> None:
            connection = await aio_pika.connect(rabbit.url, timeout=PROBE_TIMEOUT)
            await connection.close()

        return Server("RabbitMQ", rabbit.address, amqp)
    if kind == "pubsub.mqtt3":
        from localdapr.pubsub.mqtt import MQTTBroker, check_connection

        mqtt = MQTTBroker.from_spec(spec).settings
        return Server("MQTT", mqtt.address, lambda: check_connection(mqtt))
    return None


async def check(found: list[Server]) -> None:
    """Probe every server at once; sets `problem` on each that does not answer."""

    async def one(server: Server) -> None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT + 1):
                await server.probe()
        except Exception as exc:  # any failure is the answer to report, whatever the client raised
            server.problem = (str(exc).strip() or type(exc).__name__).splitlines()[0]

    await asyncio.gather(*(one(s) for s in found))


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", default="dapr.yaml", help="run template; profiles live beside it")
    parser.add_argument("--profile", help="profile name (default: what `up` loads: embedded, else redis)")
    parser.add_argument("--resources", type=Path, help="a components folder instead of a profile")


def run_doctor(args: argparse.Namespace) -> int:
    root = Path(args.file).resolve().parent
    try:
        if args.resources is not None:
            folder, label = args.resources, str(args.resources)
        else:
            name = args.profile or (
                "embedded" if (root / "components" / "embedded").is_dir() else REDIS_PROFILE
            )
            folder, label = profile_path(root, name), name
        found = servers(resolve(folder))
    except ComponentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"profile {label} ({folder})")
    if not found:
        print("  needs no server")
        return 0
    asyncio.run(check(found))
    rows = [(f"{s.kind} {s.address}", ", ".join(s.components), s) for s in found]
    width = [max(len(r[i]) for r in rows) for i in (0, 1)]
    for where, used_by, server in rows:
        state = "ok" if server.problem is None else f"DOWN: {server.problem}"
        print(f"  {where.ljust(width[0])}  {used_by.ljust(width[1])}  {state}")
    down = [s for s in found if s.problem is not None]
    if down:
        names = ", ".join(f"{s.kind} at {s.address}" for s in down)
        print(f"not ready: {names} did not answer", file=sys.stderr)
        return 1
    print("ready: every server answers")
    return 0
