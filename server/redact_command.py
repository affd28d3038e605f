"""`earshot redact [--kinds all|none|card,phone,...]`: the lines on standard input, redacted, on standard output.

One line out for each line in, flushed as it is written, so it works at the end
of a pipe as well as on a file: `earshot redact < calls.txt > calls-redacted.txt`.
Empty lines stay empty. Spans become their tags ([CARD], [PHONE], [EMAIL],
[ID], [IBAN], [ACCOUNT], [DOB], [ADDRESS], [NAME]); models/redaction/ says how
each is found. The redactor loads once, before the first line (a few seconds:
Presidio's import); `--kinds none` loads nothing and copies the lines through.
"""

from __future__ import annotations

import argparse
import os
import sys

from earshot.models.redaction import Redactor
from earshot.models.redaction.kinds import KINDS, KindsError, parse_kinds
from earshot.server.cli import Command, CommandError


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kinds", default="all",
                        help=f"what to redact: all (the default), none, or a comma list of {', '.join(KINDS)}")


def _run(args: argparse.Namespace) -> int:
    try:
        kinds = parse_kinds(args.kinds)
    except KindsError as exc:
        raise CommandError(str(exc)) from None
    redactor = Redactor.load() if kinds else None
    try:
        for line in sys.stdin:
            text = line.rstrip("\r\n")
            if redactor is not None and text.strip():
                text = redactor.redact(text, kinds).text
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`earshot redact < file | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


COMMAND = Command(
    help="redact personal data from text lines (stdin to stdout)",
    add_arguments=_add_arguments,
    run=_run,
    description="Redact personal data from the lines on standard input: one redacted line out for each line in.",
)
