"""Micro-batching: concurrent requests share one generator call; a bounded queue sheds load instead of
letting latency grow without bound.

Requests wait in one FIFO queue of at most ``max_queue`` devices (a full queue raises
:class:`QueueFullError`, answered 503 with ``Retry-After``). One task takes the queue's head and, while other
requests are still being read (:meth:`expect`), for at most ``max_wait_ms`` or until ``max_batch`` devices
are gathered, whatever arrives next; a lone request therefore never waits. Then it runs the generator
on all of them in a worker thread (onnxruntime releases the GIL, so the event loop keeps reading requests
meanwhile) and answers each request with its own rows, in the dtype it asked for.
"""

import asyncio
import time
from collections import deque
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor


class QueueFullError(Exception):
    """The queue holds ``max_queue`` devices already: the client should retry later."""


class _Job:
    __slots__ = ("windows", "dtype", "future")

    def __init__(self, windows, dtype, future):
        self.windows = windows
        self.dtype = dtype
        self.future = future


class MicroBatcher:
    """Batch :meth:`submit` calls into calls of ``generator.parameters``.

    Args:
        generator (BundleGenerator): runs the generator graph and encodes payloads.
        max_batch (int): devices per generator call (one larger request runs alone).
        max_wait_ms (float): how long the first request of a batch may wait for others.
        max_queue (int): devices that may wait at once.
        on_batch (callable, optional): called with each batch's device count (metrics).
    """

    def __init__(self, generator, max_batch=256, max_wait_ms=2.0, max_queue=4096, on_batch=None):
        self.generator = generator
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch or (lambda size: None)
        self.queued = 0
        self.expected = 0
        self._jobs = deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duet-generator")
        self._task = None

    def start(self):
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @contextmanager
    def expect(self):
        """Mark a request being read: a batch waits (up to ``max_wait_ms``) for requests marked so."""
        self.expected += 1
        try:
            yield
        finally:
            self.expected -= 1
            self._arrived.set()

    async def submit(self, windows, dtype):
        """Payloads for ``windows`` (lists of internal item ids), generated in some batch."""
        if self.queued + len(windows) > self.max_queue:
            raise QueueFullError(f"{self.queued} devices are waiting (limit {self.max_queue})")
        future = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(windows, dtype, future))
        self.queued += len(windows)
        self._arrived.set()
        return await future

    async def _gather(self):
        """The next batch: the queue's head, then what arrives within ``max_wait`` up to ``max_batch``."""
        while not self._jobs:
            self._arrived.clear()
            await self._arrived.wait()
        await asyncio.sleep(0)  # let requests whose bytes have already arrived reach the queue first
        batch = [self._jobs.popleft()]
        size = len(batch[0].windows)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            if self._jobs:
                if size + len(self._jobs[0].windows) > self.max_batch:
                    break
                job = self._jobs.popleft()
                batch.append(job)
                size += len(job.windows)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.expected == 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        self.queued -= size
        return batch

    def _generate(self, batch):
        tensors = self.generator.parameters([window for job in batch for window in job.windows])
        results, start = [], 0
        for job in batch:
            stop = start + len(job.windows)
            results.append(self.generator.codec.encode([tensor[start:stop] for tensor in tensors], job.dtype))
            start = stop
        return results

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            self.on_batch(sum(len(job.windows) for job in batch))
            try:
                results = await loop.run_in_executor(self._executor, self._generate, batch)
            except Exception as error:  # a generator failure fails its requests, never the batcher
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            for job, payloads in zip(batch, results):
                if not job.future.done():  # the client may have gone away
                    job.future.set_result(payloads)
