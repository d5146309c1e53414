"""The micro-batcher's scheduling, without a server: when a batch goes, what it holds, and that every request
gets its own payloads. The generator is a stand-in whose payload is the window itself, so each answer can be
traced back to its request. The event loop runs on a fake clock (looptime): its sleeps and waits take no real
time, a batch's departure is read off that clock exactly, and a busy machine changes nothing a test sees."""

import asyncio
import json
import threading

import looptime
import numpy as np
import pytest

from recbole_duet.device.bundle import PayloadCodec
from recbole_duet.serving.batcher import MicroBatcher, QueueFullError

LONG_WAIT_MS = 5000


class WindowEcho:
    """A generator whose parameters for a window are its first three ids; records each call's device count and
    can hold a call until released (to let requests queue while it runs)."""

    def __init__(self, hold_first_call=False):
        self.codec = PayloadCodec({"model_version": "v1", "payload": [{"name": "ids", "shape": [3]}]})
        self.calls = []
        self.release = threading.Event()
        if not hold_first_call:
            self.release.set()

    def parameters(self, windows):
        self.calls.append(len(windows))
        if len(self.calls) == 1:
            self.release.wait(10)
        return [np.array([(window + [0, 0, 0])[:3] for window in windows], dtype=np.float32)]


def ids_of(codec, text):
    payload = json.loads(text)
    return payload["dtype"], codec.decode(payload)["ids"][0].astype(int).tolist()


class Departures:
    """The fake-clock time at which each batch went (the batcher's ``on_batch`` hook runs on the loop, before the
    generator is called)."""

    def __init__(self):
        self.times = []

    def __call__(self, size):
        self.times.append(asyncio.get_running_loop().time())


def run_with(batcher, scenario):
    """Run ``scenario(batcher)`` on a fresh fake-clock event loop (time 0 at the start) with the batcher started."""

    async def main():
        batcher.start()
        try:
            return await scenario(batcher)
        finally:
            await batcher.stop()

    loop = looptime.new_event_loop(start=0)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


async def reading(batcher, seconds, windows=None):
    """A request whose body takes ``seconds`` to read, then (with ``windows``) is submitted."""
    with batcher.expect():
        await asyncio.sleep(seconds)
    if windows is not None:
        return await batcher.submit(windows, "float32")


def test_a_lone_request_does_not_wait_for_company():
    generator, departures = WindowEcho(), Departures()
    payloads = run_with(
        MicroBatcher(generator, max_wait_ms=LONG_WAIT_MS, on_batch=departures), lambda b: b.submit([[3, 4]], "float32")
    )
    assert departures.times == [0] and generator.calls == [1]
    assert ids_of(generator.codec, payloads[0]) == ("float32", [3, 4, 0])


def test_requests_queued_while_the_generator_runs_share_its_next_call():
    generator = WindowEcho(hold_first_call=True)

    async def scenario(batcher):
        first = asyncio.ensure_future(batcher.submit([[1]], "float32"))
        await asyncio.sleep(0.1)  # the first call is running (held)
        later = [asyncio.ensure_future(batcher.submit([[10 + i]], "float32")) for i in range(5)]
        await asyncio.sleep(0.1)
        generator.release.set()
        return await asyncio.gather(first, *later)

    answers = run_with(MicroBatcher(generator, max_wait_ms=LONG_WAIT_MS), scenario)
    assert generator.calls == [1, 5]
    assert [ids_of(generator.codec, payloads[0])[1][0] for payloads in answers] == [1, 10, 11, 12, 13, 14]


def test_a_batch_waits_for_a_request_being_read_and_goes_when_it_is_queued():
    generator, departures = WindowEcho(), Departures()

    async def scenario(batcher):
        slow = asyncio.ensure_future(reading(batcher, 0.3, [[7]]))
        await asyncio.sleep(0)
        return await asyncio.gather(batcher.submit([[5]], "float32"), slow)

    answers = run_with(MicroBatcher(generator, max_wait_ms=LONG_WAIT_MS, on_batch=departures), scenario)
    assert generator.calls == [2]
    assert departures.times == [pytest.approx(0.3)]  # it went when the slow request arrived, not at the 5 s bound
    assert [ids_of(generator.codec, payloads[0])[1][0] for payloads in answers] == [5, 7]


