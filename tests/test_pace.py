from earshot.agents.pace import PaceConfig, PaceTracker, count_fillers
from earshot.models.asr import Word


def words_every(seconds: float, count: int, start: float = 0.0) -> tuple[Word, ...]:
    return tuple(Word(f"w{i}", start + i * seconds, start + i * seconds + seconds * 0.8, 0.9) for i in range(count))


def test_rate_is_words_over_voiced_time_and_verdict_uses_the_range():
    tracker = PaceTracker(PaceConfig(min_wps=1.0, max_wps=3.0))
    report = tracker.on_final("x " * 10, words_every(0.5, 10), start_s=0.0, end_s=5.0)
    assert report.wps == 2.0
    assert report.verdict == "good"

    fast = PaceTracker(PaceConfig(min_wps=1.0, max_wps=3.0)).on_final("x " * 20, words_every(0.2, 20), 0.0, 4.0)
    assert fast.wps == 5.0 and fast.verdict == "too_fast"

    slow = PaceTracker(PaceConfig(min_wps=1.0, max_wps=3.0)).on_final("x " * 3, words_every(1.5, 3), 0.0, 6.0)
    assert slow.wps == 0.5 and slow.verdict == "too_slow"


def test_long_gaps_inside_an_utterance_are_not_speaking_time_and_are_counted():
    tracker = PaceTracker(PaceConfig(long_pause_s=2.0))
    words = words_every(0.5, 4) + words_every(0.5, 4, start=6.0)  # a 4.4 s gap in the middle
    report = tracker.on_final("x " * 8, words, start_s=0.0, end_s=8.0)
    assert report.long_pauses == 1
    assert report.wps > 1.5  # 8 words over ~3.6 s spoken, not over 8 s


def test_silence_between_utterances_counts_as_a_long_pause_not_slowness():
    tracker = PaceTracker(PaceConfig(long_pause_s=2.0))
    tracker.on_final("x " * 10, words_every(0.5, 10), 0.0, 5.0)
    tracker.on_utterance_start(12.0)
    report = tracker.on_final("x " * 10, words_every(0.5, 10, start=12.0), 12.0, 17.0)
    assert report.long_pauses == 1
    assert report.window_wps == 2.0


def test_live_partials_update_pace_before_the_final():
    tracker = PaceTracker(PaceConfig())
    report = tracker.on_partial("one two three four five six", start_s=0.0, audio_end_s=2.0)
    assert report.final is False and report.wps == 3.0
    early = tracker.on_partial("one", start_s=0.0, audio_end_s=0.5)
    assert early.verdict == "listening"  # too little speech to judge


def test_window_forgets_old_speech():
    tracker = PaceTracker(PaceConfig(window_s=10.0))
    tracker.on_final("x " * 25, words_every(0.2, 25), 0.0, 5.0)  # 5 w/s long ago
    report = tracker.on_final("x " * 10, words_every(0.5, 10, start=30.0), 30.0, 35.0)
    assert report.window_wps == 2.0


def test_fillers_are_counted_but_like_only_when_set_off():
    counts = count_fillers("Um, I think, like, it was, you know, uh fine and I like it")
    assert counts["um"] == 1 and counts["uh"] == 1
    assert counts["like"] == 1
    assert counts["you know"] == 1
