"""Voice-to-voice benchmark: scripted interviews against a real server, measured at the caller.

    python -m bench.voice_bench [--interviews 3] [--questions 3] [--out bench/results] [--quick]

Three passes, one after another (with `--endpointing silence`, so the fixed turn
pause can be taken off: model endpointing is compared with it in bench/turn_bench.py):

1. calls - `--interviews` mock interviews over WebRTC on loopback with the
   embedded models (Whisper tiny.en, SmolLM2-135M via llama.cpp, Piper). A
   headless caller answers every question with a corpus recording once the
   interviewer listens, and talks over the interviewer once per interview.
   Per answer it measures, on its own clock:
     voice_to_voice_s  = first audible agent frame - end of the candidate's voice
     after_turn_pause_s = voice_to_voice_s - turn_pause (the configured wait; the target applies here)
     final_s           = the final's arrival - end of voice (ASR + end-of-speech silence)
     reply_text_s      = the reply's second sentence (the LLM follow-up or the next question,
                         after the cached acknowledgement) starts being heard - end of voice
                         (its words are released when its audio starts)
   and per barge-in: barge_in_stop_s = last audible agent frame - start of the candidate's voice.
2. llm   - the embedded LLM alone on follow-up prompts built from the bank:
           time to first token, tokens per second, guard pass rate.
3. tts   - Piper alone on every bank question of a role: real-time factor, time per sentence.

Writes bench/results/voice.json and voice.png (voice-quick.* with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from bench.common import DEFAULT_CORPUS, RESULTS_DIR, machine_info, progress, utc_timestamp, write_results
from earshot.agents.followup import STOP, TEMPERATURE, FollowUpStream, follow_up_messages, warm_prompt_cache
from earshot.agents.question_bank import load_question_bank
from earshot.agents.roles import ROLES as ROLE_TITLES
from earshot.loadtest.caller import HeadlessCaller, speech_bounds
from earshot.loadtest.server_process import ServerProcess, start_server
from earshot.loadtest.stats import percentiles
from earshot.models.audio import read_audio
from earshot.models.llm import LlmConfig, LlmError, load_llm
from earshot.models.tts import PiperTts
from earshot.server.ice import restrict_ice_to_loopback
from earshot.server.redis_server import PrivateRedis

TURN_PAUSE_MS = 700
ANSWERS = (
    "utterances/LJ001-0009.wav",
    "utterances/LJ001-0005.wav",
    "utterances/librivox-0870.wav",
    "utterances/LJ001-0012.wav",
    "utterances/LJ001-0017.wav",
    "utterances/LJ001-0003.wav",
)
BARGE_IN = "utterances/LJ001-0011.wav"
ROLES = ("software_engineer", "data_scientist", "customer_service", "ml_genai_engineer")
# Targets from the issue, on this machine with the embedded models, after the turn pause.
V2V_P50_LIMIT_S = 1.2
V2V_P95_LIMIT_S = 2.0


@dataclass
class Turn:
    kind: str  # what the answer got: "follow_up", "question" (the next one) or "closing"
    voice_to_voice_s: float
    final_s: Optional[float]
    reply_text_s: Optional[float]


@dataclass
class CallResult:
    turns: list[Turn] = field(default_factory=list)
    barge_in_stop_s: list[float] = field(default_factory=list)
    llm_follow_ups: int = 0
    bank_follow_ups: int = 0
    errors: list[str] = field(default_factory=list)


def listening(caller: HeadlessCaller) -> bool:
    turns = caller.of_type("turn")
    return bool(turns) and turns[-1]["state"] == "listening"


def ended(caller: HeadlessCaller) -> bool:
    turns = caller.of_type("turn")
    return bool(turns) and turns[-1]["state"] == "ended"


async def one_interview(base_url: str, corpus: Path, role: str, number: int) -> CallResult:
    result = CallResult()
    caller = HeadlessCaller(base_url, b"", role=role, difficulty="easy")
    await caller.connect()
    answers = [read_audio(corpus / rel) for rel in ANSWERS]
    barge = read_audio(corpus / BARGE_IN)
    barged = False
    try:
        for turn_index in range(20):  # bounded: questions x (answer + follow-up answer) + slack
            if not await caller.wait_until(lambda c: listening(c) or ended(c), timeout=90):
                result.errors.append("timed out waiting for the interviewer to listen")
                break
            if ended(caller):
                break
            if not barged and turn_index == 1:
                # Talk over the next question: wait for it to start, then interrupt it.
                barged = True
                await measure_barge_in(caller, answers[turn_index % len(answers)], barge, result)
                continue
            pcm = answers[(turn_index + number) % len(answers)]
            agent_starts = len(caller.of_type("agent_audio_start"))
            seen_events = len(caller.events)
            start_s, _ = caller.say(pcm)
            _, voice_end = speech_bounds(pcm)
            end_wall_s = start_s + voice_end
            ok = await caller.wait_until(lambda c: len(c.of_type("agent_audio_start")) > agent_starts, timeout=60)
            if not ok:
                result.errors.append("no reply to an answer")
                break
            reply_id = caller.of_type("agent_audio_start")[agent_starts]["utterance_id"]
            # The whole reply, so its later sentences' arrival is known too.
            await caller.wait_until(
                lambda c: any(e["utterance_id"] == reply_id and e["final"] for e in c.of_type("agent")), timeout=60
            )
            end_wall = caller.track.wall_at(end_wall_s)
            first_audio = [f.wall for f in caller.audible_frames(end_wall)]
            later = caller.events[seen_events:]
            finals = [e.wall for e in later if e.event["type"] == "final"]
            reply = [e for e in later if e.event["type"] == "agent" and e.event["utterance_id"] == reply_id
                     and e.event["text_delta"]]
            kinds = [e.event["kind"] for e in reply]
            if not first_audio:
                result.errors.append("reply had no audible audio")
                continue
            result.turns.append(
                Turn(
                    kind=kinds[0] if kinds else "?",
                    voice_to_voice_s=first_audio[0] - end_wall,
                    final_s=(finals[-1] - end_wall) if finals else None,
                    reply_text_s=(reply[1].wall - end_wall) if len(reply) > 1 else None,
                )
            )
        result.errors.extend(e["code"] for e in caller.of_type("error"))
    finally:
        await caller.hangup()
    return result


async def measure_barge_in(caller: HeadlessCaller, answer: bytes, barge: bytes, result: CallResult) -> None:
    """Answer, then start talking 1.2 s into the interviewer's reply."""
    starts = len(caller.of_type("agent_audio_start"))
    caller.say(answer)
    if not await caller.wait_until(lambda c: len(c.of_type("agent_audio_start")) > starts, timeout=60):
        result.errors.append("no reply to barge into")
        return
    reply_id = caller.of_type("agent_audio_start")[starts]["utterance_id"]
    await asyncio.sleep(1.2)
    if any(e["utterance_id"] == reply_id for e in caller.of_type("agent_audio_end")):
        result.errors.append("reply ended before the barge-in")
        return
    start_s, _ = caller.say(barge)
    onset, _ = speech_bounds(barge)
    ok = await caller.wait_until(
        lambda c: any(e["utterance_id"] == reply_id for e in c.of_type("agent_audio_end")), timeout=30
    )
    if not ok:
        result.errors.append("barge-in did not end the reply")
        return
    wall = caller.track.wall_at(start_s + onset)
    later = [e.wall for e in caller.events if e.event["type"] == "agent_audio_start" and e.wall > wall]
    window_end = later[0] if later else wall + 3
    heard = [f.wall - wall for f in caller.audible_frames(wall) if f.wall < window_end]
    result.barge_in_stop_s.append(max(heard, default=0.0))