def test_the_wait_for_requests_being_read_is_bounded():
    generator, departures = WindowEcho(), Departures()

    async def scenario(batcher):
        stuck = asyncio.ensure_future(reading(batcher, 3))
        await asyncio.sleep(0)
        answer = await batcher.submit([[5]], "float32")
        stuck.cancel()
        return answer

    run_with(MicroBatcher(generator, max_wait_ms=200, on_batch=departures), scenario)
    assert generator.calls == [1] and departures.times == [pytest.approx(0.2)]  # not at the stuck read's 3 s


def test_a_full_batch_goes_at_once_even_while_requests_are_being_read():
    generator, departures = WindowEcho(), Departures()

    async def scenario(batcher):
        stuck = asyncio.ensure_future(reading(batcher, 10))
        await asyncio.sleep(0)
        first = asyncio.ensure_future(batcher.submit([[1]], "float32"))
        await asyncio.sleep(0.1)
        assert departures.times == []  # the batch is waiting for the request being read
        answers = await asyncio.gather(first, *(batcher.submit([[i]], "float32") for i in range(2, 5)))
        stuck.cancel()
        return answers

    run_with(MicroBatcher(generator, max_batch=4, max_wait_ms=LONG_WAIT_MS, on_batch=departures), scenario)
    assert generator.calls == [4] and departures.times == [pytest.approx(0.1)]  # full: gone at once


def test_a_request_larger_than_a_batch_runs_alone_and_is_never_split():
    generator = WindowEcho()

    async def scenario(batcher):
        return await asyncio.gather(batcher.submit([[i] for i in range(1, 7)], "float32"), batcher.submit([[9]], "float32"))

    big, small = run_with(MicroBatcher(generator, max_batch=4), scenario)
    assert generator.calls == [6, 1]
    assert [ids_of(generator.codec, text)[1][0] for text in big] == [1, 2, 3, 4, 5, 6]


def test_each_request_gets_its_own_rows_in_the_dtype_it_asked_for():
    generator = WindowEcho(hold_first_call=True)

    async def scenario(batcher):
        first = asyncio.ensure_future(batcher.submit([[1]], "float32"))
        await asyncio.sleep(0.1)
        mixed = [
            asyncio.ensure_future(batcher.submit(windows, dtype))
            for windows, dtype in [([[2, 3], [4]], "float32"), ([[5]], "float16"), ([[6, 7], [8, 9]], "float32")]
        ]
        await asyncio.sleep(0.1)
        generator.release.set()
        await first
        return await asyncio.gather(*mixed)

    answers = run_with(MicroBatcher(generator, max_wait_ms=LONG_WAIT_MS), scenario)
    assert generator.calls == [1, 5]
    assert [[ids_of(generator.codec, text) for text in payloads] for payloads in answers] == [
        [("float32", [2, 3, 0]), ("float32", [4, 0, 0])],
        [("float16", [5, 0, 0])],
        [("float32", [6, 7, 0]), ("float32", [8, 9, 0])],
    ]


def test_a_request_that_would_overfill_the_queue_is_refused():
    generator = WindowEcho(hold_first_call=True)

    async def scenario(batcher):
        first = asyncio.ensure_future(batcher.submit([[1]], "float32"))
        await asyncio.sleep(0.1)  # the generator holds the first; the queue is empty again
        queued = asyncio.ensure_future(batcher.submit([[2], [3]], "float32"))
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="2 devices are waiting"):
            await batcher.submit([[4]], "float32")
        generator.release.set()
        return await asyncio.gather(first, queued)

    answers = run_with(MicroBatcher(generator, max_queue=2), scenario)
    assert [len(payloads) for payloads in answers] == [1, 2]


# --- defaults, stop, a failing generator, batch limits (mutation-testing survivors, docs/development.md) ----------


class Signalling:
    """A generator that records the thread each call runs in, tells the event loop when a call has started, can hold
    its calls until released, and fails the calls whose first window is ``[666]``."""

    def __init__(self, loop, hold=False):
        self.codec = PayloadCodec({"model_version": "v1", "payload": [{"name": "ids", "shape": [3]}]})
        self.loop = loop
        self.calls, self.threads = [], []
        self.started = asyncio.Event()
        self.release, self.finished = threading.Event(), threading.Event()
        if not hold:
            self.release.set()

    def parameters(self, windows):
        self.calls.append(len(windows))
        self.threads.append(threading.current_thread().name)
        self.loop.call_soon_threadsafe(self.started.set)
        self.release.wait(10)  # a guard only: the tests release it
        self.finished.set()
        if windows[0] == [666]:
            raise RuntimeError("the generator failed")
        return [np.array([(window + [0, 0, 0])[:3] for window in windows], dtype=np.float32)]


