"""VAD segmentation on real speech, joined with known pauses, and on non-speech."""

import pytest

from earshot.models.audio import read_audio
from earshot.models.vad import VadConfig, VadSegmenter, VadSpeechEnd, VadSpeechStart
from tests.conftest import corpus_file

SAMPLE_RATE = 16000
# answer-printing-1.wav: 8 utterances joined by these pauses (manifest note), all longer than 0.5 s.
PRINTING_1_PAUSES = [0.6, 1.4, 0.9, 0.9, 0.6, 0.9, 0.9]
PRINTING_1_PARTS = [9.65, 1.90, 9.67, 5.14, 8.11, 5.68, 8.39, 1.78]


def segment(pcm: bytes, config: VadConfig = VadConfig(), chunk: int = 640) -> list:
    segmenter = VadSegmenter(config)
    events = []
    for offset in range(0, len(pcm), chunk):  # 20 ms pushes, as WebRTC delivers
        events += segmenter.push(pcm[offset : offset + chunk])
    return events + segmenter.flush()


def test_splits_a_long_answer_at_each_pause_longer_than_end_of_speech():
    pcm = read_audio(corpus_file("long/answer-printing-1.wav"))
    ended = [e for e in segment(pcm) if isinstance(e, VadSpeechEnd)]
    assert len(ended) == len(PRINTING_1_PARTS)
    # The file opens with a short silence; from there each clip follows the previous one after
    # its pause, and each utterance must lie within its clip (clips have lead-in silence of their own).
    lead_in = ended[0].start_s
    assert lead_in < 1.0
    expected_start = lead_in
    for part, pause, utterance in zip(PRINTING_1_PARTS, PRINTING_1_PAUSES + [0], ended):
        assert expected_start - 0.1 <= utterance.start_s <= expected_start + 1.0
        assert utterance.end_s <= expected_start + part + 0.4
        assert not utterance.forced
        expected_start += part + pause


def test_pauses_shorter_than_end_of_speech_do_not_split():
    pcm = read_audio(corpus_file("long/answer-austen.wav"))  # pauses of 0.4 and 0.25 s
    ended = [e for e in segment(pcm, VadConfig(end_of_speech_ms=800)) if isinstance(e, VadSpeechEnd)]
    assert len(ended) == 1


def test_clipped_start_keeps_the_first_syllable():
    # The clip starts with speech at sample 0: the utterance must start at 0 with no audio lost.
    pcm = read_audio(corpus_file("utterances/LJ001-0002.wav"))
    events = segment(pcm + bytes(SAMPLE_RATE))
    started = [e for e in events if isinstance(e, VadSpeechStart)]
    ended = [e for e in events if isinstance(e, VadSpeechEnd)]
    assert len(started) == len(ended) == 1
    assert ended[0].audio_start_s == 0.0
    assert ended[0].audio[:3200] == pcm[:3200]


def test_pre_roll_is_kept_before_a_late_start():
    pcm = bytes(SAMPLE_RATE * 2 * 2) + read_audio(corpus_file("utterances/LJ001-0002.wav")) + bytes(SAMPLE_RATE)
    ended = [e for e in segment(pcm, VadConfig(pre_roll_ms=300)) if isinstance(e, VadSpeechEnd)]
    assert len(ended) == 1
    assert 2.0 - 0.45 <= ended[0].audio_start_s <= ended[0].start_s - 0.25


def test_long_speech_is_cut_before_whisper_window_ends():
    pcm = read_audio(corpus_file("long/answer-printing-2.wav"))
    ended = [e for e in segment(pcm, VadConfig(max_utterance_s=10.0)) if isinstance(e, VadSpeechEnd)]
    assert any(e.forced for e in ended)
    assert all(len(e.audio) / 2 / SAMPLE_RATE <= 10.0 + 1.5 + 0.05 for e in ended)


@pytest.mark.parametrize("name", ["silence-8s.wav", "white-noise-8s.wav"])
def test_no_speech_in_silence_or_white_noise(name):
    pcm = read_audio(corpus_file(f"nonspeech/{name}"))
    ended = [e for e in segment(pcm, VadConfig()) if isinstance(e, VadSpeechEnd)]
    assert all(e.voiced_ms < 250 for e in ended)


def test_a_voice_onset_comes_before_each_speech_start_and_earlier():
    from earshot.models.vad import VadOnset

    pcm = read_audio(corpus_file("long/answer-printing-1.wav"))
    events = segment(pcm)
    starts = [i for i, e in enumerate(events) if isinstance(e, VadSpeechStart)]
    assert len(starts) == len(PRINTING_1_PARTS)
    for index in starts:
        onset = events[index - 1]
        assert isinstance(onset, VadOnset), events[index - 2 : index + 1]
        assert onset.at_s <= events[index].start_s + 0.001
    # No onset inside an utterance: they only mark where a voice may begin.
    inside = False
    for event in events:
        if isinstance(event, VadSpeechStart):
            inside = True
        elif isinstance(event, VadSpeechEnd):
            inside = False
        elif isinstance(event, VadOnset):
            assert not inside


def test_the_noise_gate_ends_speech_nearer_the_end_of_voice():
    """webrtcvad calls quiet room noise (and its own hangover) voiced; the level gate does not."""
    import numpy as np

    rng = np.random.default_rng(7)
    lags: dict[float, list[float]] = {0.0: [], 40.0: []}
    for n in range(1, 6):
        speech = np.frombuffer(read_audio(corpus_file(f"utterances/LJ001-000{n}.wav")), np.int16)
        pcm = np.concatenate([speech, np.round(rng.normal(0, 30, 3 * SAMPLE_RATE)).astype(np.int16)])
        frames = pcm[: len(pcm) // 160 * 160].reshape(-1, 160).astype(float)
        voice_end_s = (np.nonzero(np.sqrt((frames**2).mean(1)) >= 300)[0][-1] + 1) * 0.01  # by energy
        for gate, found in lags.items():
            config = VadConfig(noise_gate_db=gate, end_of_speech_ms=2500)
            (ended,) = [e for e in segment(pcm.tobytes(), config) if isinstance(e, VadSpeechEnd)]
            found.append(ended.end_s - voice_end_s)
    # Measured: gated 0.05-0.14 s after the voice (mean 0.08), ungated 0.08-0.23 s (mean 0.14).
    assert all(0 <= lag <= 0.15 for lag in lags[40.0]), lags
    assert np.mean(lags[0.0]) - np.mean(lags[40.0]) >= 0.03, lags
