"""Commands from word patterns first, then from the intent head's labels."""

from earshot.agents.commands import Command, command_for, heard_labels


def test_patterns_win_and_need_no_intents():
    assert command_for("Could you repeat the question?") is Command.REPEAT
    assert command_for("Can I skip this one?", ("asks_for_hint",)) is Command.SKIP


def test_the_head_names_commands_the_patterns_miss():
    assert command_for("sorry I lost you there") is None
    assert command_for("sorry I lost you there", ("asks_to_repeat",)) is Command.REPEAT
    assert command_for("what do you mean by idempotent", ("asks_for_clarification",)) is Command.HINT
    assert command_for("I think I'd rather call it a day", ("wants_to_stop",)) is Command.STOP
    assert command_for("no idea honestly, next", ("asks_to_skip", "asks_for_hint")) is Command.SKIP


def test_an_answer_is_never_a_command_by_the_head():
    assert command_for("I lost the thread there but caching helps", ("answering", "asks_to_repeat")) is None
    long_answer = "we had to stop the rollout and " + "check every service one by one " * 2
    assert command_for(long_answer, ("wants_to_stop",)) is None


def test_labels_that_are_not_commands_are_ignored():
    assert command_for("how is the weather over there", ("off_topic",)) is None


def test_a_command_the_head_is_unsure_of_is_not_taken():
    """The real interview head: a fragment of a read sentence (cut by a barge-in) gets its best label at a
    score of a few hundredths, which must not become a hint; a real request still does."""
    from earshot.models.intent import IntentClassifier

    head = IntentClassifier.load(("interview",))
    fragment, request = "it is of the first importance", "sorry I lost you there"
    for text, expected in ((fragment, None), (request, Command.REPEAT)):
        labels = head.classify(text, "interview").labels
        assert labels, text
        assert command_for(text, heard_labels((label.name, label.score) for label in labels)) is expected, labels
    unsure = head.classify(fragment, "interview").labels
    assert command_for(fragment, tuple(label.name for label in unsure)) is not None  # all labels taken: it was a command
    assert heard_labels([("answering", 0.02), ("asks_for_hint", 0.49), ("asks_to_skip", 0.5)]) == ("answering", "asks_to_skip")
