"""`earshot loadtest`: levels of concurrent real WebRTC callers against one server.

    for each level (e.g. 1, 2, 4, 8 sessions):
        start that many HeadlessCallers, spread over the ramp-up
        each streams corpus speech in real time as Opus for the duration
        scrape /metrics every second meanwhile
        wait for the last finals, hang up, wait for the server to free the calls
    then: capacity (largest level meeting the SLO), optional bisection,
          optional fault callers beside a normal level
    -> a table on stdout, JSON + PNG + HTML in the output folder

Everything is bounded: each call by the level's deadline, each level by
ramp-up + duration + settle time, the run by `max_calls`. A call that fails
is counted with its error code; the run goes on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import logging
import os
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import httpx

from earshot.loadtest.caller import ApiCallError, HeadlessCaller, credential_headers
from earshot.loadtest.faults import FAULT_KINDS, FaultResult, run_fault
from earshot.loadtest.measure import MATCH_SLACK_S, CallRecord, measure_call, summarize_level
from earshot.loadtest.progress import Progress, bar
from earshot.loadtest.scrape import MetricsScraper
from earshot.loadtest.script import Clip, PlacedClip, interview_answers, lay_out, render
from earshot.loadtest.slo import Slo, capacity_of, search_capacity
from earshot.loadtest.wer import method as wer_method

log = logging.getLogger(__name__)

SCHEMA = "earshot-loadtest/1"
MODES = ("transcribe", "interview")
CONNECT_TIMEOUT_S = 30.0
HANGUP_TIMEOUT_S = 10.0
SERVER_IDLE_TIMEOUT_S = 30.0
AGENT_QUIET_S = 0.8  # interview mode: the interviewer is done when its audio has been quiet this long
AGENT_TURN_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class LoadTestConfig:
    url: str
    audio: Path
    levels: tuple[int, ...] = (1, 2, 4, 8)
    duration_s: float = 60.0  # audio each caller streams
    ramp_up_s: float = 5.0  # the level's callers start spread over this
    gap_s: float = 1.0  # silence between clips (transcribe mode)
    mode: str = "transcribe"  # interview: take turns with the interviewer and time its replies
    role: str = "software_engineer"
    max_calls: Optional[int] = None  # bound on calls over the whole run
    slo: Optional[Slo] = None
    search: bool = False  # bisect between the last level that met the SLO and the first that did not
    faults: tuple[str, ...] = ()
    fault_sessions: Optional[int] = None  # normal callers beside the faults; default: the smallest level >= 2
    settle_s: float = 8.0  # after the audio, how long a call waits for its last final
    loopback: bool = True  # callers offer only 127.0.0.1 ICE candidates (the fault caller's own process too)
    seed: int = 1

    def __post_init__(self) -> None:
        if not self.levels or any(n < 1 for n in self.levels):
            raise ValueError("--sessions needs levels of at least 1 session, e.g. 1,2,4,8")
        if self.mode not in MODES:
            raise ValueError(f"--mode must be one of {', '.join(MODES)}")
        if self.duration_s < 2:
            raise ValueError("--duration must be at least 2 seconds")
        unknown = [f for f in self.faults if f not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault {unknown[0]!r}; known: {', '.join(FAULT_KINDS)}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(audio=str(self.audio), levels=list(self.levels), faults=list(self.faults))
        data["slo"] = self.slo.describe() if self.slo else None
        return data


@dataclass
class RunState:
    """What the progress line shows."""

    level: int = 0
    levels: int = 0
    sessions: int = 0
    started: int = 0
    connected: int = 0
    finals: int = 0
    errors: int = 0
    level_started: float = field(default_factory=time.monotonic)
    level_length_s: float = 0.0

    def line(self) -> str:
        elapsed = time.monotonic() - self.level_started
        return (
            f"level {self.level}/{self.levels} {self.sessions:>3} sessions {bar(elapsed, self.level_length_s)} "
            f"{elapsed:5.0f}/{self.level_length_s:.0f} s  started {self.started} connected {self.connected} "
            f"finals {self.finals} errors {self.errors}"
        )


class LoadTest:
    def __init__(self, config: LoadTestConfig, clips: list[Clip], progress: Optional[Progress] = None) -> None:
        self.config = config
        self.clips = clips
        self.progress = progress or Progress()
        self.state = RunState()
        self.calls_made = 0
        self.run_origin = time.monotonic()

    # --- the whole run ---------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        config = self.config
        started = dt.datetime.now(dt.timezone.utc)
        self.run_origin = time.monotonic()
        async with httpx.AsyncClient(base_url=config.url, timeout=10, headers=credential_headers()) as http:
            server = await self._server_info(http)
            levels: list[dict[str, Any]] = []
            planned = list(config.levels)
            self.state.levels = len(planned)
            for sessions in planned:
                if not self._budget_allows(sessions):
                    log.warning("stopping before %d sessions: --max-calls %s reached", sessions, config.max_calls)
                    break
                levels.append(await self._run_level(http, sessions))
            capacity = None
            if config.slo is not None:
                if config.search:
                    await search_capacity(levels, config.slo, functools.partial(self._run_extra_level, http), self._budget_allows)
                capacity = {"sessions": capacity_of(levels, config.slo), "tried": [lv["sessions"] for lv in levels]}
            faults: list[dict[str, Any]] = []
            if config.faults and self._budget_allows(self._fault_sessions()):
                fault_level, faults = await self._run_fault_level(http)
                levels.append(fault_level)
            server_after = await self._server_after(http)
        return {
            "schema": SCHEMA,
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "config": config.to_json(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), "server": server},
            "slo": asdict(config.slo) if config.slo else None,
            "capacity": capacity,
            "wer_method": wer_method(),
            "levels": levels,
            "faults": faults,
            "server_after": server_after,
        }

    def _budget_allows(self, sessions: int) -> bool:
        return self.config.max_calls is None or self.calls_made + sessions <= self.config.max_calls

    async def _run_extra_level(self, http: httpx.AsyncClient, sessions: int) -> dict[str, Any]:
        """A level the capacity search adds to the planned ones."""
        self.state.levels += 1
        return await self._run_level(http, sessions)

    def _fault_sessions(self) -> int:
        if self.config.fault_sessions is not None:
            return self.config.fault_sessions
        return min((n for n in self.config.levels if n >= 2), default=self.config.levels[0])

    async def _run_fault_level(self, http: httpx.AsyncClient) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        self.state.levels += 1
        clip = self.clips[0].path
        fault_tasks = [asyncio.ensure_future(run_fault(kind, self.config.url, clip, self.config.loopback)) for kind in self.config.faults]
        level = await self._run_level(http, self._fault_sessions(), with_faults=True)
        results: list[FaultResult] = await asyncio.gather(*fault_tasks)
        await self._wait_for_idle_server(http)
        level["server"]["live_sessions_after"] = await self._live_sessions(http)
        return level, [asdict(r) for r in results]

    # --- one level -------------------------------------------------------------------------
    async def _run_level(self, http: httpx.AsyncClient, sessions: int, with_faults: bool = False) -> dict[str, Any]:
        config = self.config
        self.calls_made += sessions
        state = self.state
        state.level += 1
        state.sessions, state.started, state.connected, state.finals, state.errors = sessions, 0, 0, 0, 0
        # interview answers wait for the interviewer's turns, so give them room
        talk_s = config.duration_s * (2.5 if config.mode == "interview" else 1.0)
        state.level_length_s = config.ramp_up_s + talk_s + config.settle_s
        deadline_s = state.level_length_s + CONNECT_TIMEOUT_S + 30.0
        scraper = MetricsScraper(http)
        await scraper.scrape_once()
        origin = time.monotonic()
        loadgen_cpu_start = time.process_time()
        state.level_started = origin
        scrape_task = asyncio.ensure_future(scraper.run())
        records = [CallRecord(call=i) for i in range(sessions)]
        tasks = [
            asyncio.ensure_future(self._call(record, delay=config.ramp_up_s * i / sessions, origin=origin))
            for i, record in enumerate(records)
        ]
        try:
            pending = set(tasks)
            while pending and time.monotonic() - origin < deadline_s:
                _, pending = await asyncio.wait(pending, timeout=0.5)
                state.finals = sum(1 for r in records for e in r.events if e.event.get("type") == "final")
                self.progress.show(state.line())
            for task in pending:  # past the deadline: cut off, and say so
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            scrape_task.cancel()
            await asyncio.gather(scrape_task, return_exceptions=True)
        wall_s = time.monotonic() - origin
        loadgen_cpu_percent = round(100.0 * (time.process_time() - loadgen_cpu_start) / wall_s, 1)
        idle_after = await self._wait_for_idle_server(http)
        await scraper.scrape_once()
        measures = [measure_call(record) for record in records]
        level = summarize_level(sessions, records, measures, scraper, origin, wall_s, idle_after)
        level["started_at_s"] = round(origin - self.run_origin, 2)
        level["with_faults"] = with_faults
        level["loadgen_cpu_percent"] = loadgen_cpu_percent  # the callers' own CPU (Opus, DTLS), 100 = one core
        level["meets_slo"] = config.slo.met_by(level) if config.slo else None
        final = level["latency"]["final_latency_s"]
        self.progress.done(
            f"level {sessions} sessions{' + faults' if with_faults else ''}: {level['calls']['completed']}/{sessions} ok, "
            f"final p50 {_fmt(final['p50'])} p95 {_fmt(final['p95'])} s, errors {sum(level['errors'].values())}"
            + (f", calls per instance {level['instances']}" if len(level["instances"]) > 1 else "")
        )
        return level

    async def _call(self, record: CallRecord, delay: float, origin: float) -> None:
        config = self.config
        await asyncio.sleep(delay)
        record.started_at_s = round(time.monotonic() - origin, 3)
        self.state.started += 1
        # The same level gets the same clips in every run, whatever other levels ran before it.
        seed = config.seed * 10007 + record.call * 101 + self.state.sessions
        placed = lay_out(self.clips, config.duration_s, config.gap_s, seed) if config.mode != "interview" else []
        caller = HeadlessCaller(config.url, render(placed), role=config.role, mode=config.mode)
        try:
            try:
                await asyncio.wait_for(caller.connect(), CONNECT_TIMEOUT_S)
            except ApiCallError as exc:
                record.errors.append(f"http_{exc.status}:{_code(exc.body)}")
                return
            except (asyncio.TimeoutError, httpx.HTTPError, OSError, ConnectionError) as exc:
                record.errors.append("connect_failed")
                log.warning("call %d: could not connect: %r", record.call, exc)
                return
            record.session_id, record.connect_s = caller.session_id, caller.connect_s
            record.wall_at = caller.track.wall_at
            self.state.connected += 1
            if config.mode == "interview":
                await self._converse(caller, record, random.Random(seed))
            else:
                record.placed = placed
                await self._play_out(caller, placed)
            await caller.wait_until(lambda c: _last_clip_final(c, record.placed), timeout=config.settle_s)
        except asyncio.CancelledError:
            record.errors.append("cut_off")  # past the level's deadline
        except Exception as exc:  # one broken call must not end the run: count it
            log.exception("call %d failed", record.call)
            record.errors.append(f"call_failed:{type(exc).__name__}")
        finally:
            record.events, record.agent_frames = caller.events, caller.agent_frames
            if any(r.event.get("type") == "error" for r in caller.events):
                self.state.errors += 1
            try:
                await asyncio.wait_for(caller.hangup(), HANGUP_TIMEOUT_S)
            except Exception as exc:
                log.warning("call %d: hangup: %r", record.call, exc)

    async def _play_out(self, caller: HeadlessCaller, placed: list[PlacedClip]) -> None:
        """Wait while the track streams the whole script in real time."""
        while caller.track.wall_at(0.0) is None:
            await asyncio.sleep(0.05)
        if placed:
            end = placed[-1].start_s + placed[-1].clip.seconds
            await asyncio.sleep(max(0.0, caller.track.wall_at(end) - time.monotonic()))

    async def _converse(self, caller: HeadlessCaller, record: CallRecord, rng: random.Random) -> None:
        """Interview mode: listen to the interviewer, answer with the next clip when it falls quiet."""
        clips = interview_answers(self.clips)
        rng.shuffle(clips)
        for clip in itertools.cycle(clips):
            await _wait_for_agent_turn(caller)
            if record.placed and caller.track.audio_clock_s + clip.seconds > self.config.duration_s:
                return
            start, end = caller.say(clip.pcm16)
            record.placed.append(PlacedClip(clip, start))
            while caller.track.wall_at(end) is None:
                await asyncio.sleep(0.05)
            await asyncio.sleep(max(0.0, caller.track.wall_at(end) - time.monotonic()))

    # --- server state ------------------------------------------------------------------
    async def _server_info(self, http: httpx.AsyncClient) -> dict[str, Any]:
        try:
            response = await http.get("/healthz")
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise LoadTestError(f"no Earshot server answers at {self.config.url}: {exc}") from None

    async def _server_after(self, http: httpx.AsyncClient) -> dict[str, Any]:
        """What the server holds once every caller is gone: nothing live, memory back near its start."""
        scraper = MetricsScraper(http)
        scrape = await scraper.scrape_once()
        return {
            "live_sessions": await self._live_sessions(http),
            "rss_mib": round(scrape.rss_bytes / 2**20, 1) if scrape else None,
            "asr_queue_depth": scrape.asr_queue_depth if scrape else None,
        }

    async def _live_sessions(self, http: httpx.AsyncClient) -> int:
        try:
            return int((await http.get("/healthz")).json().get("live_sessions", -1))
        except (httpx.HTTPError, ValueError):
            return -1

    async def _wait_for_idle_server(self, http: httpx.AsyncClient) -> int:
        """Until the server holds no live call (or the timeout); returns what it still holds."""
        deadline = time.monotonic() + SERVER_IDLE_TIMEOUT_S
        while (live := await self._live_sessions(http)) != 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        return live


class LoadTestError(RuntimeError):
    """The load test cannot run at all (no server, no audio); the message says why."""


async def _wait_for_agent_turn(caller: HeadlessCaller) -> None:
    """Wait for the interviewer to speak, then for its audio to go quiet (or give up after a while)."""
    since = time.monotonic()
    spoke = await caller.wait_until(lambda c: bool(c.audible_frames(after_wall=since)), timeout=AGENT_TURN_TIMEOUT_S)
    if not spoke:
        return
    while True:
        frames = caller.audible_frames(after_wall=since)
        quiet_for = time.monotonic() - frames[-1].wall if frames else AGENT_QUIET_S
        if quiet_for >= AGENT_QUIET_S or time.monotonic() - since > 3 * AGENT_TURN_TIMEOUT_S:
            return
        await asyncio.sleep(AGENT_QUIET_S - quiet_for + 0.02)


def _last_clip_final(caller: HeadlessCaller, placed: list[PlacedClip]) -> bool:
    if not placed:
        return True
    last_end = placed[-1].speech_end_s
    return any(e["end"] >= last_end - MATCH_SLACK_S for e in caller.of_type("final"))


def _code(body: Any) -> str:
    """The code of the server's `{"error": {"code": ...}}` body."""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code", "error")) if isinstance(error, dict) else "error"


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"
