"""The end of turn, live: scripted interviews over WebRTC on loopback, one server per endpointing mode.

A `HeadlessCaller` (loadtest/caller.py) answers the interviewer with the turn
set's answers, one per question or follow-up, once the interviewer listens.
Everything is measured at the caller, from the end of voice in the audio it
sent (the turn set's energy times: `voice_end_s`, `MidPause.start_s`), placed on
the wall clock by the caller's own audio clock (`PcmTrack.wall_at`):

* final_from_voice_s - a final's arrival minus the end of voice it belongs to
  (the answer's end, or a designed pause the utterance was cut at); beside it
  the pipeline's own `emitted_audio_s - speech_end_audio_s`, which starts at
  the VAD's last voiced frame, about 0.07 s after the audible end (0.1-0.2 s
  before the noise gate).
* reply_s - the answer's end of voice to the first audible frame of the
  interviewer's reply (the decision, the final, the turn-taking and the voice).
* takeovers - the interviewer heard while the answer is still going on
  (between its start and end of voice): at a designed pause (`mid`) or at a
  natural gap between words (`gap`).
* cut finals - finals that end at a designed pause, so the next final goes on
  with the same sentence: per minute of the answers' speech.
* `speech_end` events: why each utterance ended (`ended_by`), and the model's
  CPU per call (`end_of_turn_checks[].inference_s`).

An interview ends after the bank's six questions (and their follow-ups): the
next answers go to a new interview on the same server.

Two things the endpointing does not decide are flagged per answer, so they can
be told apart from what it does: `vad_late_s` when the server's VAD heard the
quiet after the answer as voice (webrtcvad, running for the whole call, now and
then hears the set's low Gaussian noise as speech: measured 2026-12-06, the end
then comes 1.5-3 s late in either mode), and `wordless_utterances`, utterances
that end without a final (not dropped, but Whisper/Silero found no words: the
interviewer waits for that final, up to 5 s, agents/turn_taking.py). The
`clean` summary repeats the latencies over the answers no mode's VAD misheard.

The server's audio clock (event times) counts the frames it got, the caller's
the frames it sent: the same samples when none is lost, which
`clock_lag_bound` checks and reports.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from bench.asr_passes import contention, cpu_snapshot
from bench.common import progress
from earshot.loadtest.caller import AgentFrame, HeadlessCaller, ReceivedEvent
from earshot.loadtest.server_process import start_server
from earshot.loadtest.stats import percentiles
from earshot.models.audio import read_audio
from earshot.server.redis_server import PrivateRedis

ONSET_GAP_S = 0.3  # an audible frame after this much inaudible agent audio starts a new stretch of speech
MAP_SLACK_S = 0.35  # a final's end this close to an end of voice belongs to it (the VAD ends up to 0.2 s late)
REPLY_TIMEOUT_S = 25.0  # after the answer's end of voice
LISTEN_TIMEOUT_S = 60.0
VAD_LATE_S = 0.5  # the VAD's last voiced frame lies up to 0.2 s after the audible end; this much later, it heard the quiet
LOST_AUDIO_S = 0.2  # a lag bound beyond this means the clocks do not count the same samples
PIPELINE_EVENTS = ("partial", "final", "speech_start", "speech_end", "pace")  # stamped with the pipeline's audio clock


@dataclass
class Answered:
    """What the caller saw while one answer was spoken and replied to (raw; `measure` reads it)."""

    item: Any  # a TurnItem
    start_clock_s: float  # where the WAV began on the caller's audio clock
    base_wall: float  # time.monotonic() of the WAV's first sample
    events: list[ReceivedEvent] = field(default_factory=list)
    onsets: list[float] = field(default_factory=list)  # walls where the interviewer became audible
    error: str = ""

    def wall(self, item_s: float) -> float:
        return self.base_wall + item_s


def audible_onsets(frames: Sequence[AgentFrame]) -> list[float]:
    onsets, last = [], None
    for frame in frames:
        if not frame.audible:
            continue
        if last is None or frame.wall - last > ONSET_GAP_S:
            onsets.append(frame.wall)
        last = frame.wall
    return onsets


def turn_state_after(caller: HeadlessCaller, wall: float) -> Optional[str]:
    states = [e for e in caller.events if e.event["type"] == "turn" and e.wall >= wall]
    return states[-1].event["state"] if states else None


async def wait_listening(caller: HeadlessCaller, since_wall: float, timeout: float) -> bool:
    def ready(c: HeadlessCaller) -> bool:
        turns = c.of_type("turn")
        if turns and turns[-1]["state"] == "ended":
            return True
        return turn_state_after(c, since_wall) == "listening" and c.track.pcm_done

    return await caller.wait_until(ready, timeout=timeout)


async def answer(caller: HeadlessCaller, item: Any, pcm: bytes) -> Answered:
    seen, first_frame = len(caller.events), len(caller.agent_frames)
    start_clock, _ = caller.say(pcm)
    while caller.track.wall_at(start_clock) is None:
        await asyncio.sleep(0.02)
    record = Answered(item, start_clock, caller.track.wall_at(start_clock))
    voice_end_wall = record.wall(item.voice_end_s)
    await asyncio.sleep(max(0.0, voice_end_wall - time.monotonic()))

    def replied(c: HeadlessCaller) -> bool:
        return any(w >= voice_end_wall for w in audible_onsets(c.agent_frames[first_frame:]))

    if not await caller.wait_until(replied, timeout=REPLY_TIMEOUT_S):
        record.error = "no reply after the answer"
    if not await wait_listening(caller, voice_end_wall, LISTEN_TIMEOUT_S):
        record.error = record.error or "the interviewer did not listen again"
    record.events = caller.events[seen:]
    record.onsets = [w for w in audible_onsets(caller.agent_frames[first_frame:]) if w >= record.base_wall]
    return record


async def interview(base_url: str, items: Sequence[Any], deadline: float) -> tuple[list[Answered], list[str]]:
    """One interview answered with `items` in order, until they run out, the interview ends or the deadline passes."""
    caller = HeadlessCaller(base_url, b"", role="software_engineer", difficulty="easy")
    await caller.connect()
    answered: list[Answered] = []
    errors: list[str] = []
    try:
        if not await caller.wait_until(lambda c: any(e["state"] == "listening" for e in c.of_type("turn")), timeout=90):
            return answered, ["the interviewer never listened"]
        for item in items:
            if time.monotonic() > deadline or any(e["state"] == "ended" for e in caller.of_type("turn")):
                break
            record = await answer(caller, item, read_audio(item.path))
            answered.append(record)
            reply = [w for w in record.onsets if w >= record.wall(item.voice_end_s)]
            progress(f"  {item.id:28s} reply {reply[0] - record.wall(item.voice_end_s) if reply else float('nan'):5.2f} s"
                     f"{'  ' + record.error if record.error else ''}")
            await asyncio.sleep(0.3)
        errors.extend(e["code"] for e in caller.of_type("error"))
    finally:
        await caller.hangup()
    return answered, errors


async def interviews(base_url: str, items: Sequence[Any], deadline: float) -> tuple[list[Answered], list[str]]:
    """As many interviews as the answers need (one ends after its last question), until the deadline."""
    answered: list[Answered] = []
    errors: list[str] = []
    while len(answered) < len(items) and time.monotonic() < deadline:
        more, problems = await interview(base_url, items[len(answered):], deadline)
        answered += more
        errors += problems
        if not more:
            break
    if len(answered) < len(items):
        errors.append(f"deadline: {len(items) - len(answered)} answers not given")
    return answered, errors


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (its threads included), from /proc; 0 where unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return 0.0


def run_mode(
    mode: str, items: Sequence[Any], data_dir: Path, budget_s: float, extra_args: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Start a server in `mode`, run one interview, stop it; the raw records and errors."""
    redis = PrivateRedis(data_dir / "redis")
    server = None
    server_cpu_s = 0.0
    started, before = time.monotonic(), cpu_snapshot()
    try:
        server = start_server(
            redis.start(), data_dir,
            extra_args=("--endpointing", mode, "--interview-questions", "40", "--interview-max-minutes", "60", *extra_args),
        )
        progress(f"live {mode}: server up in {time.monotonic() - started:.1f} s")
        answered, errors = asyncio.run(interviews(server.base_url, items, started + budget_s))
        server_cpu_s = process_cpu_s(server.process.pid)
    finally:
        if server is not None:
            server.stop()
        redis.stop()
    cpu = contention(before, cpu_snapshot())  # own_cpu_s: this process (the caller); foreign: the server and the rest
    cpu["server_cpu_s"] = server_cpu_s
    cpu["others_cpu_s"] = round(max(0.0, cpu["foreign_cpu_s"] - server_cpu_s), 2)
    return {"answered": answered, "errors": errors, "wall_s": round(time.monotonic() - started, 1), "contention": cpu}


