"""`earshot serve`: start Redis (or connect to it), load the models, serve until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from typing import TYPE_CHECKING, Any, Optional

from earshot.models.model_files import ModelMissingError
from earshot.server.configs import end_of_turn_config
from earshot.server.at_rest import Sealer
from earshot.server.cli import Command
from earshot.server.errors import StartupError
from earshot.server.machine_names import is_loopback
from earshot.server.retention import Retention
from earshot.server.settings import Settings
from earshot.server.settings_sources import add_settings_arguments, settings_from_args
from earshot.server.store import SessionStore, StoreUnavailable, connect

if TYPE_CHECKING:
    import uvicorn

    from earshot.models.redaction.redactor import Redactor
    from earshot.models.turn_model import EndOfTurnModel

log = logging.getLogger(__name__)


def run_server(settings: Settings) -> int:
    from earshot.models.asr import AsrEngine
    from earshot.models.llm import load_llm
    from earshot.server.api import AppState
    from earshot.server.app import create_app, create_internal_app
    from earshot.server.auth import Authenticator
    from earshot.server.calls import LiveCalls
    from earshot.server.configs import asr_config, llm_config
    from earshot.server.draining import DrainingServer, drain
    from earshot.server.encoder_service import EncoderService
    from earshot.server.ice import restrict_ice_as_configured
    from earshot.server.metrics import ServerMetrics
    from earshot.server.modes import load_modes
    from earshot.server.redis_server import PrivateRedis, RedisStartError
    from earshot.server.tls import serving_tls

    check_exposure(settings)
    auth = Authenticator.from_settings(settings)
    sealer = Sealer.from_settings(settings)  # the key file is made on first start; a bad one stops the start
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
        asyncio.run(_check_store(url, settings, sealer))
        tls = serving_tls(settings)
        restrict_ice_as_configured(settings)
        end_of_turn = load_end_of_turn(settings)  # before the slow loads: a missing file stops the start at once
        engine = AsrEngine.load(asr_config(settings))
        log.info("ASR model %s loaded", settings.asr_model)
        store = SessionStore(connect(url), Retention.from_settings(settings), sealer)
        encoders = EncoderService.load(settings)
        log.info("sentence encoder loaded; intent head %s", "on" if encoders.intents else "off")
        try:
            llm = load_llm(llm_config(settings))
        except ModelMissingError as exc:
            raise StartupError(str(exc)) from None
        modes = load_modes(settings, store, encoders, llm)
        redactor = load_redactor(settings)
        log.info("call modes ready (%s); LLM %s", ", ".join(modes), llm.name)
        calls = LiveCalls()
        metrics = ServerMetrics(live_sessions=lambda: len(calls), asr_queue_depth=lambda: engine.queue_depth, llm=llm, modes=modes)
        engine.observe(metrics.observe_decode)
        state = AppState(settings, store, engine, encoders, llm, modes, metrics, calls, auth=auth, redactor=redactor,
            end_of_turn=end_of_turn,
        )
        app = create_app(state)
        config = _http_config(
            settings, app, settings.host, settings.port, lifespan="on",
            ssl_certfile=tls.cert if tls else None, ssl_keyfile=tls.key if tls else None,
        )
        log.info("Earshot listening on %s://%s:%d", "https" if tls else "http", settings.host, settings.port)
        # SIGTERM drains first (DrainingServer); uvicorn then shuts down gracefully and re-raises
        # the signals it took; with this handler that becomes SystemExit, so the finally below
        # still stops the private Redis.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        internal = None
        if settings.internal_port:
            internal = _http_config(
                settings, create_internal_app(state), settings.internal_host, settings.internal_port, lifespan="off",
            )
            log.info("/metrics and /healthz (detailed) on http://%s:%d", settings.internal_host, settings.internal_port)
        # SIGHUP loads the intent heads again (server/intent_reload.py); calls go on.
        _serve(DrainingServer(config, lambda: drain(state), on_hangup=state.intent_reload.reload_logged), internal)
        engine.close()
    finally:
        if private is not None:
            private.stop()
    return 0


def _http_config(settings: Settings, app: Any, host: str, port: int, **options: Any) -> "uvicorn.Config":
    """What every port of the server shares: no `server` banner, request heads due within header_timeout_s."""
    import uvicorn

    from earshot.server.http_protocol import with_header_timeout

    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", server_header=False,
        http=with_header_timeout(settings.header_timeout_s), **options,
    )


def load_redactor(settings: Settings) -> "Optional[Redactor]":
    """The redactor, when any call mode redacts (the settings' redact_*); else None, and Presidio stays unloaded."""
    from earshot.server.configs import redacted_kinds
    from earshot.server.modes import MODE_KINDS

    modes = [name for name in MODE_KINDS if redacted_kinds(settings, name)]
    if not modes:
        log.info("redaction off in every mode")
        return None
    from earshot.models.redaction.redactor import Redactor

    redactor = Redactor.load()  # it logs its load time
    log.info("redacting personal data in %s calls", ", ".join(modes))
    return redactor


def load_end_of_turn(settings: Settings) -> "Optional[EndOfTurnModel]":
    """The end-of-turn model with `--endpointing model`; None with silence. A model that will not load stops the start."""
    if settings.endpointing != "model":
        log.info("endpointing by silence: %d ms ends an utterance, %d ms more the turn",
                 settings.end_of_speech_ms, settings.turn_pause_ms)
        return None
    from earshot.models.turn_model import EndOfTurnModel

    started = time.perf_counter()
    try:
        model = EndOfTurnModel.load(end_of_turn_config(settings))
    except ModelMissingError as exc:  # it names the path and the package to install
        raise StartupError(f"{exc} (or run with --endpointing silence)") from None
    log.info("end-of-turn model %s loaded in %.2f s; asked at %s ms of silence, fallback %d ms",
             model.model_path, time.perf_counter() - started, settings.end_of_turn_checks_ms,
             settings.end_of_turn_fallback_ms)
    return model


def check_exposure(settings: Settings) -> None:
    """auth none serves anyone who reaches the port: only on loopback, unless the user insists."""
    if settings.auth == "none" and not settings.insecure_allow_anyone and not is_loopback(settings.host):
        raise StartupError(
            f"--auth none on {settings.host} would let anyone who reaches this address use the server; "
            "use --auth on (with --oidc-issuer or --api-keys-file), bind a loopback address (--host 127.0.0.1), "
            "or pass --insecure-allow-anyone"
        )


def _serve(main: "uvicorn.Server", internal: "Optional[uvicorn.Config]") -> None:
    import uvicorn

    if internal is None:
        main.run()
        return
    asyncio.run(_serve_both(main, uvicorn.Server(internal)))


async def _serve_both(main: "uvicorn.Server", internal: "uvicorn.Server") -> None:
    # Each server takes SIGINT/SIGTERM while it serves and hands them on when it stops: the
    # internal one starts first, so the main one holds the signals, and its stop stops both.
    side = asyncio.ensure_future(internal.serve())
    await asyncio.sleep(0)
    try:
        await main.serve()
    finally:
        internal.should_exit = True
        await side


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _check_store(url: str, settings: Settings, sealer: Sealer) -> None:
    store = SessionStore(connect(url), Retention.from_settings(settings), sealer)
    try:
        await store.ping()
    except StoreUnavailable as exc:
        raise StartupError(f"cannot reach Redis at {url}: {exc.__cause__ or exc}") from None
    finally:
        await store.close()


def _run(args: argparse.Namespace) -> int:
    return run_server(settings_from_args(args))


COMMAND = Command(help="run the HTTP + WebRTC server", add_arguments=add_settings_arguments, run=_run)
