"""AgentVoiceTrack: frames, order, callbacks, pause/resume, barge-in cuts, pacing, and a real WebRTC hop.

Sentences here are synthetic PCM in which every sample is distinct, so a test
can tell exactly which part of which sentence a frame carries.
"""

import asyncio
import fractions
import time

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from earshot.models.tts import OUTPUT_RATE, SpokenAudio
from earshot.server.ice import rtc_configuration
from earshot.server.outbound_track import FRAME_SAMPLES, AgentVoiceTrack, PlaybackEnd

FRAME_S = FRAME_SAMPLES / OUTPUT_RATE


def sentence(text: str, frames: float, base: int) -> SpokenAudio:
    """`frames` 20 ms frames of audio whose samples are base, base+1, ... (never 0, so never silence)."""
    n = int(frames * FRAME_SAMPLES)
    pcm = (base + np.arange(n)).astype(np.int16)
    return SpokenAudio(text=text, pcm=pcm, sample_rate=OUTPUT_RATE, synth_s=0.0)


def padded(audio: SpokenAudio) -> np.ndarray:
    return np.concatenate([audio.pcm, np.zeros(-len(audio.pcm) % FRAME_SAMPLES, dtype=np.int16)])


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_start(self, utterance_id: int) -> None:
        self.events.append(("start", utterance_id))

    def on_end(self, end: PlaybackEnd) -> None:
        self.events.append(("end", end))

    @property
    def ends(self) -> list[PlaybackEnd]:
        return [e for kind, e in self.events if kind == "end"]


def new_track() -> tuple[AgentVoiceTrack, Recorder]:
    recorder = Recorder()
    return AgentVoiceTrack(on_start=recorder.on_start, on_end=recorder.on_end), recorder


async def pull(track: AgentVoiceTrack, count: int) -> list[np.ndarray]:
    return [(await track.recv()).to_ndarray().reshape(-1) for _ in range(count)]


def silent(samples: np.ndarray) -> bool:
    return not samples.any()


async def test_frames_are_20ms_at_48k_with_steady_pts_and_silence_when_idle():
    track, _ = new_track()
    frames = [await track.recv() for _ in range(4)]
    for i, frame in enumerate(frames):
        assert frame.samples == 960 and frame.sample_rate == 48000
        assert frame.format.name == "s16" and frame.layout.name == "mono"
        assert frame.pts == i * 960 and frame.time_base == fractions.Fraction(1, 48000)
        assert silent(frame.to_ndarray())
    assert not track.speaking


async def test_two_utterances_of_two_sentences_play_intact_in_order():
    track, rec = new_track()
    a1, a2 = sentence("One.", 2.5, 1), sentence("Two.", 1.25, 5000)
    b1, b2 = sentence("Three.", 2, 10000), sentence("Four.", 1, 20000)
    track.enqueue(1, a1)
    track.enqueue(2, b1)  # the next reply is queued while the first is still being synthesized
    track.enqueue(1, a2)
    track.finish_utterance(1)
    track.enqueue(2, b2)
    track.finish_utterance(2)
    assert track.speaking
    out = np.concatenate(await pull(track, 3 + 2 + 2 + 1 + 2))
    expected = np.concatenate([padded(a1), padded(a2), padded(b1), padded(b2)])
    assert np.array_equal(out[: len(expected)], expected)
    assert silent(out[len(expected) :])
    assert [kind for kind, _ in rec.events] == ["start", "end", "start", "end"]
    assert rec.events[0] == ("start", 1) and rec.events[2] == ("start", 2)
    assert rec.ends == [
        PlaybackEnd(1, False, pytest.approx(3.75 * FRAME_S), "One. Two.", ""),
        PlaybackEnd(2, False, pytest.approx(3 * FRAME_S), "Three. Four.", ""),
    ]
    assert not track.speaking


