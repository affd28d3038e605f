import pytest

from earshot.agents.sentiment import SentimentConfig, SentimentTracker, sentiment_label, trend_of


@pytest.fixture(scope="module")
def tracker() -> SentimentTracker:
    return SentimentTracker()


@pytest.mark.parametrize(
    "text",
    [
        "this is ridiculous i have been waiting for two weeks",
        "i am really frustrated",
        "my internet is still not working",
        "there is an outage again and nobody told me",
        "i was overcharged and this is a joke",
        "This is ridiculous! I have been waiting for two weeks.",  # Whisper's casing and punctuation work too
    ],
)
def test_unhappy_asr_text_is_negative(tracker, text):
    score = tracker.score(text)
    assert score <= -0.05 and sentiment_label(score) == "negative", score


@pytest.mark.parametrize(
    "text",
    ["thank you so much that fixed it", "perfect it is working now", "great that is really helpful thanks"],
)
def test_happy_asr_text_is_positive(tracker, text):
    score = tracker.score(text)
    assert score >= 0.05 and sentiment_label(score) == "positive", score


@pytest.mark.parametrize("text", ["i need to update my address", "can you tell me where my order is", "my postcode is"])
def test_plain_requests_are_neutral(tracker, text):
    assert sentiment_label(tracker.score(text)) == "neutral"


def test_trend_is_the_fitted_change_clipped():
    assert trend_of([]) == 0.0 and trend_of([0.5]) == 0.0
    assert trend_of([-0.5, 0.0, 0.5]) == pytest.approx(1.0)
    assert trend_of([0.2, 0.2, 0.2]) == pytest.approx(0.0)
    assert trend_of([0.9, -0.9]) == -1.0  # -1.8 clipped
    # One odd score at the end moves a fit less than it moves last-minus-first.
    assert abs(trend_of([0.0, 0.0, 0.0, 0.0, -0.6])) < 0.6


def test_a_call_that_calms_down_is_improving_with_its_history():
    tracker = SentimentTracker(SentimentConfig(window=3))
    texts = [
        "this is ridiculous i have been waiting for two weeks",
        "i am really frustrated",
        "ok i will try that",
        "thank you so much that fixed it",
    ]
    updates = [tracker.add("customer", i, text) for i, text in enumerate(texts, start=1)]
    first, last = updates[0], updates[-1]
    assert first.trend == 0.0 and first.trend_label == "steady" and first.history == [first.score]
    assert last.label == "positive" and last.trend_label == "improving" and last.trend > 0
    assert len(last.history) == 3 and last.history[-1] == last.score  # the window, oldest first
    assert last.utterance_id == 4 and last.speaker == "customer"


def test_a_call_that_goes_sour_is_worsening():
    tracker = SentimentTracker()
    for i, text in enumerate(["hi thanks for picking up", "ok", "it still does not work", "this is unacceptable"]):
        update = tracker.add("customer", i, text)
    assert update.trend_label == "worsening" and update.trend < 0
