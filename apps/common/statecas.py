"""One read-change-write of a Dapr state key, guarded by its etag and retried on a conflict.

Several replicas change the same key (inference's input counts, training's job leases): each reads the
value with its etag, computes the new one (a pure function of the old), and writes it only if nobody
wrote in between (the etag; `first-write` when the key did not exist). On a conflict it reads again.
"""

from __future__ import annotations

from collections.abc import Callable

from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError, DaprInternalError
from dapr.clients.grpc._state import Concurrency, StateOptions

# The new value from the current one (None: the key is absent); None: leave it as it is.
Change = Callable[[bytes | None], str | None]


class StateContention(Exception):
    """Every attempt met a concurrent write (or the store kept refusing the write)."""


async def update_state(
    client: DaprClient,
    store: str,
    key: str,
    change: Change,
    *,
    ttl_seconds: int | None = None,
    attempts: int = 20,
) -> bool:
    """Apply `change` to `key`; True once written, False when `change` left it unchanged. A read that
    fails raises the SDK's error (the store is away); `ttl_seconds`: the written value expires then."""
    metadata = {"ttlInSeconds": str(ttl_seconds)} if ttl_seconds else {}
    for _ in range(attempts):
        got = await client.get_state(store, key)
        new = change(got.data or None)
        if new is None:
            return False
        try:
            if got.etag:
                await client.save_state(store, key, new, etag=got.etag, state_metadata=metadata)
            else:
                first = StateOptions(concurrency=Concurrency.first_write)
                await client.save_state(store, key, new, options=first, state_metadata=metadata)
            return True
        except (DaprGrpcError, DaprInternalError):
            # The aio client wraps an etag conflict in DaprInternalError (the sync one in
            # DaprGrpcError): somebody wrote meanwhile; read again.
            continue
    raise StateContention(f"{key} in {store}: {attempts} writes met a concurrent change")