async def test_an_open_utterance_holds_the_next_one_back_until_finished():
    track, rec = new_track()
    track.enqueue(1, sentence("First.", 1, 1))
    track.enqueue(2, sentence("Other.", 1, 9000))
    out = await pull(track, 3)
    assert not silent(out[0]) and silent(out[1]) and silent(out[2])  # waits for utterance 1's next sentence
    assert rec.events == [("start", 1)]
    track.enqueue(1, sentence("Second.", 1, 3000))
    track.finish_utterance(1)
    out = await pull(track, 2)
    assert out[0][0] == 3000 and out[1][0] == 9000
    assert [kind for kind, _ in rec.events] == ["start", "end", "start"]


async def test_pause_gives_silence_at_once_and_resume_continues_exactly():
    track, rec = new_track()
    audio = sentence("Hello there.", 6, 1)
    track.enqueue(7, audio)
    track.finish_utterance(7)
    first = await pull(track, 2)
    track.pause()
    assert track.speaking
    held = await pull(track, 3)
    assert all(silent(f) for f in held)
    track.resume()
    rest = await pull(track, 4)
    assert np.array_equal(np.concatenate(first + rest), audio.pcm)
    assert [kind for kind, _ in rec.events] == ["start", "end"]
    assert rec.ends[0].played_s == pytest.approx(6 * FRAME_S) and not rec.ends[0].interrupted


async def test_a_pause_ends_with_the_utterance_it_held():
    track, rec = new_track()
    track.enqueue(1, sentence("Right.", 1, 1))
    await pull(track, 1)  # sent; the reply's next sentence is still being synthesized
    track.pause()
    track.finish_utterance(1)  # ...and there was none
    await pull(track, 1)
    assert rec.ends[0].utterance_id == 1 and not track.speaking
    track.enqueue(2, sentence("Next.", 1, 4000))
    assert (await pull(track, 1))[0][0] == 4000


async def test_interrupt_cuts_within_one_frame_and_reports_what_was_said():
    track, rec = new_track()
    track.enqueue(3, sentence("I see.", 2, 1))
    track.enqueue(3, sentence("Tell me more about it.", 3, 5000))
    track.enqueue(3, sentence("And the team?", 2, 9000))
    track.enqueue(4, sentence("Next question.", 2, 15000))
    await pull(track, 3)  # all of "I see." and one frame of the second sentence
    end = track.interrupt()
    assert end == PlaybackEnd(3, True, pytest.approx(3 * FRAME_S), "I see. Tell me more about it.", "And the team?")
    assert rec.ends == [end, PlaybackEnd(4, True, 0.0, "", "Next question.")]
    assert not track.speaking
    assert all(silent(f) for f in await pull(track, 2))
    track.enqueue(3, sentence("Late sentence.", 1, 20000))  # a synthesis that finished after the cut
    track.finish_utterance(3)
    assert not track.speaking and all(silent(f) for f in await pull(track, 1))
    assert track.interrupt() is None
    assert len(rec.ends) == 2


async def test_interrupt_while_paused_clears_the_pause_for_the_next_reply():
    track, _ = new_track()
    track.enqueue(1, sentence("Go on.", 3, 1))
    await pull(track, 1)
    track.pause()
    await pull(track, 1)
    end = track.interrupt()
    assert end is not None and end.played_s == pytest.approx(FRAME_S)
    track.enqueue(2, sentence("Thanks.", 1, 4000))
    assert (await pull(track, 1))[0][0] == 4000


async def test_an_utterance_with_no_audio_still_ends():
    track, rec = new_track()
    track.finish_utterance(5)  # every sentence failed to synthesize
    await pull(track, 1)
    assert rec.events == [("end", PlaybackEnd(5, False, 0.0, "", ""))]


async def test_a_failing_callback_does_not_kill_the_track():
    def explode(_):
        raise RuntimeError("listener bug")

    track = AgentVoiceTrack(on_start=explode, on_end=explode)
    track.enqueue(1, sentence("Hi.", 1, 1))
    track.finish_utterance(1)
    out = await pull(track, 2)
    assert out[0][0] == 1 and silent(out[1])


