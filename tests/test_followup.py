"""Follow-up guardrails on canned LLM output: each kind of bad reply, good ones, and streaming."""

from __future__ import annotations

import pytest

from earshot.agents.followup import ANSWER_WORDS, FollowUpStream, follow_up_messages
from earshot.agents.followup_guard import check_follow_up

QUESTION = "How do you handle missing values in a dataset?"
ANSWER = (
    "First I look at why the values are missing. For numeric columns I usually impute with the median, "
    "and I add an indicator column so the model knows the value was imputed. In one churn project thirty "
    "percent of the income field was missing, and dropping those rows would have biased the sample."
)

GOOD = [
    "Why did you choose the median rather than the mean?",
    "You mentioned the indicator column. How much did it help the churn model?",
    "What would have happened to the sample if you had dropped those rows?",
]


@pytest.mark.parametrize("text", GOOD)
def test_good_follow_ups_pass(text):
    assert check_follow_up(text, QUESTION, ANSWER).ok


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("Why did you use `df.fillna(median)` for the income field?", "markup"),
        ("Can you say more about the median? See https://pandas.pydata.org for details?", "markup"),
        ("How did the median imputation work out? 😀", "markup"),
        ("As an AI, I would ask why you picked the median?", "role_confusion"),
        ("In my experience I used the median too, did it bias the churn model?", "role_confusion"),
        ("Why the median? Candidate: because it is robust to outliers?", "role_confusion"),
        ("Why the median, Interviewer: and the income field?", "role_confusion"),
        ("My answer is that the median is robust, but why the income field?", "role_confusion"),
        ("Why the median? And why the indicator column?", "multiple_questions"),
        ("The median is a robust choice for the income field.", "no_question"),
        ("Why median?", "too_short"),
        (
            "You mentioned the median and the indicator column and the churn project and the income field, "
            "so could you walk me through every single step you took from the very first look at the data "
            "until the model finally went to production?",
            "too_long",
        ),
        ("Can you tell me more about a specific example of that experience?", "not_about_answer"),
        ("How do you deal with missing values in a dataset?", "repeats_question"),
        ("You mentioned the median. It is robust. Why did you pick it?", "too_long"),
        ("I think the median is robust. Why did you pick it over the mean?", "role_confusion"),
        ("You're right about the median. Why did you pick it over the mean?", "role_confusion"),
        ("What a great example. Why did you pick the median over the mean?", "not_about_answer"),
        ('You mentioned dropping rows. What do you mean by "draining the pond"?', "not_about_answer"),
    ],
)
def test_bad_follow_ups_are_refused_with_a_reason(text, reason):
    verdict = check_follow_up(text, QUESTION, ANSWER)
    assert not verdict.ok
    assert verdict.reason == reason


def test_words_are_matched_after_stemming():
    # "rows" in the answer, "row" here; "imputing" against "impute"/"imputed".
    assert check_follow_up("How many row counts did you lose before imputing?", QUESTION, ANSWER).ok


def test_words_shared_only_with_the_question_do_not_count_as_listening():
    # "values" and "dataset" come from the question: no sign the answer was heard.
    verdict = check_follow_up("Which values in a dataset are the hardest ones?", QUESTION, ANSWER)
    assert verdict.reason in ("not_about_answer", "repeats_question")
    assert not verdict.ok


def test_quoting_the_candidate_is_fine():
    assert check_follow_up('What did you mean by "dropping those rows would have biased the sample"?', QUESTION, ANSWER).ok


def test_first_person_curiosity_is_allowed():
    assert check_follow_up("I'm curious, why did you pick the median?", QUESTION, ANSWER).ok


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ('"Why did you choose the median?"', "Why did you choose the median?"),
        ("Interviewer: Why did you choose the median?", "Why did you choose the median?"),
        ("**Follow-up question:** Why did you pick the *median*? It is robust.", "Why did you pick the median?"),
        (
            "Sure! Here's a good follow-up question: Why did you pick the median?\n\nCandidate: ...",
            "Why did you pick the median?",
        ),
        ("Why _exactly_ did you pick the median?", "Why exactly did you pick the median?"),
        ("  - You mentioned   the median.\nWhy   not the mean?  ", "You mentioned the median. Why not the mean?"),
    ],
)
def test_labels_quotes_and_markdown_are_not_spoken(raw, cleaned):
    stream = FollowUpStream(QUESTION, ANSWER)
    stream.feed(raw)
    assert stream.finish().ok
    assert stream.text == cleaned


def test_cleaned_output_of_a_chatty_model_passes():
    raw = '**Interviewer:** "You mentioned the churn project. How big was the bias from dropping rows?" Hope it helps!'
    stream = FollowUpStream(QUESTION, ANSWER)
    stream.feed(raw)
    assert stream.finish().ok
    assert stream.text == "You mentioned the churn project. How big was the bias from dropping rows?"


def test_the_prompt_is_short_and_keeps_the_end_of_a_long_answer():
    long_answer = " ".join(f"word{i}." for i in range(1000))
    messages = follow_up_messages("Data scientist", QUESTION, long_answer)
    last = messages[-1].content
    assert "word999." in last and "word0." not in last
    assert len(last.split()) < ANSWER_WORDS + 40
    assert [m.role for m in messages][0] == "system" and messages[-1].role == "user"
    assert "Data scientist" in last and QUESTION in last


