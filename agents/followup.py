"""The interviewer's follow-up question: the prompt that asks an LLM for it.

After the candidate answers a bank question, the interviewer may ask one
follow-up that picks up something specific the candidate said. An LLM writes
it from `follow_up_messages`, with the generation settings below. Small
models often get it wrong, so what they write is checked before it is spoken:
the guard in agents/followup_guard.py. This module exports its
`FollowUpStream` too, so a caller that asks for a follow-up imports from one
place.
"""

from __future__ import annotations

import re
from contextlib import aclosing

from earshot.agents.followup_guard import FollowUpStream
from earshot.models.llm import ChatMessage, LlmBackend

__all__ = [
    "ANSWER_WORDS",
    "EXAMPLES",
    "MAX_TOKENS",
    "STOP",
    "SYSTEM_PROMPT",
    "TEMPERATURE",
    "FollowUpStream",
    "follow_up_messages",
    "warm_prompt_cache",
]

# What the prompt keeps of a long answer. A spoken answer of two minutes is
# about 300 words; SmolLM2-135M loses the thread well before its 2k-token
# context is full, and prompt processing (about 4 ms a token on 2 cores) is
# time the candidate waits.
ANSWER_WORDS = 160

# Generation settings the prompt was tuned with. A follow-up is one line, so a
# newline ends it; 60 tokens leave room for a lead-in and a 40-word question.
# SmolLM2-135M's replies to 8 realistic answers passed the guard 24 times in
# 40 at temperature 0.2, 23 in 40 at 0.3 and 8 in 24 at 0.7.
MAX_TOKENS = 60
STOP = ("\n",)
TEMPERATURE = 0.2

SYSTEM_PROMPT = (
    "You are a job interviewer. After each answer you ask one short follow-up "
    "question about a detail the candidate mentioned."
)

# Two worked examples, as earlier turns of the chat. SmolLM2-135M ignores most
# instructions but copies a pattern well: with them it mostly answers "You
# mentioned X. <question>?"; with instructions alone, 0 to 3 replies in 8 passed
# the guard (it praised the answer, answered the question itself, or played
# the candidate). Everything before the last turn is the same for every call,
# so llama.cpp's prompt cache skips it after the first.
EXAMPLES: tuple[tuple[str, str, str, str], ...] = (
    (
        "Project manager",
        "How do you prioritize your work when everything is urgent?",
        "I keep one list and rank it every morning by deadline and impact. Last month I moved a "
        "client report ahead of an internal demo, because the client was waiting on it to sign the contract.",
        "You mentioned moving the client report ahead of the demo. How did your team react?",
    ),
    (
        "Operations analyst",
        "What tools do you use to keep track of a project?",
        "Mostly Jira for the tasks, and a weekly status email for the stakeholders. The email "
        "matters more than people think, because managers never open Jira.",
        "Why do you think the managers never open Jira?",
    ),
)


def follow_up_messages(role_title: str, question: str, answer: str) -> list[ChatMessage]:
    """The chat that asks an LLM for one follow-up question.

    Kept short: the bundled model has 135M parameters and a 2k context, and
    every prompt token is time the candidate waits. Long answers keep their
    end (see `_tail_words`).
    """
    messages = [ChatMessage("system", SYSTEM_PROMPT)]
    for example_role, example_question, example_answer, example_follow_up in EXAMPLES:
        messages.append(ChatMessage("user", _turn(example_role, example_question, example_answer)))
        messages.append(ChatMessage("assistant", example_follow_up))
    messages.append(ChatMessage("user", _turn(role_title, question, _tail_words(answer, ANSWER_WORDS))))
    return messages


async def warm_prompt_cache(llm: LlmBackend) -> None:
    """Generate one token from a follow-up prompt, so llama.cpp caches the prompt's fixed start.

    Call once at start-up: every follow-up prompt begins with the same ~215
    tokens (system prompt and examples). Cold, the first follow-up took 1.2 s
    to its first token; with the start cached, 0.4 s. Harmless for HTTP
    backends (vLLM and llama.cpp's server cache prefixes too).
    """
    messages = follow_up_messages(EXAMPLES[0][0], EXAMPLES[1][1], EXAMPLES[1][2])
    async with aclosing(llm.stream_chat(messages, max_tokens=1, temperature=0.0)) as deltas:
        async for _ in deltas:
            break


def _turn(role_title: str, question: str, answer: str) -> str:
    return (
        f"Role: {role_title.strip()}\nQuestion: {question.strip()}\nAnswer: {answer.strip()}\n"
        "Follow-up question about the answer:"
    )


def _tail_words(text: str, limit: int) -> str:
    """The last `limit` words, starting at a sentence start where one is near.

    The end is kept rather than the start: it is what the candidate said last,
    so a question about it sounds like listening, and long spoken answers
    usually arrive at their concrete example (the thing worth probing) after
    a general opening.
    """
    words = text.split()
    if len(words) <= limit:
        return " ".join(words)
    tail = words[-limit:]
    # Start at the first sentence start within the first third, if there is one,
    # so the model does not begin reading mid-sentence.
    for i in range(1, limit // 3):
        if re.search(r"[.!?]$", tail[i - 1]):
            return " ".join(tail[i:])
    return "... " + " ".join(tail)
