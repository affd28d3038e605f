"""The support calls' two voices: Piper's joe for the agent, Festival's SLT (Debian) for the customer.

Real synthesis, no server: each voice gives the same samples for the same
text, trimmed to its speech, and the customer is a different speaker, not joe
pitched up (the voicing before: 1.2x, three semitones).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.support_voicing import VOICES, FestivalVoice, TwoVoices
from earshot.loadtest.caller import speech_bounds
from earshot.models.audio import SAMPLE_RATE

LINE = "I've been charged twice this month, the same payment came out of my card two times."


def median_f0(pcm: np.ndarray) -> float:
    """Median pitch (Hz) of the louder 40 ms frames, by autocorrelation between 60 and 400 Hz."""
    x = pcm.astype(np.float64)
    n, lo, hi = int(0.04 * SAMPLE_RATE), SAMPLE_RATE // 400, SAMPLE_RATE // 60
    loud = np.sqrt(np.mean(x * x))
    pitches = []
    for i in range(0, len(x) - n, n // 2):
        frame = x[i : i + n] - x[i : i + n].mean()
        if np.sqrt(np.mean(frame * frame)) < loud:
            continue
        ac = np.correlate(frame, frame, "full")[n - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:  # voiced: clearly periodic
            pitches.append(SAMPLE_RATE / lag)
    assert len(pitches) >= 5, "too few voiced frames to tell a pitch"
    return float(np.median(pitches))


@pytest.fixture(scope="module")
def voices() -> TwoVoices:
    return TwoVoices()


def test_each_side_speaks_the_same_samples_every_time_trimmed_to_its_voice(voices):
    for speaker in ("agent", "customer"):
        once, again = voices.speak(speaker, LINE), voices.speak(speaker, LINE)
        assert once.dtype == np.int16 and once.tobytes() == again.tobytes(), speaker
        assert 2.5 < len(once) / SAMPLE_RATE < 8.0, (speaker, len(once) / SAMPLE_RATE)
        first, last = speech_bounds(once.tobytes())
        assert first <= 0.06 and len(once) / SAMPLE_RATE - last <= 0.06, (speaker, first, last)


def test_the_customer_is_another_speaker_from_another_synthesizer(voices):
    assert (VOICES["agent"].engine, VOICES["customer"].engine) == ("piper", "festival")
    agent, customer = (median_f0(voices.speak(s, LINE)) for s in ("agent", "customer"))
    # Measured: joe ~93 Hz, SLT ~174 Hz (1.9x); joe pitched up 1.2x was the old customer.
    assert customer > 1.5 * agent, (agent, customer)


def test_without_festival_the_error_names_the_debian_packages(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no text2wave on it
    with pytest.raises(RuntimeError, match="festival festvox-us-slt-hts"):
        TwoVoices()


def test_a_festival_voice_that_is_not_installed_is_an_error_not_silence(voices, monkeypatch):
    # text2wave exits 0 and writes nothing when the voice is unknown.
    monkeypatch.setitem(VOICES, "customer", FestivalVoice(name="no_such_voice"))
    with pytest.raises(RuntimeError, match="festvox-us-slt-hts.*unbound variable"):
        voices.speak("customer", "Hello.")