async def test_stop_ends_the_track_and_cuts_what_was_playing():
    track, rec = new_track()
    track.enqueue(1, sentence("Bye.", 3, 1))
    await pull(track, 1)
    track.stop()
    assert track.readyState == "ended" and rec.ends[0].interrupted
    with pytest.raises(MediaStreamError):
        await track.recv()


def test_enqueue_rejects_audio_it_cannot_play():
    track, _ = new_track()
    with pytest.raises(ValueError, match="48000"):
        track.enqueue(1, SpokenAudio("x", np.ones(100, dtype=np.int16), 22050, 0.0))
    with pytest.raises(ValueError, match="int16"):
        track.enqueue(1, SpokenAudio("x", np.ones(100, dtype=np.float32), 48000, 0.0))
    track.enqueue(1, sentence("Done.", 1, 1))
    track.finish_utterance(1)
    with pytest.raises(ValueError, match="finished"):
        track.enqueue(1, sentence("More.", 1, 1))


@pytest.mark.timed
async def test_frames_are_paced_in_real_time():
    track, _ = new_track()
    track.enqueue(1, sentence("Pacing.", 25, 1))
    await track.recv()  # the first frame starts the clock
    started = time.monotonic()
    await pull(track, 50)
    elapsed = time.monotonic() - started
    assert 0.95 <= elapsed <= 1.5, elapsed


async def test_over_webrtc_the_listener_hears_speech_then_silence_soon_after_interrupt():
    """Server pc sends the track, client pc receives it over loopback; time interrupt() to silence."""
    track, _ = new_track()
    server, client = RTCPeerConnection(rtc_configuration()), RTCPeerConnection(rtc_configuration())
    server.addTrack(track)
    received: list[tuple[float, float]] = []  # (arrival time, RMS)
    reading: list[asyncio.Task] = []

    async def read(remote) -> None:
        try:
            while True:
                frame = await remote.recv()
                samples = frame.to_ndarray().astype(np.float64)
                received.append((time.monotonic(), float(np.sqrt(np.mean(samples**2)))))
        except MediaStreamError:
            pass

    client.on("track", lambda remote: reading.append(asyncio.ensure_future(read(remote))))
    try:
        await server.setLocalDescription(await server.createOffer())
        await client.setRemoteDescription(server.localDescription)
        await client.setLocalDescription(await client.createAnswer())
        await server.setRemoteDescription(client.localDescription)

        t = np.arange(OUTPUT_RATE * 3) / OUTPUT_RATE  # a 3 s vowel-like tone at about -16 dBFS
        tone = (3000 * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 660 * t))).astype(np.int16)
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # connected: frames (silence) are flowing
        assert received, "no audio arrived over WebRTC"
        enqueued = time.monotonic()
        track.enqueue(1, SpokenAudio("Tone.", tone, OUTPUT_RATE, 0.0))
        while not any(rms > 1000 for at, rms in received if at > enqueued) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        first_sound = next(at for at, rms in received if at > enqueued and rms > 1000)
        await asyncio.sleep(0.5)
        cut_at = time.monotonic()
        track.interrupt()
        await asyncio.sleep(0.6)
        after = [(at, rms) for at, rms in received if at > cut_at]
        loud_after = [at for at, rms in after if rms > 300]
        stop_to_silence = (max(loud_after) - cut_at) if loud_after else 0.0
        print(f"\nenqueue -> first sound {1000 * (first_sound - enqueued):.0f} ms; "
              f"interrupt -> last loud frame {1000 * stop_to_silence:.0f} ms")
        assert stop_to_silence < 0.25
        assert len(after) > 20 and all(rms < 50 for at, rms in after if at > cut_at + 0.3)  # silence, still flowing
    finally:
        await client.close()
        await server.close()
        for task in reading:
            task.cancel()
