"""Micro-batching: concurrent prediction requests are coalesced into one ONNX Runtime run.

One ONNX session run on 256 rows costs little more than a run on one row, so under load the batcher
waits at most `max_wait` for more requests (or until `max_rows` rows are queued), runs them together
in a worker thread, and hands each caller its own slice. With a single caller it adds at most
`max_wait` of latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RunBatch = Callable[[np.ndarray], np.ndarray]


@dataclass(slots=True)
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    def __init__(self, run: RunBatch, max_rows: int = 512, max_wait: float = 0.002) -> None:
        self._run = run
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # how many session runs (for metrics and tests)
        self.rows = 0

    async def predict(self, rows: np.ndarray) -> np.ndarray:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(rows, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            count = len(first.rows)
            deadline = loop.time() + self.max_wait
            while count < self.max_rows:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                batch.append(item)
                count += len(item.rows)
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        rows = np.concatenate([p.rows for p in batch]) if len(batch) > 1 else batch[0].rows
        try:
            out = await asyncio.to_thread(self._run, rows)
        except Exception as exc:  # every caller of the batch gets the error, none hangs
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        self.batches += 1
        self.rows += len(rows)
        start = 0
        for p in batch:
            end = start + len(p.rows)
            if not p.future.done():
                p.future.set_result(out[start:end])
            start = end

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
