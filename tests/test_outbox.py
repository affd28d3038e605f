"""The call's one door for events: persist -> send -> observe -> the mode, with a real Redis and real metrics."""

from __future__ import annotations

import json

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from earshot.server import protocol
from earshot.server.at_rest import Sealer
from earshot.server.metrics import ServerMetrics
from earshot.server.outbox import EventChannel, Outbox
from earshot.server.retention import Retention
from earshot.server.storage_keys import StorageKey
from earshot.server.store import SessionStore, connect
from earshot.server.write_behind import WriteBehind


class OpenChannel:
    """Stands in for aiortc's RTCDataChannel: records what was sent, and how many finals Redis held then."""

    readyState = "open"

    def __init__(self, redis_url: str, session_id: str) -> None:
        self._redis = redis.Redis.from_url(redis_url)
        self._finals_key = f"earshot:session:{session_id}:finals"
        self.sent: list[dict] = []
        self.stored_finals_when_sent: list[int] = []

    def send(self, message: str) -> None:
        self.sent.append(json.loads(message))
        self.stored_finals_when_sent.append(self._redis.xlen(self._finals_key))


class Listener:
    def __init__(self) -> None:
        self.heard: list[protocol.Event] = []

    def on_event(self, event: protocol.Event) -> None:
        self.heard.append(event)


def errors_counted(metrics: ServerMetrics) -> dict[str, float]:
    counted = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "earshot_errors_total":
                counted[sample.labels["code"]] = sample.value
    return counted


@pytest.fixture
async def store(redis_url):
    store = SessionStore(
        connect(redis_url), Retention(live_s=60, transcripts_s=60, reports_s=60, pending_s=60), Sealer([StorageKey.new()])
    )
    yield store
    await store.close()


async def make_outbox(store: SessionStore, redis_url: str) -> tuple[Outbox, OpenChannel, Listener, ServerMetrics, str]:
    record, _ = await store.create("transcribe", "data_scientist", "easy")
    metrics = ServerMetrics(live_sessions=lambda: 0, asr_queue_depth=lambda: 0)

    async def on_outage(down: bool) -> None:
        pass

    writer = WriteBehind(store, record.session_id, on_outage)
    writer.start()
    channel = EventChannel(record.session_id)
    wire = OpenChannel(redis_url, record.session_id)
    channel.open(wire, first=protocol.Ready(record.session_id, "transcribe", "data_scientist", "easy", 1.0, 3.0, 0))
    outbox = Outbox(writer, channel, metrics.observe, lambda: {"audio_s": 1.0, "next_utterance_id": 2})
    listener = Listener()
    outbox.deliver_to(listener)
    return outbox, wire, listener, metrics, record.session_id


async def test_every_error_code_is_sent_counted_and_heard(store, redis_url):
    outbox, wire, listener, metrics, sid = await make_outbox(store, redis_url)
    for code in protocol.ERROR_CODES:
        outbox.publish(protocol.Error(sid, code=code, message=f"a {code}"))
    await outbox.close()
    assert errors_counted(metrics) == {code: 1.0 for code in protocol.ERROR_CODES}
    assert [m["code"] for m in wire.sent if m["type"] == "error"] == list(protocol.ERROR_CODES)
    assert [e.code for e in listener.heard] == list(protocol.ERROR_CODES)


async def test_a_final_is_stored_before_it_is_sent_and_events_keep_their_order(store, redis_url):
    outbox, wire, listener, metrics, sid = await make_outbox(store, redis_url)
    final = protocol.Final(sid, 1, 1, "hello there", 0.2, 1.1, [], 1.1, 1.7, 0.0, 0.1)
    outbox.publish(protocol.SpeechStart(sid, 1, 0.2, 0.3))
    outbox.publish(final)
    outbox.publish(protocol.Pace(sid, 2.0, 2.0, 1.0, "good", 0, {}, 0, 2, 1.0, True, 1.0, 3.0, 1.7))
    await outbox.drain()
    # The final was in Redis by the time it went out, with the progress stored beside it.
    assert wire.stored_finals_when_sent == [0, 0, 1, 1]  # ready, speech_start, final, pace
    assert [f["text"] for f in await store.finals(sid)] == ["hello there"]
    record = await store.get(sid)
    assert record.audio_s == 1.0 and record.next_utterance_id == 2
    assert [m["type"] for m in wire.sent] == ["ready", "speech_start", "final", "pace"]
    assert [e.type for e in listener.heard] == ["speech_start", "final", "pace"]  # the mode never hears `ready`
    await outbox.close()
    assert (await store.get(sid)).pace["verdict"] == "good"  # a final pace is kept in the session


async def test_a_failing_listener_does_not_stop_the_events(store, redis_url):
    outbox, wire, listener, metrics, sid = await make_outbox(store, redis_url)

    def broken(event: protocol.Event) -> None:
        raise RuntimeError("a bug in a mode")

    listener.on_event = broken  # type: ignore[method-assign]
    outbox.publish(protocol.Error(sid, code="tts_failed", message="x"))
    outbox.publish(protocol.Error(sid, code="llm_timeout", message="y"))
    await outbox.close()
    assert [m.get("code") for m in wire.sent[1:]] == ["tts_failed", "llm_timeout"]
    assert errors_counted(metrics) == {"tts_failed": 1.0, "llm_timeout": 1.0}


def test_an_unknown_error_code_is_refused_where_it_is_made():
    with pytest.raises(ValueError, match="ERROR_CODES"):
        protocol.Error("s1", code="oops", message="no such code")
