"""The `earshot` command: `serve` runs the server, `transcribe` runs the pipeline on a file,
`train-intent` trains the intent heads, `loadtest` measures a server under many callers."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from models.audio import AudioFormatError
from models.intent_dataset import LABEL_SETS, IntentDataError
from models.model_files import ModelMissingError
from server.errors import StartupError
from server.settings import SettingsError, add_settings_arguments, settings_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="earshot", description="Real-time streaming voice agent")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP + WebRTC server")
    add_settings_arguments(serve)

    transcribe = commands.add_parser("transcribe", help="run the streaming pipeline over a WAV file")
    transcribe.add_argument("file", type=Path, help="16-bit PCM WAV, any rate; stereo is mixed unless --channel")
    transcribe.add_argument("--realtime", action="store_true", help="feed audio at real-time pace")
    transcribe.add_argument("--jsonl", action="store_true", help="print every event as one JSON line")
    transcribe.add_argument("--channel", type=int, default=None, help="take one channel of a multi-channel file")
    add_settings_arguments(transcribe)

    train = commands.add_parser(
        "train-intent",
        help="train the intent heads on the project's data set and write an evaluation",
        description="Frozen encoder + linear head by default (seconds); --full-finetune tunes the encoder too (minutes).",
    )
    train.add_argument(
        "--label-set", choices=("all", "interview", "call_center"), default="all", help="which head to train"
    )
    train.add_argument("--encoder", default="", help="Hugging Face encoder directory (RoBERTa, MiniLM...); empty = bundled MiniLM")
    train.add_argument("--full-finetune", action="store_true", help="fine-tune the encoder with the head")
    train.add_argument("--epochs", type=int, default=0, help="0 = the default of the chosen way")
    train.add_argument("--data-dir", type=Path, default=None, help="labelled data directory; default: models/intent_data")
    train.add_argument("--out", type=Path, default=None, help="where heads and evaluations go; default: models/intent_heads")
    loadtest = commands.add_parser(
        "loadtest",
        help="many real WebRTC callers against a server: latency percentiles, capacity, plots",
        description="Levels of concurrent headless callers streaming corpus speech in real time as Opus.",
    )
    from loadtest.cli import add_loadtest_arguments

    add_loadtest_arguments(loadtest)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every decode at INFO
    try:
        if args.command == "train-intent":
            return _train_intent(args)
        if args.command == "loadtest":
            from loadtest.cli import run_loadtest

            return run_loadtest(args)
        settings = settings_from_args(args)
        if args.command == "serve":
            from server.app import run_server

            return run_server(settings)
        from server.transcribe import run_transcribe

        if not args.file.is_file():
            raise AudioFormatError(f"{args.file}: no such file")
        return run_transcribe(settings, args.file, args.realtime, args.jsonl, args.channel)
    except (SettingsError, ModelMissingError, AudioFormatError, StartupError, IntentDataError) as exc:
        print(f"earshot: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _train_intent(args: argparse.Namespace) -> int:
    from models.intent import HEADS_DIR
    from models.intent_training import run_train_intent

    label_sets = LABEL_SETS if args.label_set == "all" else (args.label_set,)
    return run_train_intent(label_sets, args.encoder, args.full_finetune, args.epochs, args.out or HEADS_DIR, args.data_dir)
