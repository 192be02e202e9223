"""Dynamic batching for /v1/predict: requests that arrive within `max_wait_ms` of the first
one join its batch, up to `max_batch_size` texts; each model's share runs as one call (in a
worker thread, under the model's lock) and every request gets back its own rows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from tailorkit.serve.stats import Stats


@dataclass
class _Job:
    model: str
    texts: list[str]
    future: asyncio.Future


class Batcher:
    def __init__(self, run: Callable[[str, list[str]], list[dict]], max_batch_size: int, max_wait_ms: float,
                 stats: Stats) -> None:
        self.run, self.max_batch_size, self.max_wait = run, max_batch_size, max_wait_ms / 1000
        self.stats = stats
        self.queue: asyncio.Queue[_Job] | None = None
        self.task: asyncio.Task | None = None
        self.carry: _Job | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def submit(self, model: str, texts: list[str]) -> list[dict]:
        job = _Job(model, texts, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def _gather(self) -> list[_Job]:
        first, self.carry = self.carry, None
        jobs = [first if first is not None else await self.queue.get()]
        size = len(jobs[0].texts)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch_size:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 and self.queue.empty():
                break
            try:
                job = self.queue.get_nowait() if left <= 0 else await asyncio.wait_for(self.queue.get(), left)
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if size + len(job.texts) > self.max_batch_size:  # too big to join: it starts the next batch
                self.carry = job
                break
            jobs.append(job)
            size += len(job.texts)
        return jobs

    async def _work(self) -> None:
        while True:
            jobs = await self._gather()
            by_model: dict[str, list[_Job]] = {}
            for job in jobs:
                by_model.setdefault(job.model, []).append(job)
            for model, group in by_model.items():
                texts = [t for job in group for t in job.texts]
                try:
                    rows = await asyncio.to_thread(self.run, model, texts)
                except Exception as err:  # every request of the failed call learns why
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(err)
                    continue
                self.stats.batch(len(texts))
                start = 0
                for job in group:
                    if not job.future.done():
                        job.future.set_result(rows[start:start + len(job.texts)])
                    start += len(job.texts)
