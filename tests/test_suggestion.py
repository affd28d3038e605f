import pytest

from earshot.agents.suggestion import check_suggestion, clean_suggestion

GROUNDING = (
    "You can cancel with 30 days' notice. If you are still within your minimum term, an early termination "
    "charge applies for the months left. i want to cancel my contract"
)


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ('Agent: "I can help you cancel today."', "I can help you cancel today."),
        ("Sure! Suggested reply: I can help with that.", "I can help with that."),
        ("\n\nI can do that now.\nCustomer: thanks", "I can do that now."),
        ("I can help. You need 30 days' notice. Anything else? More text.", "I can help. You need 30 days' notice."),
        ("  I   can   help  ", "I can help"),
    ],
)
def test_cleaning_keeps_the_words_to_say(raw, cleaned):
    assert clean_suggestion(raw) == cleaned


@pytest.mark.parametrize(
    "text",
    [
        "I can help you cancel. You need to give 30 days' notice.",
        "Could you tell me which contract you would like to cancel?",  # a question to the customer is fine
        "I'm sorry to hear that. An early termination charge applies for the months left on your term.",
    ],
)
def test_grounded_replies_pass(text):
    assert check_suggestion(text, GROUNDING).ok


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("word " * 51, "too_long"),
        ("**Cancel** today.", "markup"),
        ("Sure. Customer: ok", "role_label"),
        ("As an AI I cannot cancel contracts.", "role_confusion"),
        ("You could tell the customer about the notice period.", "meta"),
        ("Would you like me to draft a reply about the notice period?", "question_to_agent"),
        ('You said "cancel", right?', "quotes"),
        ("You need to give 14 days' notice.", "invented_number"),
        ("Cancelling costs fifty pounds.", "invented_price"),
        ("I guarantee there is no fee.", "unsupported_promise"),
        ("I can waive the termination charge for you.", "unsupported_promise"),
    ],
)
def test_bad_replies_are_refused_with_a_reason(text, reason):
    verdict = check_suggestion(text, GROUNDING)
    assert not verdict.ok and verdict.reason == reason
