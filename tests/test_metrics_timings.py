"""What users feel, in /metrics: reply latency, LLM first token, TTS first audio, barge-in stop, intent time,
sessions rejected at capacity and reconnects.

Each metric is checked where it is measured: the events that pass through
`ServerMetrics.observe` (reply latency, intent time), the real SmolLM2 and
Piper (first token, first audio), the real outbound track (the barge-in's
silent frame). tests/test_metrics.py checks them again on a whole interview call.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from earshot.models.llm import ChatMessage, LlmConfig, ReplyClock, load_llm
from earshot.models.tts import OUTPUT_RATE, PiperTts, SpokenAudio
from earshot.server import protocol
from earshot.server.interviewer_voice import BargeInTimer, PhraseCache, SessionVoice
from earshot.server.metrics import REPLY_WINDOW_S, ReplyTimer, ServerMetrics
from earshot.server.outbound_track import FRAME_SAMPLES, AgentVoiceTrack, PlaybackEnd

NEW_FAMILIES = {
    "earshot_reply_latency_seconds": "histogram",
    "earshot_llm_first_token_seconds": "histogram",
    "earshot_tts_first_audio_seconds": "histogram",
    "earshot_barge_in_stop_seconds": "histogram",
    "earshot_intent_inference_seconds": "histogram",
    "earshot_sessions_rejected": "counter",
    "earshot_reconnects": "counter",
}
SID = "s1"


def new_metrics(**sources) -> ServerMetrics:
    return ServerMetrics(live_sessions=lambda: 0, asr_queue_depth=lambda: 0, **sources)


def samples(metrics: ServerMetrics) -> dict[str, float]:
    """sample name{labels} -> value, without the buckets."""
    values = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if "le" in sample.labels:
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return values


def test_every_new_metric_is_exported_with_its_type():
    families = {f.name: f.type for f in text_string_to_metric_families(new_metrics().render().decode())}
    for name, kind in NEW_FAMILIES.items():
        assert families.get(name) == kind, (name, families.get(name))


def test_rejections_and_reconnects_are_counted():
    metrics = new_metrics()
    metrics.count_rejected("at_capacity")
    metrics.count_rejected("at_capacity")
    metrics.count_rejected("pending")
    metrics.count_reconnect()
    counted = samples(metrics)
    assert counted["earshot_sessions_rejected_total{reason=at_capacity}"] == 2
    assert counted["earshot_sessions_rejected_total{reason=pending}"] == 1
    assert counted["earshot_reconnects_total"] == 1


# --- from the events ------------------------------------------------------------------


def intent(text: str, final: bool, inference_s: float) -> protocol.Intent:
    return protocol.Intent(SID, 1, "interview", final, text, [], {}, inference_s, 1.0)


def test_intent_events_time_the_classifier_by_kind():
    metrics = new_metrics()
    metrics.observe(intent("I led the migration", True, 0.012))
    metrics.observe(intent("I led the", False, 0.008))
    metrics.observe(intent("  ", True, 0.0))  # nothing to classify: no model call
    counted = samples(metrics)
    assert counted["earshot_intent_inference_seconds_count{kind=final}"] == 1
    assert counted["earshot_intent_inference_seconds_sum{kind=final}"] == pytest.approx(0.012)
    assert counted["earshot_intent_inference_seconds_count{kind=partial}"] == 1


def agent_start(at: float, uid: int = 1, sid: str = SID) -> protocol.AgentAudioStart:
    return protocol.AgentAudioStart(sid, uid, at)


def agent_end(at: float, uid: int = 1, interrupted: bool = False, sid: str = SID) -> protocol.AgentAudioEnd:
    return protocol.AgentAudioEnd(sid, uid, interrupted, 1.0, at)


def speech(start: float, end: float, uid: int = 1, dropped: bool = False, sid: str = SID) -> list[protocol.Event]:
    return [
        protocol.SpeechStart(sid, uid, start, start + 0.1),
        protocol.SpeechEnd(sid, uid, start, end, dropped, end + 0.2, turn_complete=True),
    ]


def replies(events: list[protocol.Event]) -> list[float]:
    got: list[float] = []
    timer = ReplyTimer(got.append)
    for event in events:
        timer.on_event(event)
    return got


def test_reply_latency_is_the_voice_end_to_the_interviewers_next_first_audio():
    metrics = new_metrics()
    events = [agent_start(0.5), agent_end(4.0), *speech(5.0, 9.0), agent_start(9.7, uid=2)]
    for event in events:
        metrics.observe(event)
    counted = samples(metrics)
    assert counted["earshot_reply_latency_seconds_count"] == 1
    assert counted["earshot_reply_latency_seconds_sum"] == pytest.approx(0.7)


def test_reply_latency_follows_the_turn_not_every_sound():
    greeting = [agent_start(0.5), agent_end(4.0)]
    # The candidate paused and went on: the reply counts from the last voice end.
    assert replies([*greeting, *speech(5.0, 7.0), *speech(7.4, 9.0, uid=2), agent_start(9.8, uid=2)]) == [pytest.approx(0.8)]
    # A dropped blip (too short to be speech) is no voice end.
    assert replies([*greeting, *speech(5.0, 9.0), *speech(9.3, 9.35, uid=2, dropped=True), agent_start(9.8, uid=2)]) == [
        pytest.approx(0.8)
    ]
    # "Hi!" over the greeting, which talked on to its end: no turn, no reply.
    assert replies([agent_start(0.5), *speech(1.0, 1.5), agent_end(4.0), agent_start(4.5, uid=2)]) == []
    # A barge-in: the candidate cut the interviewer off; what it says next is the reply.
    assert replies([agent_start(0.5), *speech(1.0, 3.0), agent_end(1.4, interrupted=True), agent_start(3.9, uid=2)]) == [
        pytest.approx(0.9)
    ]
    # The interviewer started while the candidate was speaking again: talking over, not a reply.
    assert replies([*greeting, *speech(5.0, 9.0), speech(9.3, 11.0, uid=2)[0], agent_start(9.8, uid=2)]) == []
    # Silence, then the interviewer re-asks: nothing was said, nothing is replied to.
    assert replies([*greeting, agent_start(14.0, uid=2)]) == []
    # Longer than the load tester's window: not a reply to that answer.
    assert replies([*greeting, *speech(5.0, 9.0), agent_start(9.0 + REPLY_WINDOW_S + 1, uid=2)]) == []


def test_reply_clocks_are_per_call_and_bounded():
    got: list[float] = []
    timer = ReplyTimer(got.append, calls=2)
    for event in speech(1.0, 2.0, sid="transcribe-call"):  # no interviewer audio: never followed
        timer.on_event(event)
    assert len(timer) == 0
    for sid in ("a", "b"):
        timer.on_event(agent_start(0.5, sid=sid))
    for event in [*speech(5.0, 6.0, sid="a"), *speech(5.0, 8.0, sid="b")]:
        timer.on_event(event)
    timer.on_event(agent_start(6.5, uid=2, sid="a"))
    timer.on_event(agent_start(8.25, uid=2, sid="b"))
    assert got == [pytest.approx(0.5), pytest.approx(0.25)]
    timer.on_event(protocol.Turn("a", "ended", 2, 9.0))
    assert len(timer) == 1
    for sid in ("c", "d"):
        timer.on_event(agent_start(0.5, sid=sid))
    assert len(timer) == 2  # the call heard from longest ago went first


# --- from the components that measure them ------------------------------------------------


def test_the_reply_clock_reports_the_first_token_once():
    heard: list[float] = []
    clock = ReplyClock(LlmConfig(), "test", heard.append)
    clock.got_delta()
    clock.got_delta()
    assert len(heard) == 1 and heard[0] == clock.first_token_s >= 0


async def test_the_embedded_llm_reports_its_first_token_to_the_metrics():
    llm = load_llm(LlmConfig(first_token_timeout_s=10, timeout_s=30))
    try:
        metrics = new_metrics(llm=llm)
        async with aclosing(llm.stream_chat([ChatMessage("user", "Say hello to Ada.")], max_tokens=4)) as deltas:
            async for _ in deltas:
                pass
        counted = samples(metrics)
        assert counted["earshot_llm_first_token_seconds_count"] == 1
        assert 0 < counted["earshot_llm_first_token_seconds_sum"] < 10
    finally:
        await llm.close()


@pytest.fixture(scope="module")
def piper() -> PiperTts:
    tts = PiperTts.load()
    yield tts
    tts.close()


async def pump(track: AgentVoiceTrack, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await track.recv()


async def test_the_voice_times_each_utterances_first_sentence_cached_or_not(piper):
    metrics = new_metrics()
    phrases = PhraseCache(piper)
    await phrases.warm(["Thank you."])
    voice = SessionVoice(phrases, lambda uid: None, lambda end: None, lambda m: None, on_first_audio=metrics.observe_tts_first_audio)
    stop = asyncio.Event()
    pumping = asyncio.ensure_future(pump(voice.track, stop))
    try:
        await voice.play(1, voice.prepare(["Thank you.", "Tell me more about the migration."]), lambda s: None)
        await voice.play(2, voice.prepare(["Here is a sentence nobody said before."]), lambda s: None)
    finally:
        stop.set()
        await pumping
        voice.close()
    counted = samples(metrics)
    # One per utterance (its first sentence), not one per sentence.
    assert counted["earshot_tts_first_audio_seconds_count{cached=true}"] == 1
    assert counted["earshot_tts_first_audio_seconds_count{cached=false}"] == 1
    assert counted["earshot_tts_first_audio_seconds_sum{cached=true}"] < 0.01
    assert 0.01 < counted["earshot_tts_first_audio_seconds_sum{cached=false}"] < 5


# --- the barge-in's silent frame --------------------------------------------------------------


def audio(frames: int, base: int = 1) -> SpokenAudio:
    pcm = (base + np.arange(frames * FRAME_SAMPLES) % 20000).astype(np.int16)
    return SpokenAudio(text="Words.", pcm=pcm, sample_rate=OUTPUT_RATE, synth_s=0.0)


def silenced_track() -> tuple[AgentVoiceTrack, list[int]]:
    silenced: list[int] = []
    track = AgentVoiceTrack(on_silenced=silenced.append)
    track.enqueue(3, audio(20))
    track.finish_utterance(3)
    return track, silenced


async def test_the_track_reports_the_first_silent_frame_of_a_pause_or_a_cut():
    track, silenced = silenced_track()
    await track.recv()
    track.pause()
    assert silenced == []  # not before the silent frame goes out
    assert not (await track.recv()).to_ndarray().any()
    assert silenced == [3]
    await track.recv()
    track.pause()  # the onset's pause, then the speech start's: one silencing
    track.interrupt()  # the cut that followed: its silence went out at the pause
    await track.recv()
    assert silenced == [3]

    track, silenced = silenced_track()
    await track.recv()
    track.pause()
    track.resume()  # a click: undone before any silent frame
    assert (await track.recv()).to_ndarray().any()
    track.interrupt()  # cut while audible
    await track.recv()
    assert silenced == [3]

    quiet: list[int] = []
    track = AgentVoiceTrack(on_silenced=quiet.append)
    track.enqueue(4, audio(5))
    track.pause()  # nothing of it was heard yet: nothing to stop
    track.interrupt()
    await track.recv()
    assert quiet == []


def ended(uid: int, interrupted: bool, played_s: float = 1.0) -> PlaybackEnd:
    return PlaybackEnd(uid, interrupted, played_s, "", "")


def test_barge_in_stop_counts_the_cuts_that_stuck_from_the_voice_start():
    clock = [0.0]
    stops: list[float] = []
    timer = BargeInTimer(lambda: clock[0], stops.append)
    timer.voice_onset(10.0)
    clock[0] = 10.12
    timer.silenced(1)
    timer.ended(ended(1, interrupted=True))
    assert stops == [pytest.approx(0.12)]

    # A click: paused, then resumed; the utterance plays to its end.
    timer.voice_onset(20.0)
    clock[0] = 20.1
    timer.silenced(2)
    timer.resumed()
    timer.ended(ended(2, interrupted=False))
    assert len(stops) == 1
    # A click, then a real barge-in on the same utterance: from the second voice start.
    timer.voice_onset(30.0)
    clock[0] = 30.1
    timer.silenced(3)
    timer.resumed()
    timer.voice_onset(31.0)
    clock[0] = 31.2
    timer.silenced(3)
    timer.ended(ended(3, interrupted=True))
    assert stops[1:] == [pytest.approx(0.2)]
    # Cut while audible: the end comes first, its silent frame just after.
    timer.voice_onset(40.0)
    timer.ended(ended(4, interrupted=True))
    clock[0] = 40.15
    timer.silenced(4)
    assert stops[2:] == [pytest.approx(0.15)]
    # The call's teardown cuts what plays: no barge-in.
    timer.voice_onset(50.0)
    clock[0] = 50.1
    timer.silenced(5)
    timer.close()
    timer.ended(ended(5, interrupted=True))
    assert len(stops) == 3
