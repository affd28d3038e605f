"""The end-of-turn sweep (bench/turn_sweep.py) on one real answer of the turn set, with the real VAD and model.

One hesitation answer (two LJ Speech sentences joined by a 2 s pause, then
3 s of quiet) is enough to check what the bench relies on: the VAD's pauses
are labelled by the answer's own timing, the model is asked at every grid
point of a pause, and the Endpointer's rules replay as written (a pause the
model is never asked about ends at the fallback silence, a shorter one is
kept; the timers take over a pause longer than their wait).
"""

from __future__ import annotations

import pytest

from bench import turn_sweep
from bench.turn_set import build_turn_set, load_manifest
from earshot.models.turn_model import EndOfTurnModel
from earshot.server.configs import end_of_turn_config, vad_config
from earshot.server.settings_sources import settings_from_env
from tests.conftest import CORPUS

ANSWER = "hes-lj0012-0013"  # corpus only: building it needs no Piper


@pytest.fixture(scope="module")
def answer(tmp_path_factory):
    manifest = load_manifest()
    manifest = {**manifest, "items": [e for e in manifest["items"] if e["id"] == ANSWER]}
    (item,) = build_turn_set(tmp_path_factory.mktemp("turn-set"), corpus=CORPUS, manifest=manifest)
    settings = settings_from_env({}, endpointing="model")
    model = EndOfTurnModel.load(end_of_turn_config(settings))
    return item, turn_sweep.collect_item(item, model, vad_config(settings))


def test_pauses_are_labelled_by_the_answers_own_timing(answer):
    item, cache = answer
    (mid_pause,) = item.pauses
    mids = [p for p in cache.pauses if p.label == "mid"]
    ends = [p for p in cache.pauses if p.label == "end"]
    assert len(mids) == 1 and len(ends) == 1
    assert mids[0].voice_end_s == mid_pause.start_s and ends[0].voice_end_s == item.voice_end_s
    # webrtcvad hears the tail of the voice as voice: its end lies after the audible one, never before
    assert mid_pause.start_s <= mids[0].vad_end_s < mid_pause.start_s + turn_sweep.MID_SLACK_S
    assert mids[0].resumed_s is not None and mid_pause.end_s <= mids[0].resumed_s
    assert ends[0].resumed_s is None  # the answer is over: the voice never comes back


def test_the_model_is_asked_at_every_grid_point_of_a_long_pause(answer):
    _, cache = answer
    for pause in cache.pauses:
        if pause.label in ("mid", "end"):
            assert [c.silence_ms for c in pause.checks] == list(turn_sweep.GRID_MS)
            times = [c.at_s for c in pause.checks]
            assert times == sorted(times) and times[0] >= pause.vad_end_s + turn_sweep.GRID_MS[0] / 1000
            assert all(0.0 <= c.probability <= 1.0 and c.inference_s > 0 for c in pause.checks)


def test_the_fallback_ends_a_pause_only_when_it_outlasts_it(answer):
    _, cache = answer
    mid = next(p for p in cache.pauses if p.label == "mid")
    never_asked = ()  # no checks: only the fallback can end the pause
    short = turn_sweep.decide(mid, turn_sweep.Point(0.5, never_asked, fallback_ms=1000))
    assert short is not None and short.by == "fallback" and short.at_s == pytest.approx(mid.vad_end_s + 1.02)
    assert turn_sweep.decide(mid, turn_sweep.Point(0.5, never_asked, fallback_ms=2500)) is None


def test_the_model_ends_the_answer_at_its_first_check(answer):
    _, cache = answer
    end = next(p for p in cache.pauses if p.label == "end")
    decision = turn_sweep.decide(end, turn_sweep.Point(0.5, (200,)))
    check = end.check(200)
    assert check.probability > 0.5  # a finished sentence, then silence
    assert decision is not None and decision.by == "model"
    assert decision.at_s == pytest.approx(check.at_s + check.inference_s)


def test_the_timers_take_over_a_pause_longer_than_their_wait(answer):
    _, cache = answer
    baseline = turn_sweep.silence_baseline([cache], end_of_speech_ms=500, turn_pause_ms=700)
    assert baseline["mid_takeovers"] == 1  # 2 s of quiet > 0.51 + 0.7 s
    assert turn_sweep.silence_baseline([cache], end_of_speech_ms=500, turn_pause_ms=2000)["mid_takeovers"] == 0
    row = turn_sweep.evaluate([cache], turn_sweep.Point(0.5, (200,)))
    assert row["ends_by_model"] + row["ends_by_fallback"] + row["ends_undecided"] == 1
    assert row["mid_cuts"] >= row["mid_takeovers"]  # a takeover is a cut the candidate hears


def test_words_that_stop_mid_phrase_hold_a_complete_pause(answer):
    from dataclasses import replace

    _, cache = answer
    end = next(p for p in cache.pauses if p.label == "end")
    assert end.words_unfinished is None  # collected without a transcriber: not known
    mid_phrase = replace(end, words_unfinished=True)
    held = turn_sweep.decide(mid_phrase, turn_sweep.Point(0.5, (200,)))
    assert held is not None and held.by == "fallback"  # the model said complete; the words held it
    alone = turn_sweep.decide(mid_phrase, turn_sweep.Point(0.5, (200,), check_words=False))
    assert alone is not None and alone.by == "model"
    before_the_words = turn_sweep.decide(mid_phrase, turn_sweep.Point(0.5, (120,)))  # before the pause hint: no words yet
    assert before_the_words is not None and before_the_words.by == "model"


def test_a_cut_is_a_takeover_only_when_the_pause_outlasts_the_reply(answer):
    from dataclasses import replace

    _, cache = answer
    mid = next(p for p in cache.pauses if p.label == "mid")
    decision = turn_sweep.decide(mid, turn_sweep.Point(0.01, (200,)))  # any probability ends it
    assert decision is not None and decision.by == "model"
    soon = replace(mid, resumed_s=decision.at_s + turn_sweep.REPLY_AUDIBLE_S["model"] / 2)
    late = replace(mid, resumed_s=decision.at_s + turn_sweep.REPLY_AUDIBLE_S["model"] * 2)
    for pause, heard in ((soon, 0), (late, 1)):
        row = turn_sweep.evaluate([replace(cache, pauses=(pause,))], turn_sweep.Point(0.01, (200,)))
        assert row["mid_cuts"] == 1 and row["mid_takeovers"] == heard
