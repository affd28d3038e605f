"""The LLM's suggested reply for a call-center agent: the prompt, and the checks on what comes back.

The agent reads the suggestion on screen while the customer waits, so it must
be short, say only what the knowledge file supports, and be something the
agent can say to the customer as it stands. `check_suggestion` refuses the
ways LLMs miss that: transcripts with role labels, "As an AI", talking about
"the customer" instead of to them, asking the agent a question back, quotes
and markdown, and numbers, prices or promises that appear nowhere in the
knowledge answers or the call. The caller then shows the knowledge answer.

A question to the customer ("Could you give me your postcode?") is fine:
agents ask those all the time.
"""

from __future__ import annotations

import re
from contextlib import aclosing
from dataclasses import dataclass

from earshot.agents.knowledge import KnowledgeHit
from earshot.models.llm import ChatMessage, LlmBackend

MAX_WORDS = 50
MAX_SENTENCES = 2
CUSTOMER_WORDS = 80  # of the customer's last final, in the prompt
CALL_LINES = 4  # earlier finals, both sides, for context

SYSTEM_PROMPT = (
    "You help a call-center agent during a live call. Write what the agent can say next to the customer: "
    "one or two short spoken sentences, in the first person, addressed to the customer. "
    "Use only the facts in the knowledge answers given. Never invent prices, amounts, dates, "
    "refunds or promises that the knowledge answers do not state. "
    "Write only the words to say: no labels, no quotes, no notes."
)


def suggestion_messages(
    customer_text: str, earlier: list[tuple[str, str]], hits: list[KnowledgeHit]
) -> list[ChatMessage]:
    """The chat asking for the agent's next reply; `earlier` is (speaker, text) of the finals before it."""
    knowledge = "\n".join(f"- {hit.entry.title}: {hit.entry.answer}" for hit in hits)
    call = "\n".join(f"{speaker.capitalize()}: {text}" for speaker, text in earlier[-CALL_LINES:])
    said = " ".join(customer_text.split()[-CUSTOMER_WORDS:])
    parts = [f"Knowledge answers:\n{knowledge}"]
    if call:
        parts.append(f"Call so far:\n{call}")
    parts.append(f"The customer just said: {said}\n\nWhat the agent says next:")
    return [ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", "\n\n".join(parts))]


# --- cleaning ---------------------------------------------------------------------------

_LEADING_LABEL = re.compile(
    r"^\s*(?:(?:sure|okay|ok|certainly|of course)\s*[,.!:]"
    r"|(?:here(?:'s| is) (?:a|an|the|my) [\w\s-]{0,30}?(?:reply|response|suggestion)[\w\s]{0,20}?\s*[:.-])"
    r"|(?:agent|suggested reply|suggestion|reply|response|answer|you could say|say)\s*:)\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’«»"
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[\"'“‘A-Z0-9])")


async def first_line(llm: LlmBackend, messages: list[ChatMessage], max_tokens: int, temperature: float) -> str:
    """The LLM's reply up to its first line break: one line is all a suggestion may be."""
    reply = ""
    async with aclosing(llm.stream_chat(messages, max_tokens=max_tokens, temperature=temperature)) as deltas:
        async for delta in deltas:
            reply += delta
            if "\n" in reply.strip():
                break
    return reply


def clean_suggestion(raw: str) -> str:
    """The first non-empty line, without leading labels and wrapping quotes, at most two sentences."""
    line = next((line for line in raw.replace("\r", "\n").split("\n") if line.strip()), "")
    while (label := _LEADING_LABEL.match(line)) and label.end() > 0:
        line = line[label.end():]
    text = " ".join(line.split()).strip(_QUOTES + " ")
    sentences = _SENTENCE_BREAK.split(text)
    return " ".join(sentences[:MAX_SENTENCES]).strip(_QUOTES + " ")


# --- checks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SuggestionVerdict:
    ok: bool
    # "" when ok; else: empty, too_long, markup, quotes, role_label, role_confusion, meta,
    # question_to_agent, invented_number, invented_price, unsupported_promise
    reason: str


_MARKUP = re.compile(r"```|`|\*|#|\\|[{}\[\]<>|=~^]|https?://|www\.", re.IGNORECASE)
_ROLE_LABEL = re.compile(r"\b(agent|customer|caller|assistant|user|representative|rep)\s*:", re.IGNORECASE)
_ROLE_CONFUSION = re.compile(
    r"\bas an? (ai|language model|assistant|chatbot)\b|\blanguage model\b"
    r"|\b(i am|i'm) (an? )?(ai|artificial intelligence|chatbot|virtual assistant)\b",
    re.IGNORECASE,
)
# Words about the call rather than to the customer: the agent never says
# "the customer" or "the knowledge base" to the person on the line.
_META = re.compile(
    r"\b(the|this|your) (customer|caller|agent)\b|\bcustomer's\b|\bknowledge (base|answers?|file)\b"
    r"|\bsuggested (reply|response)\b|\bthe transcript\b",
    re.IGNORECASE,
)
# The model asking the agent what to write, instead of writing it.
_QUESTION_TO_AGENT = re.compile(
    r"\b(would|do) you (like|want) me to (write|draft|suggest|rephrase|generate|come up with)\b"
    r"|\bwhat (would|do) you (like|want) (me )?to (say|reply|write|respond)\b"
    r"|\bhow (should|shall) i (respond|reply|answer)\b"
    r"|\b(more|additional) (context|information) (about|on) (the|this) (call|conversation|situation)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_MONEY = re.compile(r"[$£€]|\b(dollars?|pounds?|euros?|cents?|pence|bucks)\b", re.IGNORECASE)
_PROMISE = re.compile(
    r"\b(guarantee[sd]?|promise[sd]?|free of charge|for free|compensat\w*|waive[sd]?|discount\w*"
    r"|credit (?:to )?your account|account credit)\b",
    re.IGNORECASE,
)


def check_suggestion(text: str, grounding: str) -> SuggestionVerdict:
    """Is `text` (cleaned) fit to show the agent? `grounding` is the knowledge answers and the call's words."""
    if not text.strip():
        return SuggestionVerdict(False, "empty")
    if len(text.split()) > MAX_WORDS:
        return SuggestionVerdict(False, "too_long")
    for reason, pattern in (
        ("markup", _MARKUP),
        ("role_label", _ROLE_LABEL),
        ("role_confusion", _ROLE_CONFUSION),
        ("meta", _META),
        ("question_to_agent", _QUESTION_TO_AGENT),
    ):
        if pattern.search(text):
            return SuggestionVerdict(False, reason)
    if any(mark in text for mark in "\"“”«»"):
        return SuggestionVerdict(False, "quotes")
    known_numbers = {_plain_number(n) for n in _NUMBER.findall(grounding)}
    if any(_plain_number(n) not in known_numbers for n in _NUMBER.findall(text)):
        return SuggestionVerdict(False, "invented_number")
    if _MONEY.search(text) and not _MONEY.search(grounding):
        return SuggestionVerdict(False, "invented_price")
    grounded_promises = {m.lower() for m in _PROMISE.findall(grounding)}
    if any(m.lower() not in grounded_promises for m in _PROMISE.findall(text)):
        return SuggestionVerdict(False, "unsupported_promise")
    return SuggestionVerdict(True, "")


def _plain_number(number: str) -> str:
    return number.replace(",", "")
