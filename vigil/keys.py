"""`vigil keys create|list|revoke`: the gateway's API keys, through a Dapr sidecar of app id `gateway`.

By default a localdapr sidecar is started on the chosen components folder (the embedded profile's
SQLite file unless `--resources`), so keys can be made before anything runs (the first admin key) and a
running gateway sees them at once. `--sidecar` uses the sidecar already at DAPR_HTTP_PORT/DAPR_GRPC_PORT
instead (inside the gateway's pod). A new key is printed once, on stdout; only its salted hash is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from apps.common.names import GATEWAY_APP_ID
from apps.gateway.keys import SCOPE_MEANING, SCOPES, KeyNotFound, KeyService, KeyStoreUnavailable
from vigil.sidecar import SidecarStartError, command_sidecar

T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resources",
        type=Path,
        default=None,
        help="components folder (default: components/embedded; components/ = Redis profile)",
    )
    parser.add_argument(
        "--sidecar", action="store_true", help="use the sidecar at DAPR_HTTP_PORT/DAPR_GRPC_PORT instead"
    )
    sub = parser.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="make a key and print it once")
    create.add_argument("--name", required=True, help="who or what uses it (shown as the operator)")
    scopes = "; ".join(f"{s}: {m}" for s, m in SCOPE_MEANING.items())
    create.add_argument(
        "--scope", action="append", choices=SCOPES, required=True, help=f"repeatable. {scopes}"
    )
    sub.add_parser("list", help="every key: id, name, scopes, created, revoked (never the keys)")
    revoke = sub.add_parser("revoke", help="revoke a key (answers 401 from then on)")
    revoke.add_argument("key_id")


async def _command(args: argparse.Namespace, keys: KeyService) -> int:
    if args.keys_command == "create":
        key, record = await keys.create(args.name, args.scope)
        sys.stdout.write(f"{key}\n")
        sys.stderr.write(
            f"key {record.id} ({record.name}: {', '.join(record.scopes)}). Keep it now: it is not shown "
            "again, only its salted hash is stored.\n"
        )
        return 0
    if args.keys_command == "list":
        for r in await keys.list():
            revoked = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
            created = f"{r.created_at:%Y-%m-%d %H:%M}"
            sys.stdout.write(f"{r.id}  {r.name:<24.24}  {','.join(r.scopes):<28}  {created}  {revoked}\n")
        return 0
    try:
        record = await keys.revoke(args.key_id)
    except KeyNotFound as exc:
        sys.stderr.write(f"error: {exc.args[0]}\n")
        return 1
    sys.stdout.write(f"revoked {record.id} ({record.name})\n")
    return 0


async def _with_store(run: Callable[[KeyService], Awaitable[T]]) -> T:
    from dapr.aio.clients import DaprClient

    from apps.gateway.ports import DaprKeyStore

    async with DaprClient() as client:
        return await run(KeyService(DaprKeyStore(client)))


def run_keys(args: argparse.Namespace) -> int:
    async def run(keys: KeyService) -> int:
        return await _command(args, keys)

    if args.sidecar:
        return _guarded(lambda: asyncio.run(_with_store(run)))
    try:
        with command_sidecar(GATEWAY_APP_ID, args.resources, "keys"):
            return _guarded(lambda: asyncio.run(_with_store(run)))
    except SidecarStartError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


def _guarded(call: Callable[[], int]) -> int:
    try:
        return call()
    except KeyStoreUnavailable as exc:
        sys.stderr.write(f"error: the key store is unavailable: {exc}\n")
        return 1
