"""`earshot serve`: start Redis (or connect to it), load the models, serve until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Optional

from earshot.models.model_files import ModelMissingError
from earshot.server.cli import Command
from earshot.server.errors import StartupError
from earshot.server.settings import Settings
from earshot.server.settings_sources import add_settings_arguments, settings_from_args
from earshot.server.store import SessionStore, StoreUnavailable, connect

log = logging.getLogger(__name__)


def run_server(settings: Settings) -> int:
    import uvicorn

    from earshot.models.asr import AsrEngine
    from earshot.models.llm import load_llm
    from earshot.server.api import AppState
    from earshot.server.app import create_app
    from earshot.server.calls import LiveCalls
    from earshot.server.configs import asr_config, llm_config
    from earshot.server.encoder_service import EncoderService
    from earshot.server.ice import restrict_ice_to_loopback
    from earshot.server.metrics import ServerMetrics
    from earshot.server.modes import load_modes
    from earshot.server.redis_server import PrivateRedis, RedisStartError

    private: Optional[PrivateRedis] = None
    url = settings.redis_url
    if not url:
        private = PrivateRedis(settings.data_dir, maxmemory=settings.redis_maxmemory)
        try:
            url = private.start()
        except RedisStartError as exc:
            raise StartupError(str(exc)) from None
        log.info("private Redis at %s", url)
    try:
        asyncio.run(_check_store(url))
        if settings.ice_loopback_only:
            restrict_ice_to_loopback()
        engine = AsrEngine.load(asr_config(settings))
        log.info("ASR model %s loaded", settings.asr_model)
        store = SessionStore(connect(url), settings.session_ttl_s)
        encoders = EncoderService.load(settings)
        log.info("sentence encoder loaded; intent head %s", "on" if encoders.intents else "off")
        try:
            llm = load_llm(llm_config(settings))
        except ModelMissingError as exc:
            raise StartupError(str(exc)) from None
        modes = load_modes(settings, store, encoders, llm)
        log.info("call modes ready (%s); LLM %s", ", ".join(modes), llm.name)
        calls = LiveCalls()
        metrics = ServerMetrics(live_sessions=lambda: len(calls), asr_queue_depth=lambda: engine.queue_depth)
        engine.observe(metrics.observe_decode)
        app = create_app(AppState(settings, store, engine, encoders, llm, modes, metrics, calls))
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", lifespan="on")
        log.info("Earshot listening on http://%s:%d", settings.host, settings.port)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it; with this handler that
        # becomes SystemExit, so the finally below still stops the private Redis.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        uvicorn.Server(config).run()
        engine.close()
    finally:
        if private is not None:
            private.stop()
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _check_store(url: str) -> None:
    store = SessionStore(connect(url), ttl_s=1)
    try:
        await store.ping()
    except StoreUnavailable as exc:
        raise StartupError(f"cannot reach Redis at {url}: {exc.__cause__ or exc}") from None
    finally:
        await store.close()


def _run(args: argparse.Namespace) -> int:
    return run_server(settings_from_args(args))


COMMAND = Command(help="run the HTTP + WebRTC server", add_arguments=add_settings_arguments, run=_run)
