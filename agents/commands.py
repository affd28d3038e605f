"""What the candidate says *to* the interviewer rather than as an answer.

Spoken commands ("could you repeat that", "can I skip this one", "can I get a
hint", "let's stop here", "that's all") and backchannels ("yeah", "uh-huh")
are recognised from a final transcript with word patterns first: they are
exact, instant and explainable. The intent head (interview label set) then
catches the phrasings no pattern lists ("sorry, I lost you there", "what do
you mean by idempotent?"). A false hit in the middle of an answer would be
bad, so commands other than "that's all" only count in a short utterance, and
the head's verdict only when it does not also hear an answer.
"""

from __future__ import annotations

import enum
import re
from typing import Iterable, Optional, Sequence

from earshot.models.text import normalize_text


class Command(enum.Enum):
    REPEAT = "repeat"
    SKIP = "skip"
    HINT = "hint"
    STOP = "stop"
    DONE = "done"  # "that's all": the answer is complete, take the turn now


# A command hides in a short utterance; a long one is an answer that may mention "skip".
MAX_COMMAND_WORDS = 12

# Checked in this order: "let's stop here" is STOP even though it could be read as
# moving on, and "can you repeat the hint" is a REPEAT.
_PATTERNS: tuple[tuple[Command, re.Pattern[str]], ...] = tuple(
    (command, re.compile(pattern))
    for command, pattern in (
        (Command.STOP, r"\b(let s|lets|let us|i want to|i d like to|can we|please) (stop|end|finish|quit)\b"
                       r"|\b(stop|end|finish) (the|this) interview\b|\bthat s enough for today\b"),
        (Command.REPEAT, r"\brepeat\b|\bsay (that|it|the question) again\b|\bcome again\b|\bpardon\b"
                         r"|\bdidn t (catch|hear|get) (that|it|the question)\b|\bone more time\b"),
        (Command.HINT, r"\bhint\b|\bclue\b|\bpointer\b|\bhelp me (out )?(with|on) (this|that|it)\b"),
        (Command.SKIP, r"\bskip\b|^(the |a )?next question|\b(go|move|jump) (on )?to the next (one|question)\b"
                       r"|\bmove on\b|\bpass on (this|that)\b|^pass$"),
    )
)

# "that's all" may end a long answer, so it is looked for in the last few words only.
_DONE_AT_END = re.compile(
    r"(that s all|that is all|that s it|that is it|i m done|i am done|i m finished|i am finished"
    r"|that s my answer|that is my answer|end of (my )?answer|^done|^finished)$"
)
DONE_TAIL_WORDS = 5

# Sounds, not words: a turn made only of these answers nothing.
FILLER_SOUNDS = frozenset("uh um uhm er erm ah oh mm mmm hmm mhm mm-hmm uh-huh huh".split())
BACKCHANNEL_WORDS = FILLER_SOUNDS | frozenset(
    "yeah yes yep yup ok okay right sure alright cool nice great i see got it gotcha true exactly".split()
)
MAX_BACKCHANNEL_WORDS = 3


def _normalised(text: str) -> str:
    # normalize_text lower-cases and drops punctuation; apostrophes become spaces
    # ("that's" -> "that s"), which the patterns above expect.
    return " ".join(normalize_text(text.replace("'", " ")).split())


def detect_command(text: str) -> Optional[Command]:
    """The command a final transcript carries, or None when it is (part of) an answer."""
    words = _normalised(text).split()
    if not words:
        return None
    if len(words) <= MAX_COMMAND_WORDS:
        joined = " ".join(words)
        for command, pattern in _PATTERNS:
            if pattern.search(joined):
                return command
    if _DONE_AT_END.search(" ".join(words[-DONE_TAIL_WORDS:])):
        return Command.DONE
    return None


# The interview label set's names for what the candidate asks of the interviewer.
# A clarification ("what do you mean by sharding?") gets the hint, which says
# what a good answer would cover: closer to what was asked than a verbatim repeat.
INTENT_COMMANDS: dict[str, Command] = {
    "wants_to_stop": Command.STOP,
    "asks_to_repeat": Command.REPEAT,
    "asks_for_hint": Command.HINT,
    "asks_for_clarification": Command.HINT,
    "asks_to_skip": Command.SKIP,
}
ANSWERING = "answering"
# The head's command labels are acted on only at this score or above. Its decision rule always puts the
# best label on, even at 0.01, and read-aloud fragments cut by a barge-in then asked for a hint ("it is of
# the first importance": asks_for_hint at 0.03); where every score is that low, the best label flips with
# float noise (int8 graph or torch, a batch or alone). On the interview data's validation and test
# utterances that the head alone turns into a command (short, no pattern, not heard as an answer), all 77
# right ones scored >= 0.90, and 4 of the 5 wrong ones < 0.1 ("is there a time limit on this one", 0.03).
HEAD_COMMAND_MIN_SCORE = 0.5


def heard_labels(labels: Iterable[tuple[str, float]]) -> tuple[str, ...]:
    """The head's (name, score) labels as `command_for` takes them: a command label only at HEAD_COMMAND_MIN_SCORE."""
    return tuple(name for name, score in labels if name not in INTENT_COMMANDS or score >= HEAD_COMMAND_MIN_SCORE)


def command_for(text: str, intents: Sequence[str] = ()) -> Optional[Command]:
    """The command in a final: the patterns' verdict, else the intent head's (best label first)."""
    command = detect_command(text)
    if command is not None or ANSWERING in intents:
        return command
    if len(_normalised(text).split()) > MAX_COMMAND_WORDS:
        return None
    return next((INTENT_COMMANDS[name] for name in intents if name in INTENT_COMMANDS), None)


def strip_done_phrase(text: str) -> str:
    """The answer without a closing "that's all", for the report and the follow-up prompt."""
    stripped = re.sub(
        r"[,.!?\s]*(and )?(that's all|that is all|that's it|that is it|i'm done|i am done|that's my answer)[.!?]*\s*$",
        "",
        text.strip(),
        flags=re.IGNORECASE,
    )
    return stripped.strip()




def is_filler_only(text: str) -> bool:
    """True for "uh", "um, uh", "mm-hmm" and empty transcripts."""
    return all(word in FILLER_SOUNDS for word in _words(text))


def _words(text: str) -> list[str]:
    # Keep hyphenated sounds ("uh-huh") whole, which normalize_text would split.
    return _normalised(text.replace("-", "HYPHEN")).replace("hyphen", "-").split()


def is_backchannel(text: str) -> bool:
    """True for "yeah", "uh-huh", "okay", "mm": the listener acknowledging, not taking the turn.

    An empty transcript counts too: the VAD heard a voice but Whisper found no
    words in it, which is what a cough or a murmur looks like.
    """
    words = _words(text)
    if len(words) > MAX_BACKCHANNEL_WORDS:
        return False
    joined = " ".join(words)
    return all(word in BACKCHANNEL_WORDS for word in words) or joined in BACKCHANNEL_WORDS