# --- measuring -------------------------------------------------------------------------------------------------
def clock_lag_bound(answered: Sequence[Answered]) -> float:
    """How far the server's audio clock may trail the caller's, from the pipeline's events.

    An event stamped `emitted_audio_s` on the server's clock arrives when the
    caller's clock reads `audio_clock_s`: the difference is the clocks' offset
    less the audio's trip to the pipeline and the event's trip back (tens of ms
    on loopback). Its maximum over many events near zero says no audio was lost
    before the pipeline started, so the two clocks count the same samples and
    server times are placed in the caller's audio as they are. (The VAD's speech
    starts are no anchor: the quiet noise before each answer opens utterances.)
    """
    gaps = [e.event["emitted_audio_s"] - e.audio_clock_s
            for record in answered for e in record.events if e.event["type"] in PIPELINE_EVENTS]
    return round(max(gaps), 3) if gaps else 0.0


def voice_end_for(item: Any, item_s: float) -> Optional[tuple[str, float]]:
    """("end" | "mid", its end of voice) when an utterance ending at `item_s` ends at the answer's end or a designed pause."""
    if item.voice_end_s - MAP_SLACK_S <= item_s <= item.voice_end_s + item.trailing_silence_s:
        return "end", item.voice_end_s  # later than the slack: the VAD heard the quiet after it as voice
    for mid in item.pauses:
        if mid.start_s - MAP_SLACK_S <= item_s <= mid.end_s:
            return "mid", mid.start_s
    return None


