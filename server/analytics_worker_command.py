"""`earshot analytics-worker`: join the consumer group and turn ended calls into facts until stopped.

Start as many as the calls need (each takes its own messages; `--consumer` names it in the
group, the host name and process id by default). It reads the settings the servers use
(the same Redis, storage keys and retention), loads the sentence encoder once (to judge
whether agents used the suggestions shown, and for re-scoring), re-scores calls that were recorded (server/rescoring.py:
the bigger Whisper's transcript is stored beside the live one, and the facts say which scoring the
totals used), and serves the manager's metrics at
`/metrics` on `analytics_metrics_port` (server/analytics_metrics.py). SIGTERM or Ctrl-C
stops it after the message in hand; what it had not acknowledged is taken by another
worker after `analytics_claim_idle_s`. Calls whose connection closed with no DELETE (or whose
instance died) are ended and put on the stream `analytics_abandoned_after_s` after they closed or were last
live (server/abandoned_calls.py:
each worker sweeps, each call is published once). `--until-idle` sweeps once, handles what is waiting
and exits (a batch run, and what the tests use).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from functools import lru_cache, partial
from typing import Optional

import numpy as np

from earshot.agents.call_facts import UNCLEAR_TOPIC, Scoring, Similarity
from earshot.models.encoder import SentenceEncoder
from earshot.server.abandoned_calls import AbandonedCalls
from earshot.server.analytics_metrics import AnalyticsCollector
from earshot.server.analytics_stream import RedisCallStream
from earshot.server.analytics_worker import AnalyticsWorker
from earshot.server.at_rest import Sealer
from earshot.server.cli import Command, command_redis_url
from earshot.server.encoder_service import EncoderService
from earshot.server.facts_store import FactsStore
from earshot.server.retention import Retention
from earshot.server.settings import Settings
from earshot.server.settings_sources import add_settings_arguments, settings_from_args
from earshot.server.store import SessionRecord, SessionStore, connect

log = logging.getLogger(__name__)
METRICS_REFRESH_S = 5.0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--consumer", default="", help="this worker's name in the group (default: host name and process id)")
    parser.add_argument("--until-idle", action="store_true", help="handle the messages waiting, then exit")
    add_settings_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    with command_redis_url(settings) as url:
        counts = asyncio.run(serve_worker(settings, url, consumer, args.until_idle))
    print(f"analytics worker {consumer}: {counts}")
    return 0


def cosine_similarity(encoder: SentenceEncoder) -> Similarity:
    """The sentence encoder's cosine of two texts (each text encoded once per process).

    Called from the thread that builds a call's facts; the worker handles one message at a time,
    so the encoder is never used by two threads at once.
    """

    @lru_cache(maxsize=4096)
    def vector(text: str) -> np.ndarray:
        v = np.asarray(encoder.encode([text])[0], dtype=np.float32)
        return v / (np.linalg.norm(v) or 1.0)

    return lambda a, b: float(vector(a) @ vector(b))


async def serve_worker(settings: Settings, url: str, consumer: str, until_idle: bool = False):  # -> WorkerCounts
    client = connect(url)
    sealer = Sealer.from_settings(settings)
    stream = RedisCallStream(client, consumer, settings.analytics_claim_idle_s)
    await stream.join()
    facts = FactsStore(client, sealer, settings.retention_reports_s)
    encoders = await asyncio.to_thread(EncoderService.load, settings)  # one encoder: "used" and re-scoring
    similarity = cosine_similarity(encoders.encoder)
    sessions = SessionStore(client, Retention.from_settings(settings), sealer)
    worker = AnalyticsWorker(
        stream,
        sessions,
        facts,
        similarity,
        settings.analytics_used_similarity,
        settings.analytics_max_tries,
        rescore=partial(rescore_recorded, settings, sessions, encoders),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    refresher = sweeper = None
    if settings.analytics_metrics_port and not until_idle:
        refresher = asyncio.ensure_future(_serve_metrics(settings, facts, stop))
    if settings.analytics_abandoned_after_s > 0:  # calls closed with no DELETE join the stream (abandoned_calls.py)
        abandoned = AbandonedCalls(client, settings.analytics_abandoned_after_s)
        if until_idle:
            await abandoned.sweep()
        else:
            sweeper = asyncio.ensure_future(abandoned.run(stop))
    log.info("analytics worker %s: reading %s", consumer, url.split("@")[-1])
    try:
        await worker.run(stop, until_idle=until_idle)
    finally:
        stop.set()
        for chore in (refresher, sweeper):
            if chore is not None:
                await chore
        await client.aclose()
        encoders.close()
    return worker.counts


async def rescore_recorded(
    settings: Settings, sessions: SessionStore, encoders: EncoderService, record: SessionRecord
) -> Optional[Scoring]:
    """A recorded call's transcript from the bigger Whisper, stored beside the live one; its intents and topic.

    None when the call was not recorded (or its recording is not on this worker's disk: recording_dir
    must be shared with the servers), and when the recording cannot be read (logged; the live scoring
    stands). Whisper loads on the first recorded call; the encoder is the worker's own.
    """
    from earshot.server.rescoring import NotRecorded, RecordingUnreadable, rescore_call

    try:
        rescored = await rescore_call(record.session_id, settings, encoders=encoders)
    except NotRecorded:
        return None
    except RecordingUnreadable as exc:
        log.warning("analytics: session %s: recording unreadable, live scoring kept: %s", record.session_id, exc)
        return None
    await sessions.save_rescored(record.session_id, rescored.to_dict())
    topic = rescored.topic
    return Scoring(
        source="rescored",
        model=rescored.model,
        intent_counts=dict(rescored.intent_counts),
        topic=topic.name if topic is not None else None,
        topic_label=topic.label if topic is not None else UNCLEAR_TOPIC,
        topic_score=round(topic.score, 3) if topic is not None else None,
    )


async def _serve_metrics(settings: Settings, facts: FactsStore, stop: asyncio.Event) -> None:
    from prometheus_client import start_http_server

    collector = AnalyticsCollector()
    server, thread = start_http_server(settings.analytics_metrics_port, settings.internal_host, registry=collector.registry)
    log.info("analytics metrics on http://%s:%d/metrics", settings.internal_host, settings.analytics_metrics_port)
    try:
        while not stop.is_set():
            try:
                collector.update(await facts.totals())
            except Exception as exc:  # noqa: BLE001 - Redis away: the last snapshot stays
                log.warning("analytics metrics: totals not read: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), METRICS_REFRESH_S)
            except asyncio.TimeoutError:
                pass
    finally:
        server.shutdown()
        thread.join(timeout=2.0)


COMMAND = Command(
    help="turn ended calls into per-call facts and the manager's metrics (a Redis Streams consumer)",
    add_arguments=_add_arguments,
    run=_run,
    description="Join the analytics consumer group and store the facts of every ended call, once.",
)
