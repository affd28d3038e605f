"""The ASR engine's queue: finals first, partials latest-only and round-robin."""

import asyncio

import numpy as np

from earshot.models.asr_queues import DecodeJob, FairQueue, FifoQueue
from earshot.models.audio import read_audio
from tests.conftest import corpus_file


def job(stream: str, final: bool, seconds: float = 1.0) -> DecodeJob:
    loop = asyncio.new_event_loop()
    return DecodeJob(stream, np.zeros(int(seconds * 16000), np.float32), final, loop.create_future(), loop)


def test_finals_go_before_partials():
    queue = FairQueue()
    partial, final = job("a", False), job("b", True)
    queue.put(partial)
    queue.put(final)
    assert queue.get()[0] is final and queue.get()[0] is partial


def test_a_newer_partial_replaces_the_queued_one():
    queue = FairQueue()
    old, new = job("a", False, 1.0), job("a", False, 1.4)
    assert queue.put(old) is None
    assert queue.put(new) is old  # the caller of `old` gets None
    assert queue.depth == 1 and queue.get()[0] is new


def test_partials_take_turns_across_streams():
    queue = FairQueue()
    for stream in ("a", "b"):
        queue.put(job(stream, False))
    first = queue.get()[0]
    queue.put(job(first.stream_id, False))  # the stream just served asks again at once
    assert queue.get()[0].stream_id != first.stream_id  # the other stream still goes next


def test_a_queued_final_can_be_withdrawn_among_others():
    queue = FairQueue()
    first, second = job("a", True, 2.0), job("a", True, 3.5)  # one stream, two utterances
    queue.put(first)
    queue.put(second)
    assert queue.remove(second) is True
    assert queue.remove(second) is False
    assert queue.get()[0] is first and queue.depth == 0


def test_the_engine_outlives_an_event_loop_that_closed_mid_decode():
    """A CLI run or a test ends its loop while a decode runs; the shared engine must go on."""
    from earshot.models.asr import AsrConfig, AsrEngine

    engine = AsrEngine.load(AsrConfig())
    audio = read_audio(corpus_file("long/answer-austen.wav"))  # 17 s of speech: still decoding when its loop is gone

    async def start_and_leave() -> None:
        task = asyncio.ensure_future(engine.transcribe("a", audio, final=True))
        await asyncio.sleep(0.05)
        task.cancel()

    try:
        asyncio.run(start_and_leave())
        result = asyncio.run(asyncio.wait_for(engine.transcribe("b", bytes(16000 * 2), final=True), timeout=30))
        assert result is not None and result.text == ""
    finally:
        engine.close()


def test_a_batch_takes_partials_of_different_streams_and_never_a_final():
    queue = FairQueue()
    final = job("d", True)
    for stream in ("a", "b", "c"):
        queue.put(job(stream, False))
    queue.put(job("a", False, 1.4))  # replaces a's queued partial: still one per stream
    queue.put(final)
    assert queue.get(max_batch=4) == [final]  # a final goes first, and alone
    batch = queue.get(max_batch=2)
    assert len(batch) == 2 and len({j.stream_id for j in batch}) == 2 and not any(j.final for j in batch)
    (last,) = queue.get(max_batch=2)
    assert {j.stream_id for j in batch} | {last.stream_id} == {"a", "b", "c"} and queue.depth == 0


def test_fifo_baseline_keeps_arrival_order_and_every_partial():
    queue = FifoQueue()
    old, new, final = job("a", False, 1.0), job("a", False, 1.4), job("b", True)
    for item in (old, new, final):
        assert queue.put(item) is None  # nothing displaced
    assert queue.get(max_batch=4) == [old]  # no batching, no finals first
    assert queue.get()[0] is new and queue.get()[0] is final
    assert queue.remove(final) is False
