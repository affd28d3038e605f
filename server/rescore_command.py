"""`earshot rescore SESSION_ID`: re-score a recorded call by hand and print the result as JSON.

What the analytics worker gets from `rescore_call` (server/rescoring.py): the call's
tracks decrypted and transcribed again by `rescore_asr_model` (the packaged Whisper
base unless set), with intents and topic. Run it with the server's settings (the same
data_dir or recording_dir, and storage keys). A session without a recording, or one
that does not decrypt or decode, is an error (exit status 2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from earshot.server.cli import Command, CommandError
from earshot.server.rescoring import RecordingError, rescore_call
from earshot.server.settings_sources import add_settings_arguments, settings_from_args


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id", help="the recorded session's id")
    add_settings_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    try:
        rescored = asyncio.run(rescore_call(args.session_id, settings))
    except RecordingError as exc:
        raise CommandError(str(exc)) from None
    json.dump(rescored.to_dict(), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


COMMAND = Command(
    help="re-transcribe a recorded call with a bigger Whisper, with intents and topic (JSON)",
    add_arguments=_add_arguments,
    run=_run,
)
