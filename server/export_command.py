"""`earshot export --since WHEN [--until WHEN] --format csv|jsonl [--out FILE]`: ended calls' facts for BI tools.

`earshot export corrections [--since WHEN] [--out FILE]`: agents' intent corrections as JSON lines
(models/intent_feedback.py), what `earshot train-intent --feedback-file` reads: train where the
data may go, away from the servers. Corrections hold the corrected utterances' words.

    jsonl   one call's whole facts per line (CallFacts.to_dict(): intents with their times,
            both scorings when a call was re-scored, suggestions and whether they were used)
    csv     one flat row per call (agents/call_facts.export_row), a header first

WHEN is an ISO date or time (2026-12-01, 2026-12-01T09:00, UTC unless it says otherwise),
a unix time, or an age: 90m, 24h, 7d. Newest calls first. It reads the Redis the servers
use with their storage keys (facts are sealed at rest), and writes no words of any call:
facts hold none.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import re
import sys
import time
from pathlib import Path
from datetime import datetime, timezone
from typing import Any, TextIO

from earshot.agents.call_facts import EXPORT_COLUMNS, export_row
from earshot.server.at_rest import Sealer
from earshot.server.cli import Command, CommandError, command_redis_url
from earshot.server.facts_store import FactsStore
from earshot.server.settings import Settings
from earshot.server.settings_sources import add_settings_arguments, settings_from_args
from earshot.server.store import connect

FORMATS = ("csv", "jsonl")
WHAT = ("calls", "corrections")
AGE = re.compile(r"(\d+(?:\.\d+)?)([mhd])")
AGE_UNITS = {"m": 60, "h": 3600, "d": 86400}
MOST = 1_000_000


def parse_when(text: str, now: float) -> float:
    """A time given as ISO date/time, unix seconds, or an age (90m, 24h, 7d); CommandError when it is none."""
    text = text.strip()
    age = AGE.fullmatch(text)
    if age:
        return now - float(age.group(1)) * AGE_UNITS[age.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{text!r} is not a time: give an ISO date or time (2026-12-01T09:00), "
                           "unix seconds, or an age such as 24h or 7d") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=WHAT, default="calls",
                        help="calls (their facts; the default) or corrections (agents' intent corrections, JSON lines)")
    parser.add_argument("--since", default="", help="calls that ended (corrections made) at or after this (2026-12-01, 24h, 7d, unix time); required for calls")
    parser.add_argument("--until", default="", help="and at or before this (default: now)")
    parser.add_argument("--format", choices=FORMATS, default="jsonl", help="csv (one flat row per call) or jsonl (whole facts)")
    parser.add_argument("--out", default="-", help="file to write (default: standard output)")
    add_settings_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    now = time.time()
    if args.what == "calls" and not args.since:
        raise CommandError("exporting calls needs --since (2026-12-01, 24h, 7d, or unix time)")
    since = parse_when(args.since, now) if args.since else 0.0
    until = parse_when(args.until, now) if args.until else now
    if until < since:
        raise CommandError("--until is before --since")
    if args.what == "corrections":
        return _export_corrections(settings, since, until, args.out)
    with command_redis_url(settings) as url:
        calls = asyncio.run(_read(settings, url, since, until))
    if args.out == "-":
        write_calls(calls, args.format, sys.stdout)
    else:
        with open(args.out, "w", encoding="utf-8", newline="") as out:
            write_calls(calls, args.format, out)
    print(f"earshot export: {len(calls)} calls", file=sys.stderr)
    return 0


def _export_corrections(settings: Settings, since: float, until: float, out: str) -> int:
    from earshot.models.intent_feedback import write_jsonl, write_lines
    from earshot.server.feedback_store import load_corrections

    corrections = [c for c in load_corrections(settings) if since <= c.at <= until]
    if out == "-":
        write_lines(sys.stdout, corrections)
    else:
        write_jsonl(Path(out), corrections)
    print(f"earshot export: {len(corrections)} corrections", file=sys.stderr)
    return 0


async def _read(settings: Settings, url: str, since: float, until: float) -> list[dict[str, Any]]:
    client = connect(url)
    try:
        return await FactsStore(client, Sealer.from_settings(settings), settings.retention_reports_s).ended_between(
            since, until, MOST
        )
    finally:
        await client.aclose()


def write_calls(calls: list[dict[str, Any]], form: str, out: TextIO) -> None:
    if form == "jsonl":
        for facts in calls:
            out.write(json.dumps(facts, ensure_ascii=False) + "\n")
        return
    rows = [export_row(facts) for facts in calls]
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


COMMAND = Command(
    help="write ended calls' facts as CSV or JSON lines, for BI tools",
    add_arguments=_add_arguments,
    run=_run,
    description="Export the facts of calls that ended in a time range, as CSV rows or JSON lines.",
)