def test_examples_in_the_prompt_pass_the_guard():
    # The worked examples teach the model its replies: they must be replies the guard accepts.
    messages = follow_up_messages("Data scientist", QUESTION, ANSWER)
    turns = messages[1:-1]
    assert len(turns) >= 2
    for user, assistant in zip(turns[::2], turns[1::2], strict=True):
        question = user.content.split("Question: ")[1].split("\n")[0]
        answer = user.content.split("Answer: ")[1].split("\n")[0]
        assert check_follow_up(assistant.content, question, answer).ok, assistant.content


# --- streaming ---------------------------------------------------------------------


def feed_all(stream: FollowUpStream, deltas: list[str]) -> list[str]:
    spoken: list[str] = []
    for delta in deltas:
        spoken += stream.feed(delta)
    return spoken


def test_a_question_split_across_deltas_is_released_whole():
    stream = FollowUpStream(QUESTION, ANSWER)
    assert stream.feed("Why did") == []
    assert stream.feed(" you pick the med") == []
    assert not stream.done
    assert stream.feed("ian?") == ["Why did you pick the median?"]
    assert stream.done
    assert stream.finish().ok
    assert stream.text == "Why did you pick the median?"


def test_a_lead_in_is_released_before_the_question_is_written():
    stream = FollowUpStream(QUESTION, ANSWER)
    assert stream.feed("You mentioned the indicator column.") == []  # could still be "column.5"
    assert stream.feed(" How") == ["You mentioned the indicator column."]
    assert not stream.done
    assert stream.feed(" much did it help?") == ["How much did it help?"]
    assert stream.done and stream.finish().ok
    assert stream.text == "You mentioned the indicator column. How much did it help?"


def test_text_after_the_question_is_ignored():
    stream = FollowUpStream(QUESTION, ANSWER)
    spoken = feed_all(stream, ["Why did you pick the median", "? I think", " it is because. Also, why not the mean?"])
    assert spoken == ["Why did you pick the median?"]
    assert stream.done
    assert stream.feed("More text?") == []
    assert stream.finish().ok
    assert stream.text == "Why did you pick the median?"


def test_a_bad_lead_in_is_never_spoken():
    stream = FollowUpStream(QUESTION, ANSWER)
    spoken = feed_all(stream, ["In my experience I used the median", " too. Why did you", " pick it?"])
    assert spoken == []
    assert stream.done
    verdict = stream.finish()
    assert not verdict.ok and verdict.reason == "role_confusion"
    assert stream.text == ""


def test_filler_lead_in_is_not_spoken():
    stream = FollowUpStream(QUESTION, ANSWER)
    assert feed_all(stream, ["What a great example of good", " practice. Why did you pick the median?"]) == []
    assert stream.finish().reason == "not_about_answer"


def test_a_first_person_lead_in_is_not_spoken():
    stream = FollowUpStream(QUESTION, ANSWER)
    assert feed_all(stream, ["I'm glad you mentioned the median. ", "Why did you pick it?"]) == []
    assert stream.finish().reason == "role_confusion"


def test_a_second_statement_ends_the_reply():
    stream = FollowUpStream(QUESTION, ANSWER)
    spoken = feed_all(stream, ["You mentioned the median. ", "It is robust. ", "Why did you pick it?"])
    assert spoken == ["You mentioned the median."]
    assert stream.done
    assert stream.finish() == stream.finish()
    assert not stream.finish().ok and stream.finish().reason == "too_long"


def test_a_bad_question_after_a_good_lead_in_fails_the_reply():
    stream = FollowUpStream(QUESTION, ANSWER)
    spoken = feed_all(stream, ["You mentioned the median. ", "How do you handle missing values in a dataset?"])
    assert spoken == ["You mentioned the median."]
    verdict = stream.finish()
    assert not verdict.ok and verdict.reason == "repeats_question"  # the lead-in does not make it new


def test_a_reply_without_a_question_fails_at_the_end():
    stream = FollowUpStream(QUESTION, ANSWER)
    assert stream.feed("You mentioned the median") == []
    assert not stream.done
    verdict = stream.finish()
    assert not verdict.ok and verdict.reason == "no_question"


def test_rambling_without_a_sentence_end_is_stopped():
    stream = FollowUpStream(QUESTION, ANSWER)
    feed_all(stream, ["and the median " * 30])
    assert stream.done
    assert stream.finish().reason == "too_long"


def test_abbreviations_and_decimals_do_not_split_sentences():
    stream = FollowUpStream(QUESTION, ANSWER)
    spoken = feed_all(stream, ["Did the median, e.g. 3.5 in the income field, bias the churn model?"])
    assert spoken == ["Did the median, e.g. 3.5 in the income field, bias the churn model?"]
    assert stream.finish().ok


def test_an_empty_reply_fails():
    stream = FollowUpStream(QUESTION, ANSWER)
    assert stream.feed("") == []
    assert stream.finish().reason == "empty"


def test_a_label_before_the_question_is_dropped():
    stream = FollowUpStream(QUESTION, ANSWER)
    assert feed_all(stream, ['Interviewer: "Why did you pick the', ' median?"']) == ["Why did you pick the median?"]
    assert stream.finish().ok