async def calls_pass(base_url: str, corpus: Path, interviews: int) -> list[CallResult]:
    results = []
    for number in range(interviews):
        role = ROLES[number % len(ROLES)]
        progress(f"interview {number + 1}/{interviews} ({role})")
        results.append(await one_interview(base_url, corpus, role, number))
    return results


async def llm_pass(pairs: int) -> dict[str, Any]:
    """The embedded LLM on follow-up prompts: how fast, and how often its question passes the guard."""
    bank = load_question_bank()
    llm = load_llm(LlmConfig())
    await warm_prompt_cache(llm)  # as the server does at start-up
    answers = [
        "I would start by measuring where the time goes, then cache the slow lookups and add an index.",
        "In my last project we moved the batch job to a queue so each worker handled one customer at a time.",
        "I listen first, repeat the problem back to the customer, and then offer two options with clear timing.",
    ]
    ttft, rates, passed, samples, failures = [], [], 0, [], []
    questions = [q for q in bank.all_questions if q.difficulty == "easy"][:pairs]
    for i, question in enumerate(questions):
        answer = answers[i % len(answers)]
        messages = follow_up_messages(ROLE_TITLES[question.role], question.text, answer)
        guard = FollowUpStream(question.text, answer)
        started = time.monotonic()
        first: Optional[float] = None
        pieces = 0
        try:
            async for delta in llm.stream_chat(messages, max_tokens=60, temperature=TEMPERATURE, stop=STOP):
                if first is None:
                    first = time.monotonic() - started
                pieces += 1
                guard.feed(delta)
                if guard.done:
                    break
        except LlmError as exc:
            failures.append(str(exc))
        total = time.monotonic() - started
        verdict = guard.finish()
        passed += verdict.ok
        if first is not None:
            ttft.append(first)
            if total > first and pieces > 1:
                rates.append((pieces - 1) / (total - first))
        samples.append({"question": question.text, "follow_up": guard.text, "ok": verdict.ok, "reason": verdict.reason})
    await llm.close()
    return {
        "model": llm.name,
        "prompts": len(questions),
        "time_to_first_token_s": percentiles(ttft),
        "tokens_per_s": percentiles(rates),
        "guard_pass_rate": round(passed / len(questions), 3) if questions else None,
        "failures": failures,
        "samples": samples[:6],
    }


