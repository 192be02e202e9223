"""Dynamic batching: requests for one served run that arrive within `max_wait_ms` of the first
waiting one join its batch, up to `max_batch_size` inputs; each group of a batch that can share
a model call (same key: e.g. the same sampling settings) runs as one call, in a worker thread,
and every request gets back its own rows. Each served run has its own queue, so a batch only
ever holds requests for one run (one adapter), and a slow run does not hold up the others.

/v1/predict batches texts, pairs or images (a request of n inputs counts n); the generation
routes batch whole requests (each counts 1)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass
class _Job:
    key: Hashable  # jobs of one batch with the same key run in one call
    items: list
    future: asyncio.Future


class _Lane:
    """One served run's queue and the task that empties it."""

    def __init__(self, batcher: Batcher, name: str) -> None:
        self.batcher, self.name = batcher, name
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.carry: _Job | None = None
        self.task = asyncio.get_running_loop().create_task(self._work())

    async def _gather(self) -> list[_Job]:
        limit, loop = self.batcher.max_batch_size, asyncio.get_running_loop()
        first, self.carry = self.carry, None
        jobs = [first if first is not None else await self.queue.get()]
        size = len(jobs[0].items)
        deadline = loop.time() + self.batcher.max_wait
        while size < limit:
            left = deadline - loop.time()
            if left <= 0 and self.queue.empty():
                break
            try:
                job = self.queue.get_nowait() if left <= 0 else await asyncio.wait_for(self.queue.get(), left)
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if size + len(job.items) > limit:  # too big to join: it starts the next batch
                self.carry = job
                break
            jobs.append(job)
            size += len(job.items)
        return jobs

    async def _work(self) -> None:
        while True:
            jobs = await self._gather()
            groups: dict[Hashable, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.key, []).append(job)
            for key, group in groups.items():
                items = [item for job in group for item in job.items]
                try:
                    rows = await asyncio.to_thread(self.batcher.run, self.name, key, items)
                except Exception as err:  # every request of the failed call learns why
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(err)
                    continue
                self.batcher.on_batch(len(items))
                start = 0
                for job in group:
                    if not job.future.done():
                        job.future.set_result(rows[start:start + len(job.items)])
                    start += len(job.items)


class Batcher:
    """`run(name, key, items)` answers a batch of one run's items, one row per item, in order;
    `on_batch(size)` is told each call's size (the /metrics histogram)."""

    def __init__(self, run: Callable[[str, Hashable, list], list], max_batch_size: int, max_wait_ms: float,
                 on_batch: Callable[[int], None]) -> None:
        self.run, self.max_batch_size, self.max_wait = run, max_batch_size, max_wait_ms / 1000
        self.on_batch = on_batch
        self.lanes: dict[str, _Lane] = {}

    async def stop(self) -> None:
        for lane in self.lanes.values():
            lane.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lane.task
        self.lanes.clear()

    async def submit(self, name: str, items: list, key: Hashable = None) -> list:
        """Rows for `items` of run `name`, answered with other requests' in one call."""
        if name not in self.lanes:
            self.lanes[name] = _Lane(self, name)
        job = _Job(key, items, asyncio.get_running_loop().create_future())
        await self.lanes[name].queue.put(job)
        return await job.future
