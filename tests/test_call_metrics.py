import pytest

from earshot.agents.call_metrics import CallMetrics, CallMetricsConfig


def say(metrics: CallMetrics, speaker: str, start: float, end: float, words: int = 0) -> None:
    metrics.speech_started(speaker, start)
    metrics.speech_ended(speaker, start, end)
    if words:
        metrics.final(speaker, start, end, words)


def test_talk_time_shares_silence_and_rates():
    metrics = CallMetrics()
    say(metrics, "agent", 1.0, 5.0, words=10)  # 4 s, 2.5 wps
    say(metrics, "customer", 6.0, 8.0, words=6)  # 2 s, 3 wps
    say(metrics, "agent", 9.0, 11.0, words=4)  # 2 s
    m = metrics.snapshot(12.0)
    assert m.call_s == 12.0
    assert m.talk_s == {"agent": 6.0, "customer": 2.0}
    assert m.talk_share == {"agent": 0.75, "customer": 0.25}
    assert m.speech_s == 8.0 and m.silence_s == 4.0 and m.speech_to_silence == 2.0
    assert m.talk_rate_wps == {"agent": round(14 / 6, 3), "customer": 3.0}
    assert m.overlap_s == 0.0 and m.interruptions == {"agent": 0, "customer": 0}
    assert m.long_silences == 0 and m.longest_silence_s == 1.0


def test_an_empty_call_is_all_zeros_and_no_ratio():
    m = CallMetrics().snapshot(0.0)
    assert m.call_s == 0.0 and m.speech_s == 0.0 and m.silence_s == 0.0
    assert m.speech_to_silence is None
    assert m.talk_share == {"agent": 0.0, "customer": 0.0}
    assert m.talk_rate_wps == {"agent": 0.0, "customer": 0.0}


def test_an_utterance_in_progress_counts_up_to_now():
    metrics = CallMetrics()
    metrics.speech_started("customer", 2.0)
    m = metrics.snapshot(5.0)
    assert m.talk_s["customer"] == 3.0 and m.silence_s == 2.0
    metrics.speech_ended("customer", 2.0, 6.0)
    assert metrics.snapshot(7.0).talk_s["customer"] == 4.0


def test_a_dropped_utterance_was_never_speech():
    metrics = CallMetrics()
    metrics.speech_started("agent", 1.0)
    metrics.speech_ended("agent", 1.0, 1.2, dropped=True)
    m = metrics.snapshot(3.0)
    assert m.talk_s["agent"] == 0.0 and m.speech_s == 0.0


def test_long_silences_are_gaps_between_utterances_only():
    metrics = CallMetrics(CallMetricsConfig(long_silence_s=3.0))
    say(metrics, "agent", 10.0, 12.0)  # 10 s of ringing before: not a long silence
    say(metrics, "customer", 15.5, 17.0)  # 3.5 s gap: long
    say(metrics, "agent", 18.0, 19.0)  # 1 s gap
    say(metrics, "customer", 23.0, 24.0)  # 4 s gap: long
    m = metrics.snapshot(40.0)  # 16 s since the last word: not over yet, not counted
    assert m.long_silences == 2
    assert m.longest_silence_s == 4.0
    assert m.silence_s == pytest.approx(40.0 - 5.5)


def test_overlap_is_time_both_speak():
    metrics = CallMetrics()
    say(metrics, "agent", 0.0, 4.0)
    say(metrics, "customer", 3.0, 6.0)
    m = metrics.snapshot(6.0)
    assert m.overlap_s == 1.0
    assert m.speech_s == 6.0
    assert m.talk_s == {"agent": 4.0, "customer": 3.0}


def test_starting_while_the_other_speaks_is_an_interruption():
    metrics = CallMetrics()
    say(metrics, "agent", 0.0, 6.0)
    say(metrics, "customer", 3.0, 7.0)  # cuts in at 3 s, 3 s of overlap
    assert metrics.snapshot(8.0).interruptions == {"agent": 0, "customer": 1}


def test_cutting_in_counts_even_when_the_other_side_stops_at_once():
    metrics = CallMetrics()
    say(metrics, "agent", 0.0, 3.4)
    say(metrics, "customer", 3.0, 6.0)  # agent yields after 0.4 s: a successful interruption
    assert metrics.snapshot(6.0).interruptions["customer"] == 1


def test_a_backchannel_is_not_an_interruption():
    metrics = CallMetrics()
    say(metrics, "agent", 0.0, 6.0)
    say(metrics, "customer", 2.0, 2.6)  # "mm-hm" inside the agent's turn
    assert metrics.snapshot(6.0).interruptions == {"agent": 0, "customer": 0}


def test_a_handover_blurred_by_the_vad_is_not_an_interruption():
    metrics = CallMetrics()
    say(metrics, "agent", 0.0, 3.0)
    say(metrics, "customer", 2.8, 6.0)  # 0.2 s overlap: the agent's trailing silence, a normal turn change
    say(metrics, "agent", 6.0, 8.0)  # starts as the customer ends: nobody cut in
    assert metrics.snapshot(8.0).interruptions == {"agent": 0, "customer": 0}


def test_starting_together_is_nobodys_interruption():
    metrics = CallMetrics()
    say(metrics, "agent", 1.0, 4.0)
    say(metrics, "customer", 1.0, 4.0)
    assert metrics.snapshot(4.0).interruptions == {"agent": 0, "customer": 0}


def test_an_interruption_in_progress_counts_once_it_is_long_enough():
    metrics = CallMetrics()
    metrics.speech_started("agent", 0.0)
    metrics.speech_started("customer", 2.0)
    assert metrics.snapshot(2.5).interruptions["customer"] == 0  # 0.5 s so far: could be "mm-hm"
    assert metrics.snapshot(3.2).interruptions["customer"] == 1
    assert metrics.snapshot(3.2).overlap_s == 1.2


def test_interruptions_count_each_side():
    metrics = CallMetrics()
    say(metrics, "agent", 0.0, 5.0)
    say(metrics, "customer", 4.0, 9.0)  # customer cuts in
    say(metrics, "agent", 7.0, 10.0)  # agent cuts back in
    say(metrics, "customer", 12.0, 13.0)
    assert metrics.snapshot(13.0).interruptions == {"agent": 1, "customer": 1}


def test_unknown_speakers_are_refused():
    with pytest.raises(ValueError, match="unknown speaker 'caller'"):
        CallMetrics().speech_started("caller", 0.0)


def test_snapshots_never_go_back_before_the_latest_event():
    metrics = CallMetrics()
    say(metrics, "agent", 0.0, 4.0, words=8)
    assert metrics.snapshot(1.0).call_s == 4.0  # a clock read before the event landed
