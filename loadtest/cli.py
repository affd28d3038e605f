"""`earshot loadtest`: arguments, the optional private server, and the report at the end.

Registered as the `loadtest` command of `earshot` through an entry point
(pyproject.toml): the load tester depends on the product, never the reverse.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlparse

from earshot.loadtest.faults import FAULT_KINDS
from earshot.loadtest.runner import LoadTest, LoadTestConfig, LoadTestError
from earshot.loadtest.script import ScriptError, load_clips
from earshot.loadtest.slo import Slo
from earshot.models.audio import AudioFormatError
from earshot.server.cli import Command

# The speech corpus beside a checkout (../shared/corpus from the repository root), or EARSHOT_CORPUS.
DEFAULT_AUDIO = Path(os.environ.get("EARSHOT_CORPUS", Path("..") / "shared" / "corpus")) / "utterances"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_loadtest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the Earshot server to load")
    parser.add_argument("--serve", action="store_true", help="start a private server (and Redis) for the run instead of --url")
    parser.add_argument("--sessions", default="1,2,4,8", help="concurrent sessions per level, e.g. 1,2,4,8")
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO,
                        help="an audio file in any format FFmpeg reads (WAV, FLAC, MP3, M4A, Ogg, Opus...) or a folder of them "
                             "(references from manifest.tsv or NAME.txt)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of speech each caller streams per level")
    parser.add_argument("--ramp-up", type=float, default=5.0, help="seconds over which a level's callers start")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds of silence between clips")
    parser.add_argument("--mode", choices=("transcribe", "interview"), default="transcribe",
                        help="interview: answer the interviewer turn by turn and time its replies")
    parser.add_argument("--max-calls", type=int, default=None, help="stop before a level would exceed this many calls in all")
    parser.add_argument("--slo", default=None, help="e.g. 'p95 final_latency <= 1.5'; the report gives the capacity under it")
    parser.add_argument("--search", action="store_true", help="with --slo: bisect between the passing and failing levels")
    parser.add_argument("--faults", default="", help=f"comma-separated fault callers to run beside a normal level: {', '.join(FAULT_KINDS)} or all")
    parser.add_argument("--fault-sessions", type=int, default=None, help="normal callers beside the faults (default: smallest level >= 2)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds a call waits for its last final after its audio")
    parser.add_argument("--seed", type=int, default=1, help="seed of each caller's clip order")
    parser.add_argument("--out", type=Path, default=Path("loadtest-results"), help="folder for the JSON, PNG and HTML report")
    parser.add_argument("--name", default="loadtest", help="file name stem of the report")
    parser.add_argument("--fail-below", type=int, default=None, help="with --slo: exit 1 when the capacity is below this")


def run_loadtest(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        clips = load_clips(args.audio)
    except (ValueError, ScriptError, AudioFormatError) as exc:
        print(f"earshot loadtest: error: {exc}", file=sys.stderr)
        return 2
    if config.loopback:
        from earshot.server.ice import restrict_ice_to_loopback  # the server's own ICE rules, for callers on this box

        restrict_ice_to_loopback()
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the progress line
    try:
        with private_server(args.serve) as url:
            if url is not None:
                config = LoadTestConfig(**{**config.__dict__, "url": url})
            report = asyncio.run(LoadTest(config, clips).run())
    except LoadTestError as exc:
        print(f"earshot loadtest: error: {exc}", file=sys.stderr)
        return 2
    from earshot.loadtest.report import format_table, write_report

    paths = write_report(report, args.out, args.name)
    print(format_table(report))
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    capacity = (report.get("capacity") or {}).get("sessions")
    if args.fail_below is not None and (capacity or 0) < args.fail_below:
        print(f"earshot loadtest: capacity {capacity} is below {args.fail_below}", file=sys.stderr)
        return 1
    return 0


def config_from_args(args: argparse.Namespace) -> LoadTestConfig:
    try:
        levels = tuple(int(part) for part in args.sessions.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--sessions must be numbers separated by commas, got {args.sessions!r}") from None
    faults = tuple(FAULT_KINDS) if args.faults.strip() == "all" else tuple(f.strip() for f in args.faults.split(",") if f.strip())
    host = urlparse(args.url).hostname or ""
    return LoadTestConfig(
        url=args.url.rstrip("/"),
        audio=args.audio,
        levels=levels,
        duration_s=args.duration,
        ramp_up_s=args.ramp_up,
        gap_s=args.gap,
        mode=args.mode,
        max_calls=args.max_calls,
        slo=Slo.parse(args.slo) if args.slo else None,
        search=args.search,
        faults=faults,
        fault_sessions=args.fault_sessions,
        settle_s=args.settle,
        seed=args.seed,
        loopback=args.serve or host in LOOPBACK_HOSTS,
    )


@contextlib.contextmanager
def private_server(wanted: bool) -> Iterator[Optional[str]]:
    """A server of the run's own (settings from EARSHOT_* in the environment), or None."""
    if not wanted:
        yield None
        return
    from earshot.loadtest.server_process import start_server
    from earshot.server.redis_server import PrivateRedis

    with tempfile.TemporaryDirectory(prefix="earshot-loadtest-") as folder:
        redis = PrivateRedis(Path(folder))
        redis_url = redis.start()
        server = None
        try:
            server = start_server(redis_url, Path(folder))
            print(f"earshot loadtest: private server at {server.base_url}", file=sys.stderr)
            yield server.base_url
        finally:
            if server is not None:
                server.stop()
            redis.stop()


COMMAND = Command(
    help="many real WebRTC callers against a server: latency percentiles, capacity, plots",
    description="Levels of concurrent headless callers streaming corpus speech in real time as Opus.",
    add_arguments=add_loadtest_arguments,
    run=run_loadtest,
)