def test_the_defaults_match_the_documented_serve_settings():
    batcher = MicroBatcher(WindowEcho())
    assert (batcher.max_batch, batcher.max_wait, batcher.max_queue) == (256, 0.002, 4096)
    assert (batcher.queued, batcher.expected) == (0, 0)


def test_stop_before_start_is_harmless():
    asyncio.run(MicroBatcher(WindowEcho()).stop())


def test_stop_ends_the_batching_task_and_leaves_no_task_behind():
    async def scenario():
        batcher = MicroBatcher(WindowEcho())
        batcher.start()
        assert len(asyncio.all_tasks()) == 2
        await batcher.stop()
        await asyncio.sleep(0)
        return asyncio.all_tasks()

    tasks = asyncio.run(scenario())
    assert len(tasks) == 1  # the scenario itself


def test_stop_does_not_wait_for_a_generator_call_in_progress():
    async def scenario():
        generator = Signalling(asyncio.get_running_loop(), hold=True)
        batcher = MicroBatcher(generator)
        batcher.start()
        request = asyncio.ensure_future(batcher.submit([[1]], "float32"))
        await generator.started.wait()
        await batcher.stop()
        still_running = not generator.finished.is_set()
        generator.release.set()
        request.cancel()
        return still_running, generator

    still_running, generator = asyncio.run(scenario())
    assert still_running  # stop returned while the call was held, not after it
    assert generator.finished.wait(10) and generator.calls == [1]


def test_the_generator_runs_in_the_batcher_s_own_thread():
    async def scenario():
        generator = Signalling(asyncio.get_running_loop())
        batcher = MicroBatcher(generator)
        batcher.start()
        try:
            await batcher.submit([[1]], "float32")
            await batcher.submit([[2]], "float32")
        finally:
            await batcher.stop()
        return generator

    assert asyncio.run(scenario()).threads == ["duet-generator_0", "duet-generator_0"]


def test_a_generator_failure_fails_its_requests_and_the_batcher_serves_on():
    async def scenario():
        generator = Signalling(asyncio.get_running_loop())
        batcher = MicroBatcher(generator)
        batcher.start()
        try:
            failing = asyncio.ensure_future(batcher.submit([[666]], "float32"))
            await generator.started.wait()
            later = asyncio.ensure_future(batcher.submit([[5]], "float32"))
            done, _ = await asyncio.wait([later, batcher._task], return_when=asyncio.FIRST_COMPLETED)
            assert done == {later}, "the batching task ended"
            assert failing.done(), "the failed request got no answer"
            with pytest.raises(RuntimeError, match="^the generator failed$"):
                failing.result()
            return generator, later.result(), batcher.queued
        finally:
            await batcher.stop()

    generator, payloads, queued = asyncio.run(scenario())
    assert generator.calls == [1, 1] and ids_of(generator.codec, payloads[0]) == ("float32", [5, 0, 0]) and queued == 0


def test_queued_requests_are_cut_into_batches_of_at_most_max_batch_devices():
    generator = WindowEcho(hold_first_call=True)

    async def scenario(batcher):
        first = asyncio.ensure_future(batcher.submit([[1]], "float32"))
        await asyncio.sleep(0.1)  # the first call is running (held)
        later = [asyncio.ensure_future(batcher.submit([[10 + i]], "float32")) for i in range(3)]
        await asyncio.sleep(0.1)
        generator.release.set()
        answers = await asyncio.gather(first, *later)
        return answers, batcher.queued

    answers, queued = run_with(MicroBatcher(generator, max_batch=2, max_wait_ms=LONG_WAIT_MS), scenario)
    assert generator.calls == [1, 2, 1] and queued == 0
    assert [ids_of(generator.codec, payloads[0])[1][0] for payloads in answers] == [1, 10, 11, 12]


def test_a_request_that_fills_the_batch_goes_at_once_even_while_another_is_being_read():
    generator, departures = WindowEcho(), Departures()

    async def scenario(batcher):
        stuck = asyncio.ensure_future(reading(batcher, 10))
        await asyncio.sleep(0)
        answer = await batcher.submit([[1], [2]], "float32")
        stuck.cancel()
        return answer

    run_with(MicroBatcher(generator, max_batch=2, max_wait_ms=LONG_WAIT_MS, on_batch=departures), scenario)
    assert generator.calls == [2] and departures.times == [0]
