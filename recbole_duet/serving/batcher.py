"""Micro-batching: concurrent requests share one generator call; a bounded queue sheds load instead of
letting latency grow without bound.

Requests wait in one FIFO queue of at most ``max_queue`` devices (a full queue raises
:class:`QueueFullError`, answered 503 with ``Retry-After``). One task forms the batches: as soon as the
generator is free it takes everything queued (up to ``max_batch`` devices), after letting requests whose bytes
have already arrived reach the queue. It waits longer, at most ``max_wait_ms``, only while other requests are
still being read (:meth:`expect`) and the batch is not full, and it wakes once, when the last of them is
queued or the batch fills, not at every arrival. A lone request therefore never waits, and under load the batch
size follows the load: what queued while the previous batch ran. The generator runs in a worker thread
(onnxruntime releases the GIL, so the event loop keeps reading requests meanwhile), and each request gets its
own payloads as JSON text, in the dtype it asked for.
"""

import asyncio
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
        self._arrived = asyncio.Event()  # the queue is no longer empty
        self._ready = asyncio.Event()  # the batch can go: it is full, or no request is being read any more
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
            if not self.expected:
                self._ready.set()

    async def submit(self, windows, dtype):
        """Payloads for ``windows`` (lists of internal item ids), generated in some batch."""
        if self.queued + len(windows) > self.max_queue:
            raise QueueFullError(f"{self.queued} devices are waiting (limit {self.max_queue})")
        future = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(windows, dtype, future))
        self.queued += len(windows)
        self._arrived.set()
        if self.queued >= self.max_batch:
            self._ready.set()
        return await future

    async def _gather(self):
        """The next batch: what is queued once the requests already read have been queued, and what the requests
        still being read add within ``max_wait`` (up to ``max_batch`` devices)."""
        while not self._jobs:
            self._arrived.clear()
            await self._arrived.wait()
        await asyncio.sleep(0)  # let requests whose bytes have already arrived reach the queue first
        if self.expected and self.queued < self.max_batch:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), self.max_wait)
            except asyncio.TimeoutError:
                pass
        batch = [self._jobs.popleft()]
        size = len(batch[0].windows)
        while self._jobs and size + len(self._jobs[0].windows) <= self.max_batch:
            batch.append(self._jobs.popleft())
            size += len(batch[-1].windows)
        self.queued -= size
        return batch

    def _generate(self, batch):
        """Each job's payloads as JSON text: one generator call for the batch, one encoding per dtype asked for."""
        tensors = self.generator.parameters([window for job in batch for window in job.windows])
        dtypes = [job.dtype for job in batch for _ in job.windows]
        texts = [None] * len(dtypes)
        for dtype in set(dtypes):
            rows = [row for row, wanted in enumerate(dtypes) if wanted == dtype]
            for row, text in zip(rows, self.generator.codec.encode_json([t[rows] for t in tensors], dtype)):
                texts[row] = text
        results, start = [], 0
        for job in batch:
            results.append(texts[start : start + len(job.windows)])
            start += len(job.windows)
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