async def tts_pass(role: str) -> dict[str, Any]:
    bank = load_question_bank()
    tts = PiperTts.load()
    rtf, synth = [], []
    try:
        for question in [q for q in bank.all_questions if q.role == role]:
            audio = await tts.synthesize(question.text)
            rtf.append(audio.synth_s / audio.duration_s)
            synth.append(audio.synth_s)
    finally:
        tts.close()
    return {"sentences": len(rtf), "rtf": percentiles(rtf), "synth_s": percentiles(synth)}


def summarise(calls: list[CallResult]) -> dict[str, Any]:
    turns = [t for c in calls for t in c.turns]
    pause = TURN_PAUSE_MS / 1000
    return {
        "turn_pause_s": pause,
        "answers": len(turns),
        "voice_to_voice_s": percentiles(t.voice_to_voice_s for t in turns),
        "voice_to_voice_after_turn_pause_s": percentiles(t.voice_to_voice_s - pause for t in turns),
        "final_s": percentiles(t.final_s for t in turns if t.final_s is not None),
        "reply_text_s": percentiles(t.reply_text_s for t in turns if t.reply_text_s is not None),
        "reply_kinds": {k: sum(1 for t in turns if t.kind == k) for k in sorted({t.kind for t in turns})},
        "barge_in_stop_s": percentiles(s for c in calls for s in c.barge_in_stop_s),
        "errors": [e for c in calls for e in c.errors],
    }


def plot(report: dict[str, Any], turns: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(turns, bins=20, color="#3b7dd8")
    summary = report["calls"]["voice_to_voice_after_turn_pause_s"]
    for name, color in (("p50", "black"), ("p95", "red")):
        if summary[name] is not None:
            ax.axvline(summary[name], color=color, linestyle="--", label=f"{name} {summary[name]:.2f} s")
    ax.axvline(V2V_P50_LIMIT_S, color="grey", linestyle=":", label=f"p50 target {V2V_P50_LIMIT_S} s")
    ax.set_xlabel("voice to voice after the turn pause (s)")
    ax.set_ylabel("answers")
    ax.set_title("Candidate stops speaking -> interviewer heard (embedded models, 2 cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.voice_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--interviews", type=int, default=3)
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--quick", action="store_true", help="one interview of two questions")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.interviews, args.questions = 1, 2
    restrict_ice_to_loopback()
    with tempfile.TemporaryDirectory(prefix="earshot-voice-bench-") as tmp:
        redis = PrivateRedis(Path(tmp) / "redis")
        server: Optional[ServerProcess] = None
        try:
            server = start_server(
                redis.start(),
                Path(tmp),
                # The silence rule, so the fixed wait can be taken off and what is left is the interviewer's own
                # work; model endpointing against it is bench/turn_bench.py.
                extra_args=("--interview-questions", str(args.questions), "--endpointing", "silence",
                            "--turn-pause-ms", str(TURN_PAUSE_MS)),
            )
            calls = asyncio.run(calls_pass(server.base_url, args.corpus, args.interviews))
        finally:
            if server is not None:
                server.stop()
            redis.stop()
    progress("LLM alone")
    llm = asyncio.run(llm_pass(12))
    progress("TTS alone")
    tts = asyncio.run(tts_pass("software_engineer"))
    report = {
        "timestamp": utc_timestamp(),
        "quick": args.quick,
        "machine": machine_info(),
        "interviews": args.interviews,
        "questions_per_interview": args.questions,
        "calls": summarise(calls),
        "llm": llm,
        "tts": tts,
    }
    after = report["calls"]["voice_to_voice_after_turn_pause_s"]
    report["targets"] = {
        "voice_to_voice_after_turn_pause_p50": {"limit_s": V2V_P50_LIMIT_S, "value": after["p50"],
                                                "pass": after["p50"] is not None and after["p50"] <= V2V_P50_LIMIT_S},
        "voice_to_voice_after_turn_pause_p95": {"limit_s": V2V_P95_LIMIT_S, "value": after["p95"],
                                                "pass": after["p95"] is not None and after["p95"] <= V2V_P95_LIMIT_S},
    }
    stem = "voice-quick" if args.quick else "voice"
    json_path = write_results(args.out, stem, report)
    plot(report, [t.voice_to_voice_s - TURN_PAUSE_MS / 1000 for c in calls for t in c.turns], args.out / f"{stem}.png")
    print(json.dumps({k: report["calls"][k] for k in ("voice_to_voice_after_turn_pause_s", "barge_in_stop_s", "final_s", "reply_text_s", "reply_kinds", "errors")}, indent=1))
    print(json.dumps({"llm_ttft": llm["time_to_first_token_s"], "guard_pass_rate": llm["guard_pass_rate"], "tts_rtf": tts["rtf"]}, indent=1))
    print(f"wrote {json_path}")
    return 0 if all(t["pass"] for t in report["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
