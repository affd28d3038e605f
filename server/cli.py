"""The `earshot` command: `earshot [--log-level L] COMMAND [ARGS]`.

Each sub-command is a `Command` registered as an entry point of the group
`earshot.commands` (see pyproject.toml), and only the one that runs is
imported. That keeps `earshot serve` from loading the load tester, which
registers itself the same way: the product never imports its test harness.

    serve         server/serve_command.py
    transcribe    server/transcribe_command.py
    train-intent  server/train_intent_command.py
    api-key       server/api_key_command.py
    rotate-keys   server/rotate_keys_command.py
    analytics-worker  server/analytics_worker_command.py
    export        server/export_command.py
    redact        server/redact_command.py
    rescore       server/rescore_command.py
    loadtest      loadtest/cli.py

A command raises one of `USER_ERRORS` (or `CommandError`) for a problem the
user can fix: the message is printed as `earshot: error: ...` and the exit
status is 2. Anything else is a bug, and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from earshot.models.audio import AudioFormatError
from earshot.models.model_files import ModelMissingError
from earshot.server.errors import StartupError
from earshot.server.settings import SettingsError

if TYPE_CHECKING:
    from earshot.server.settings import Settings

ENTRY_POINT_GROUP = "earshot.commands"


class CommandError(Exception):
    """A command cannot do what was asked; the message says why and what to do."""


USER_ERRORS = (CommandError, SettingsError, ModelMissingError, AudioFormatError, StartupError)


@dataclass(frozen=True)
class Command:
    """One sub-command: its one-line help, its arguments, and what it runs (returns the exit status)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


@contextlib.contextmanager
def command_redis_url(settings: "Settings") -> Iterator[str]:
    """The Redis the servers use: settings.redis_url, or the private one under data_dir (started if not running)."""
    from earshot.server.redis_server import PrivateRedis, RedisStartError

    if settings.redis_url:
        yield settings.redis_url
        return
    private = PrivateRedis(settings.data_dir, maxmemory=settings.redis_maxmemory)
    if private.answers():  # a running server's: used, and left running
        yield private.url
        return
    try:
        url = private.start()
    except RedisStartError as exc:
        raise CommandError(str(exc)) from None
    try:
        yield url
    finally:
        private.stop()


def installed_commands() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def main(argv: Optional[list[str]] = None) -> int:
    commands = installed_commands()
    top = argparse.ArgumentParser(
        prog="earshot",
        description="Real-time streaming voice agent. `earshot COMMAND --help` describes each command.",
        add_help=False,
    )
    top.add_argument("-h", "--help", action="store_true", help="show this help and the commands")
    top.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    top.add_argument("command", nargs="?", help=", ".join(sorted(commands)))
    top.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    options = top.parse_args(argv)
    if options.help or options.command is None:
        top.print_help(sys.stdout if options.help else sys.stderr)
        print("\ncommands:", file=sys.stdout if options.help else sys.stderr)
        for name, entry in sorted(commands.items()):
            print(f"  {name:<18}{entry.load().help}", file=sys.stdout if options.help else sys.stderr)
        return 0 if options.help else 2
    if options.command not in commands:
        top.error(f"unknown command {options.command!r}; choose from {', '.join(sorted(commands))}")
    command: Command = commands[options.command].load()
    parser = argparse.ArgumentParser(
        prog=f"earshot {options.command}", description=command.description or command.help
    )
    command.add_arguments(parser)
    args = parser.parse_args(options.args)
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every decode at INFO
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)  # it logs every recognizer it loads at INFO
    try:
        return command.run(args)
    except USER_ERRORS as exc:
        print(f"earshot: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