def measure(record: Answered) -> dict[str, Any]:
    item = record.item
    to_item = lambda server_s: server_s - record.start_clock_s  # noqa: E731 - server clock -> seconds into the WAV
    finals, ends = [], []
    for received in record.events:
        event = received.event
        if event["type"] == "final":
            item_end = to_item(event["speech_end_audio_s"])
            where = voice_end_for(item, item_end)
            finals.append({
                "at": where[0] if where else "other",
                "item_end_s": round(item_end, 3),
                "from_voice_s": round(received.wall - record.wall(where[1]), 3) if where else None,
                "pipeline_s": round(event["emitted_audio_s"] - event["speech_end_audio_s"], 3),
                "text": event["text"],
            })
        elif event["type"] == "speech_end" and -0.5 <= to_item(event["end_s"]) <= item.voice_end_s + item.trailing_silence_s:
            ends.append({
                "utterance_id": event["utterance_id"],
                "dropped": event["dropped"],
                "item_end_s": round(to_item(event["end_s"]), 3),
                "ended_by": event.get("ended_by"),
                "turn_complete": event.get("turn_complete"),
                "inside": to_item(event["end_s"]) < item.voice_end_s - MAP_SLACK_S,
                "checks": event.get("end_of_turn_checks", []),
            })
    takeovers = []
    for wall in record.onsets:
        item_s = wall - record.base_wall
        if not item.voice_start_s < item_s < item.voice_end_s:
            continue
        mid = next((i for i, m in enumerate(item.pauses) if m.start_s <= item_s <= m.end_s + 0.6), None)
        takeovers.append({"item_s": round(item_s, 3), "at": "mid" if mid is not None else "gap", "mid_index": mid})
    replies = [w for w in record.onsets if w >= record.wall(item.voice_end_s)]
    with_final = {e.event["utterance_id"] for e in record.events if e.event["type"] == "final"}
    last_end = max((e["item_end_s"] for e in ends), default=None)
    late = None if last_end is None else last_end - item.voice_end_s
    return {
        "id": item.id,
        "kind": item.kind,
        "speech_s": round(item.voice_end_s - item.voice_start_s, 3),
        "mid_pauses": len(item.pauses),
        "reply_s": round(replies[0] - record.wall(item.voice_end_s), 3) if replies else None,
        "finals": finals,
        "speech_ends": ends,
        "takeovers": takeovers,
        "error": record.error,
        # the VAD heard the quiet after the answer as voice: its end, and all after it, came late (not the endpointing's doing)
        "vad_late_s": round(late, 3) if late is not None and late > VAD_LATE_S else None,
        "wordless_utterances": sum(1 for e in ends if not e["dropped"] and e["utterance_id"] not in with_final),
        "trace": trace(record),
    }


TRACED = ("speech_start", "speech_end", "final", "turn", "agent", "agent_audio_start", "agent_audio_end", "error")


def trace(record: Answered) -> list[str]:
    """What happened, one short line per event, in seconds from the answer's end of voice (caller's wall clock)."""
    end = record.wall(record.item.voice_end_s)
    lines = []
    for received in record.events:
        event = received.event
        kind = event["type"]
        if kind not in TRACED:
            continue
        what = {
            "speech_start": lambda e: f"start {e['start_s'] - record.start_clock_s:.2f}",
            "speech_end": lambda e: (f"{e.get('ended_by')} complete={e.get('turn_complete')} "
                                     f"end {e['end_s'] - record.start_clock_s:.2f}"),
            "final": lambda e: f"{e['text'][:40]!r}",
            "turn": lambda e: e["state"],
            "agent": lambda e: f"{e['kind']} {e['text_delta'][:30]!r}{' final' if e['final'] else ''}",
            "agent_audio_start": lambda e: f"#{e['utterance_id']}",
            "agent_audio_end": lambda e: f"#{e['utterance_id']}{' interrupted' if e['interrupted'] else ''}",
            "error": lambda e: e.get("code", ""),
        }[kind](event)
        lines.append(f"{received.wall - end:+7.2f} {kind} {what}")
    lines += [f"{w - end:+7.2f} audible" for w in record.onsets]
    return sorted(lines, key=lambda line: float(line.split()[0]))


def summarise(rows: Sequence[dict[str, Any]], lag_bound: float, errors: Sequence[str], wall_s: float) -> dict[str, Any]:
    finals = [f for r in rows for f in r["finals"]]
    ends = [e for r in rows for e in r["speech_ends"]]
    speech_min = sum(r["speech_s"] for r in rows) / 60
    mids = sum(r["mid_pauses"] for r in rows)
    mid_taken = {(r["id"], t["mid_index"]) for r in rows for t in r["takeovers"] if t["at"] == "mid"}
    ended_by: dict[str, int] = {}
    for e in ends:
        ended_by[e["ended_by"]] = ended_by.get(e["ended_by"], 0) + 1
    cut = sum(1 for f in finals if f["at"] == "mid")
    return {
        "answers": len(rows),
        "speech_min": round(speech_min, 2),
        "mid_pauses": mids,
        "clock_lag_bound_s": lag_bound,  # see clock_lag_bound: about -0.05 when no audio was lost
        "final_from_voice_s": percentiles(f["from_voice_s"] for f in finals if f["from_voice_s"] is not None),
        "final_from_voice_end_s": percentiles(f["from_voice_s"] for f in finals if f["at"] == "end"),
        "final_pipeline_s": percentiles(f["pipeline_s"] for f in finals if f["at"] in ("end", "mid")),
        "reply_s": percentiles(r["reply_s"] for r in rows if r["reply_s"] is not None),
        "takeovers": sum(len(r["takeovers"]) for r in rows),
        "takeovers_at_mid": len(mid_taken),
        "takeovers_at_gaps": sum(1 for r in rows for t in r["takeovers"] if t["at"] == "gap"),
        "mid_takeover_rate": round(len(mid_taken) / mids, 4) if mids else None,
        "answers_taken_over": sum(1 for r in rows if r["takeovers"]),
        "turn_ends_inside_answers": sum(1 for e in ends if e["inside"] and e["turn_complete"]),
        "cut_finals": cut,
        "cut_finals_per_min": round(cut / speech_min, 3) if speech_min else None,
        "ended_by": dict(sorted(ended_by.items())),
        "model_inference_s": percentiles(c["inference_s"] for e in ends for c in e["checks"]),
        "model_calls_per_answer": round(sum(len(e["checks"]) for e in ends) / max(len(rows), 1), 2),
        "answers_without_reply": sum(1 for r in rows if r["reply_s"] is None),
        "answers_vad_late": sum(1 for r in rows if r["vad_late_s"] is not None),
        "wordless_utterances": sum(r["wordless_utterances"] for r in rows),
        "errors": [r["error"] for r in rows if r["error"]] + list(errors),
        "wall_s": wall_s,
    }


def live_pass(modes: Sequence[str], items: Sequence[Any], data_root: Path, budget_s: float) -> dict[str, Any]:
    """Both modes, one after another, the same answers in the same order; summaries over the answers both got."""
    raws = {mode: run_mode(mode, items, data_root / mode, budget_s) for mode in modes}
    rows = {mode: [measure(r) for r in raw["answered"]] for mode, raw in raws.items()}
    common = set.intersection(*({r["id"] for r in mode_rows} for mode_rows in rows.values()))
    out: dict[str, Any] = {"compared": sorted(common)}
    for mode, raw in raws.items():
        bound = clock_lag_bound(raw["answered"])
        if bound < -LOST_AUDIO_S:
            raw["errors"].append(f"the server's clock trails the caller's by {-bound:.2f} s: finals may map to the wrong pause")
        shared = [r for r in rows[mode] if r["id"] in common]
        summary = summarise(shared, bound, raw["errors"], raw["wall_s"])
        out[mode] = {"summary": summary, "cpu": raw["contention"], "answers": rows[mode]}
    # The same measures on the answers whose end every mode's VAD heard in time: the endpointing's own share.
    clean = sorted(i for i in common if all(r["vad_late_s"] is None for mode in modes for r in rows[mode] if r["id"] == i))
    out["clean"] = clean
    for mode in modes:
        chosen = [r for r in rows[mode] if r["id"] in clean]
        out[mode]["clean"] = {
            "answers": len(chosen),
            "final_from_voice_end_s": percentiles(f["from_voice_s"] for r in chosen for f in r["finals"] if f["at"] == "end"),
            "reply_s": percentiles(r["reply_s"] for r in chosen if r["reply_s"] is not None),
        }
    return out
